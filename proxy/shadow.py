"""Shadow units: `[units.NAME] shadow = "CANDIDATE"` runs CANDIDATE after each live call of
NAME, on the same arguments, and journals its decision next to the live one.  It is never
sent to the engine, and it runs after the live answer, one at a time, on a thread of its
own: a shadow that hangs or crashes costs at most one slot for its timeout and never
touches a live call.  When the shadows fall behind, runs are dropped and counted.
"""

import logging
import queue
import threading
import time

from . import journal as journal_mod

log = logging.getLogger("proxy.shadow")

QUEUE_SIZE = 64  # live calls waiting for their shadow run; beyond it, shadow runs are dropped
DROP_LOG_EVERY = 60.0


class ShadowRunner:
    def __init__(self, protocol, journal):
        self.protocol, self.journal = protocol, journal
        self.queue = queue.Queue(QUEUE_SIZE)
        self.dropped, self._last_drop_log = 0, 0.0
        threading.Thread(target=self._loop, name="shadow-units", daemon=True).start()

    def submit(self, method, record):
        """Queue the shadow runs a live call asks for; never blocks."""
        for shadow in record.shadows:
            try:
                self.queue.put_nowait((method, record, shadow))
            except queue.Full:
                self.dropped += 1
                if time.monotonic() - self._last_drop_log >= DROP_LOG_EVERY:
                    self._last_drop_log = time.monotonic()
                    log.warning("shadow units fall behind the live calls: %d runs dropped so far",
                                self.dropped)

    def _loop(self):
        while True:
            method, live, shadow = self.queue.get()
            try:
                self._run(method, live, shadow)
            except Exception:  # a bug here must not stop later shadow runs
                log.exception("shadow run of %s for request %s failed", shadow.candidate, live.request_id)

    def _run(self, method, live, shadow):
        started, start = time.time(), time.monotonic()
        record, answer = self.protocol.run_shadow(live, shadow)
        entry = journal_mod.make_entry(record.request_id, started, "shadow", method, record, answer,
                                       time.monotonic() - start, self.journal.run)
        entry["shadow_of"] = {"id": live.request_id, "unit": shadow.live}
        self.journal.record(entry)


def agreement(live_entry, shadow_entry):
    """'agrees', 'differs' or 'failed' for a live call and its shadow's entry (or None)."""
    if shadow_entry is None:
        return None
    if any(o.get("error") for o in shadow_entry["outcomes"]):
        return "failed"
    live = live_entry["answer"]
    live = live.get("result") if isinstance(live, dict) else live
    return "agrees" if shadow_entry["answer"] == live else "differs"
