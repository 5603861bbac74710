"""When the shared snapshot of the engine's state is read again (engine.max_age, stale_limit).

One Refresher per generation (its fork server holds the snapshot; proxy/holding.py).  The
rules, each for a reason:
- single flight: one read at a time; calls that need it wait for that read, never start
  another (the engine serves the whole proxy, not each call);
- refresh ahead: while calls keep coming, the next read starts shortly before the held
  snapshot reaches max_age (by about 1.5 × the last read's duration), so in steady state
  no call waits for a read;
- bounded by time, not calls: reads start only when due, so at most about one per
  max_age window however many calls arrive, and none while no call comes;
- failures keep the last good snapshot, with a warning naming the engine's error, until
  stale_limit after it was read; past that, units that read state fail with the reason.
The clock is injectable so tests control time instead of sleeping.
"""

import logging
import threading
import time

from . import metrics
from .messages import Refresh

log = logging.getLogger("proxy.refresh")

LEAD_FACTOR = 1.5  # start the next read this many last-read durations before max_age
LEAD_MIN = 0.05  # seconds
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
        lead = max(LEAD_MIN, min(self.max_age / 4, LEAD_FACTOR * self.read_seconds))
        return now - self.read_at >= self.max_age - lead

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
            self.version, self.read_at, self.read_seconds = msg.version, msg.read_at, msg.read_seconds
            if self.error is not None:
                log.info("the engine can be read again")
            self.reading, self.error = 0, None
            self.cond.notify_all()
        metrics.set_snapshot(msg.version, msg.read_at)
        metrics.engine_request("snapshot", failed=False)
        log.info("engine state %s", msg.summary)

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
