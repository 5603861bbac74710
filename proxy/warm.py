"""Warm workers: workers that answered a call and wait for their unit's next one.

A fork per call costs 4–8 ms of CPU on the machines we measured (the fork, the copy-on-write
faults, the exit's unmapping; more with a big engine snapshot held), more than most units
take.  A unit that keeps no state between calls says so (`reuse_worker = True` on its
class, registry.Unit.reuse_worker), and a worker that answered it cleanly (worker.reusable:
no thread, no child process, no big allocation left) waits here for that unit's next call.

Each bound has its reason:
- one unit per worker: a unit can only ever see what its own earlier calls left;
- the engine state it holds must be current: a newer snapshot lets every older worker go;
- at most plugins.worker_calls calls per worker, like Gunicorn's max_requests: what a unit
  leaks, it leaks for a bounded time;
- at most plugins.concurrency warm workers in all (the longest idle goes first), and none
  idle longer than IDLE seconds: an idle proxy keeps only its spares, whose memory is the
  fork server's, shared.
Units without the flag, and every call with plugins.worker_calls = 1, get a fresh process.
"""

import threading
import time

# A warm worker idle this long is let go.
IDLE = 15.0
SWEEP_EVERY = 1.0  # seconds between two looks for warm workers idle too long


class WarmPool:
    def __init__(self, most, calls_per_worker):
        self.most, self.calls_per_worker = most, calls_per_worker
        self.lock = threading.Lock()
        self.by_unit = {}  # unit key -> [generation.Worker], most recently idle last
        self.closed = threading.Event()
        threading.Thread(target=self._sweep, name="warm-workers", daemon=True).start()

    def take(self, unit, min_version):
        """A warm worker of `unit` holding snapshot min_version or newer, or None."""
        with self.lock:
            ws = self.by_unit.pop(unit, [])
            while ws:
                w = ws.pop()
                if w.version >= min_version:
                    if ws:
                        self.by_unit[unit] = ws
                    return w
                w.sock.close()
        return None

    def give_back(self, w, unit, current_version):
        """Keep an answered worker for `unit`'s next call; False when it is not kept (the
        caller then closes its socket, once the answer is sent)."""
        with self.lock:
            if self.closed.is_set() or w.version < current_version or w.calls >= self.calls_per_worker:
                return False
            w.idle_since = time.monotonic()
            self.by_unit.setdefault(unit, []).append(w)
            idle = sorted((x for ws in self.by_unit.values() for x in ws), key=lambda x: x.idle_since)
            oldest = {id(x) for x in idle[:max(0, len(idle) - self.most)]}
            if oldest:
                self._let_go(lambda x: id(x) in oldest)
            return True

    def older_than(self, version):
        """A new snapshot is held: workers holding an older one go."""
        with self.lock:
            self._let_go(lambda w: w.version < version)

    def close(self):
        """Let every warm worker go, and keep none from now on."""
        self.closed.set()
        with self.lock:
            self._let_go(lambda w: True)

    def count(self):
        return sum(len(ws) for ws in self.by_unit.values())

    def _let_go(self, which):
        for unit, ws in list(self.by_unit.items()):
            keep = [w for w in ws if not which(w)]
            for w in ws:
                if which(w):
                    w.sock.close()  # the worker exits when its socket closes
            if keep:
                self.by_unit[unit] = keep
            else:
                del self.by_unit[unit]

    def _sweep(self):
        while not self.closed.wait(SWEEP_EVERY):
            now = time.monotonic()
            with self.lock:
                self._let_go(lambda w: now - w.idle_since > IDLE)
