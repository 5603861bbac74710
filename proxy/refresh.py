"""When the shared snapshot of the engine's state is read again (engine.max_age, stale_limit).

One Refresher per generation (its fork server holds the snapshot; proxy/holding.py).  The
rules, each for a reason:
- single flight: one read at a time; calls that need it wait for that read, never start
  another (the engine serves the whole proxy, not each call);
- refresh ahead: while calls keep coming, the next read starts shortly before the held
  snapshot reaches max_age (by about 1.2 × the longest of the last reads, measured from the
  request to the snapshot held, at most 0.8 × max_age), so in steady state no call waits
  for a read; a read that takes longer than that makes calls wait, and the log says to
  raise engine.max_age;
- bounded by time, not calls: reads start only when due, so at most about one per
  max_age window however many calls arrive, and none while no call comes;
- failures keep the last good snapshot, with a warning naming the engine's error, until
  stale_limit after it was read; past that, units that read state fail with the reason.
The clock is injectable so tests control time instead of sleeping.
"""

import collections
import logging
import threading
import time

from . import metrics
from .messages import Refresh

log = logging.getLogger("proxy.refresh")

LEAD_FACTOR = 1.2  # start the next read this many read durations before max_age...
LEAD_MIN = 0.05  # ...plus this many seconds
LEAD_READS = 3  # the read duration that counts: the longest of the last this many
# The lead is at most max_age × LEAD_CAP.  Reads then start at least
# max_age × (1 - LEAD_CAP + LEAD_CAP / LEAD_FACTOR) apart, whatever their duration (the closest
# is where the cap starts to bind, at a duration of LEAD_CAP × max_age / LEAD_FACTOR): at the
# default max_age of 10 s, 8.7 s apart, at most 7 reads a minute (60 / max_age + 1), and reads
# of up to 8 s (a 1,000-host engine read by a busy 2-core machine) still arrive before max_age.
LEAD_CAP = 0.8
LOG_REPEAT = 60.0  # seconds between two log lines for the same engine failure


class Refresher:
    def __init__(self, send, versions, *, max_age, stale_limit, read_timeout, clock=time.time):
        self.send = send  # delivers a Refresh to this generation's fork server
        self.versions = versions  # an itertools.count shared by the generations: versions only grow
        self.max_age, self.stale_limit, self.read_timeout = max_age, stale_limit, read_timeout
        self.clock = clock
        self.cond = threading.Condition()
        self.version = 0  # of the snapshot the fork server holds; 0: none yet
        self.read_at = None
        self.read_seconds = 0.0
        self.durations = collections.deque(maxlen=LEAD_READS)  # request to snapshot held, seconds
        self._slow_logged = False
        self.reading = 0  # version of the read in flight; 0: none
        self.last_start = None  # clock() when the newest read started
        self.error = None  # why the newest read failed, while no newer snapshot is held
        self.reads = 0  # reads started, for tests and metrics
        self.token = None  # the SSO token the reads pass along (the executor's)
        self.on_token = lambda token: None  # hands a token a read obtained back to the executor
        self.ledger = None  # a moves.Ledger that follows the engine's migration events, or None
        self._last_logged = (None, False, 0.0)  # (error, past stale_limit, time.monotonic())

    def age(self):
        return None if self.read_at is None else self.clock() - self.read_at

    def start(self):
        """The first read, when the generation starts: the first call should not wait."""
        with self.cond:
            self._start_read(self.clock())

    def before_call(self, deadline):
        """(the snapshot version a call's worker must hold, why the last read failed or None).

        Starts a read when one is due; waits (at most half the call's time left) for the
        read in flight when the held snapshot is missing or older than max_age.
        """
        with self.cond:
            now = self.clock()
            if self._due(now):
                self._start_read(now)
            if self.reading and self._too_old():
                budget = (deadline - time.monotonic()) / 2
                self.cond.wait_for(lambda: not self.reading or not self._too_old(), max(0.0, budget))
            return self.version, self.error

    def _too_old(self):
        age = self.age()
        return age is None or age > self.max_age

    def _due(self, now):
        if self.reading:
            return False
        if self.error is not None or self.read_at is None:
            # Failing (or never read): retry at most once per max_age.
            return self.last_start is None or now - self.last_start >= self.max_age
        age = now - self.read_at
        if age >= self.max_age:
            return True  # a call needs a newer state: at least max_age after the last read ended
        # Ahead of time, but never sooner than the read bound allows: at most 60 / max_age + 1
        # reads a minute, however much the reads' durations vary (the lead follows the
        # longest of the last reads, and a quick read after slow ones would start early).
        gap = self.max_age * 60 / (60 + self.max_age)
        return age >= self.max_age - self.lead() and (self.last_start is None or now - self.last_start >= gap)

    def lead(self):
        """How long before max_age the next read starts (seconds)."""
        longest = max(self.durations, default=self.read_seconds)
        return min(self.max_age * LEAD_CAP, LEAD_FACTOR * longest + LEAD_MIN)

    def _start_read(self, now):
        self.reading = next(self.versions)
        self.last_start = now
        self.reads += 1
        ledger = self.ledger
        after = ledger.events_after if ledger is not None and ledger.events_after is not None else -1
        self.send(Refresh(self.reading, self.read_timeout, self.token, events_after=after))

    # -- answers from the fork server (the generation's control reader calls these) ------

    def ready(self, msg):
        self.on_token(msg.token)
        if self.ledger is not None and msg.events is not None:
            self.ledger.take_events(msg.events)
        with self.cond:
            # The first read's time includes the fork server's start: it says nothing of the engine.
            if self.version and self.last_start is not None and msg.version == self.reading:
                self.durations.append(max(msg.read_seconds, self.clock() - self.last_start))
            self.version, self.read_at, self.read_seconds = msg.version, msg.read_at, msg.read_seconds
            if self.error is not None:
                log.info("the engine can be read again")
            self.reading, self.error = 0, None
            self.cond.notify_all()
        metrics.set_snapshot(msg.version, msg.read_at)
        metrics.engine_request("snapshot", failed=False)
        log.info("engine state %s", msg.summary)
        self._warn_if_slow()

    def _warn_if_slow(self):
        """Once: reads so slow, LEAD_READS times in a row, that refreshing ahead cannot keep
        the snapshot under max_age."""
        if self.max_age <= 0:
            return  # every call reads anew (the what-if feeder): nothing to refresh ahead of
        slow = [d for d in self.durations if LEAD_FACTOR * d + LEAD_MIN > self.max_age * LEAD_CAP]
        if len(slow) == LEAD_READS and not self._slow_logged:
            longest = max(slow)
            self._slow_logged = True
            log.warning("a read of the engine's state takes %.1f s, too close to engine.max_age (%g s) to "
                        "read ahead of it: calls will wait for reads; raise engine.max_age to at least %.0f s",
                        longest, self.max_age, (LEAD_FACTOR * longest + LEAD_MIN) / LEAD_CAP + 1)

    def failed(self, msg):
        self.on_token(msg.token)
        metrics.engine_request("snapshot", failed=True)
        with self.cond:
            self.reading, self.error = 0, msg.error
            age = self.age()
            self.cond.notify_all()
        self._log_failure(age, msg.error)

    def _log_failure(self, age, error):
        """Each change (a new error, the stale limit crossed) at once; the same again at most
        once a minute: an engine down for an hour is not a warning per max_age."""
        crossed = age is not None and age > self.stale_limit
        now = time.monotonic()
        if (error, crossed) == self._last_logged[:2] and now - self._last_logged[2] < LOG_REPEAT:
            return
        self._last_logged = (error, crossed, now)
        if age is None:
            log.warning("cannot read the engine's state (units that read it fail until it can "
                        "be read): %s", error)
        elif not crossed:
            log.warning("cannot refresh the engine's state; units get the snapshot read %.0f s ago "
                        "until engine.stale_limit (%g s): %s", age, self.stale_limit, error)
        else:
            log.error("cannot refresh the engine's state, and the snapshot held is %.0f s old, past "
                      "engine.stale_limit (%g s): units that read it fail: %s", age, self.stale_limit, error)

    def closed(self):
        """The fork server is gone: wake the calls waiting for its read."""
        with self.cond:
            self.reading = 0
            self.cond.notify_all()
