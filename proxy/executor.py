"""Runs unit calls: the concurrency limit, the current generation, reloads, the SSO token.

A call runs on the current generation (generation.py: one fork server with the plugin code
of one moment).  The executor decides when a new generation is needed: plugin files that
changed (checked before each engine call: proxy/folder_watch.py), a fork server that died,
or SIGHUP.
"""

import dataclasses
import itertools
import logging
import threading
import time

from . import metrics, policy, registry
from .errors import ProxyBusy
from .generation import Generation
from .refresh import Refresher

log = logging.getLogger("proxy.executor")


@dataclasses.dataclass
class Call:
    unit: registry.Unit
    args: list
    timeout: float | None = None  # seconds for this call ([units.NAME] timeout); None: the request's
    request_id: str = ""  # the engine request it serves (log lines)
    balancing: dict | None = None  # a balance call's limits and recent moves (moves.to_wire)


class Slots:
    """The concurrency limit.  A batch takes its slots at once and frees them together, so
    requests never wait on each other while holding some; a batch takes what is free, at
    least one, up to the request's share (Executor.share)."""

    def __init__(self, n):
        self.free = n
        self.cond = threading.Condition()

    def acquire(self, most, deadline):
        """Take between 1 and `most` slots (as many as are free); returns how many."""
        with self.cond:
            while self.free < 1:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ProxyBusy("no free slot before the call's deadline; raise plugins.concurrency "
                                    "or plugins.timeout")
                self.cond.wait(remaining)
            n = min(most, self.free)
            self.free -= n
            return n

    def release(self, n):
        with self.cond:
            self.free += n
            self.cond.notify_all()


def request_share(concurrency):
    """Slots one request may hold at once: all but a quarter (at least one), so a request
    naming many slow or hanging units never keeps another request's call from starting."""
    return max(1, concurrency - max(1, concurrency // 4))


class Finished:
    """The answered workers of one run(), kept alive until release().

    Closing a worker's socket wakes it to exit, and the kernel tends to run that exit
    (~1.4 ms of page unmapping, measured) on the closing thread's CPU: the server releases
    them once its answer is on the wire, not before.
    """

    def __init__(self, socks=()):
        self.socks = list(socks)
        self.replies = []  # generation.Reply per call, in call order (durations, reasons: the journal)

    def release(self):
        socks, self.socks = self.socks, []
        for sock in socks:
            sock.close()


class Executor:
    def __init__(self, config, password=None, snapshot_file=""):
        self.config = config
        self.password = config.engine_password() if password is None else password
        self.snapshot_file = snapshot_file  # serve --snapshot: units read this state, no engine
        self.versions = itertools.count(1)  # snapshot versions, growing across generations
        self.slots = Slots(config.plugins.concurrency)
        self.swap_lock = threading.Lock()  # guards the generation pointer and busy counts
        self.reload_lock = threading.RLock()  # one reload at a time
        self.generation = None
        self.starting = set()  # generations whose fork server is importing the plugins
        self.stopped = False  # set by stop(): a reload finishing later must not start serving
        self.token = None  # the engine SSO token, obtained by a worker and carried to the next calls
        self.ledger = None  # moves.Ledger: the moves proposed, the balancing limits (set before start)

    @property
    def shares_state(self):
        """True when the proxy reads the engine for the units (engine.max_age > 0, a URL)."""
        return self.config.engine.max_age > 0 and bool(self.config.engine.url) and not self.snapshot_file

    def _new_generation(self):
        gen = Generation(self.config, self.password, self.snapshot_file)
        with self.swap_lock:
            stopped = self.stopped
            self.starting.add(gen)  # stop() ends a start in progress (a reload's slow import)
        try:
            if stopped:
                gen.stop()
            gen.wait_started()
        finally:
            with self.swap_lock:
                self.starting.discard(gen)
        gen.refresher = self._refresher(gen)
        return gen

    def _refresher(self, gen):
        """What keeps gen's snapshot fresh (proxy/refresh.py), or None when units read no
        shared state; started here, so the first call need not wait for the first read."""
        if not self.shares_state:
            return None
        refresher = Refresher(gen.send, self.versions, max_age=self.config.engine.max_age,
                              stale_limit=self.config.engine.stale_limit, read_timeout=self.config.plugins.timeout)
        refresher.token = self.token
        refresher.on_token = self._take_token
        refresher.ledger = self.ledger
        refresher.start()
        return refresher

    def _take_token(self, token):
        if token:
            self.token = token

    def start(self):
        self.generation = self._new_generation()
        return self.generation.catalog

    def catalog(self):
        """The units as the plugin folder holds them now: new plugin code, or a fork server
        that died, is replaced first (a new generation), so the call that follows runs on it."""
        gen = self.generation
        reason = ("the fork server had exited" if not gen.alive else
                  "plugin files changed" if gen.files_changed() else None)
        if reason:
            with self.reload_lock:
                if self.generation is gen:  # another request may have reloaded meanwhile
                    self.reload(reason)
        return self.generation.catalog

    def reload(self, reason):
        """Start a generation with the plugin code as it is now; returns its catalog."""
        with self.reload_lock:
            new = self._new_generation()
            with self.swap_lock:
                stopped = self.stopped  # the proxy stopped while this generation started
                if not stopped:
                    old, self.generation = self.generation, new
            if stopped:
                new.stop()
                return new.catalog
        log.info("plugins reloaded (%s): %d units, %d rejected", reason, len(new.catalog.units),
                 len(new.catalog.rejections))
        for problem in policy.problems(self.config.units, new.catalog):
            log.error("configuration: %s (the proxy serves on; fix the config and reload)", problem)
        if old:
            old.retire()
        return new.catalog

    def run(self, calls, deadline):
        """Run the calls (concurrently, up to the request's share of plugins.concurrency).

        Returns (a value or a UnitError per call, Finished): call Finished.release() once
        the answer has been sent.
        """
        results, finished = [], Finished()
        refresher = self.generation.refresher
        if refresher is not None:
            refresher.token = self.token
        state = refresher.before_call(deadline) if refresher is not None else (0, None)
        share, start = request_share(self.config.plugins.concurrency), 0
        while start < len(calls):
            try:
                taken = self.slots.acquire(min(share, len(calls) - start), deadline)
            except ProxyBusy as e:
                results += [e] * (len(calls) - start)
                finished.replies += [None] * (len(calls) - start)
                break
            batch, start = calls[start:start + taken], start + taken
            gen = self._enter()
            try:
                replies, socks = gen.run_batch(batch, deadline, self.token, state)
                metrics.units_timed(batch, replies)
            finally:
                self._leave(gen)
                self.slots.release(taken)
            finished.socks += socks
            finished.replies += replies
            for reply in replies:
                if reply.token:
                    self.token = reply.token
                results.append(reply.value)
        return results, finished

    def _enter(self):
        with self.swap_lock:
            gen = self.generation
            with gen.cond:
                gen.busy += 1
            return gen

    def _leave(self, gen):
        with gen.cond:
            gen.busy -= 1
            last = gen.retired and gen.busy == 0
        if last:
            gen.stop()

    def status(self):
        """A moment's view for /health and the metrics (read without locks: a scrape must
        never wait behind a reload)."""
        gen, concurrency = self.generation, self.config.plugins.concurrency
        return {"slots": concurrency, "slots_in_use": concurrency - self.slots.free,
                "fork_server_pid": gen.proc.pid if gen else None, "fork_server_alive": bool(gen and gen.alive),
                "spare_workers": len(gen.pool) if gen else 0, "warm_workers": gen.warm.count() if gen else 0,
                "catalog": gen.catalog if gen else None}

    def stop(self):
        with self.swap_lock:
            gen, self.generation, self.stopped = self.generation, None, True
            starting = list(self.starting)
        for new in starting:
            new.stop()
        if gen:
            gen.stop()
