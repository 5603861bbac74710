"""How the fork server holds the engine's state for its workers.

The fork server keeps one Snapshot in memory; every worker forked after it arrives holds
the same objects copy-on-write, so a unit reads the engine's state at no cost per call
whatever the engine's size (docs/EXECUTION.md §10).  A refresh runs in a child of the fork
server (it already has the SDK imported, so the child starts warm), which reads the engine
and sends the snapshot back as a pickle on a pipe: only proxy code runs in that child, and
the fork server's main loop never blocks on the engine.
"""

import collections
import ctypes
import dataclasses
import gc
import logging
import os
import pickle
import shutil
import time

from . import balancing, engine, exit_at_low_priority, journal, moves, readers, snapshot, state

# glibc's malloc_trim (absent elsewhere): hands freed heap pages back to the system.
_malloc_trim = getattr(ctypes.CDLL(None), "malloc_trim", None)

log = logging.getLogger("proxy.holding")

# A read of a big engine takes a core for a second or more; unit calls come first.
READER_NICENESS = 10
# A file holding a pickled Snapshot that refreshes read instead of the engine: the what-if
# rounds hand each round's state to the one fork server this way (proxy/whatif_cli.py).
FEED_ENV = "OVIRT_SCHEDULER_PROXY_STATE_FEED"
# The load history units get (balancing.load_history()): the readings of the snapshots held
# before the current one, at most this many and none older than HISTORY_SECONDS.  At the
# default engine.max_age (10 s) that is the last 5 minutes, more than the engine's
# CpuOverCommitDurationMinutes (2); 30 readings of 1,000 hosts add ~1.6 MB to the image.
HISTORY_MAX = 30
HISTORY_SECONDS = 1800.0


class Read:
    """One refresh in progress: the reading child and what it has sent so far."""

    def __init__(self, pid, fd, version, kill_at):
        self.pid, self.fd, self.version = pid, fd, version
        self.kill_at = kill_at  # time.monotonic() past which the child is killed
        self.data = bytearray()
        self.events = None  # the migration events the child read with the snapshot, if asked

    def feed(self):
        """Read what the child sent; True once it has closed the pipe."""
        chunk = os.read(self.fd, 1 << 20)
        self.data += chunk
        return not chunk

    def outcome(self, how_it_ended):
        """(Snapshot or None, error text or None, token) once the pipe has ended (how_it_ended
        None) or the child is reaped."""
        os.close(self.fd)
        try:
            kind, payload, token, *events = pickle.loads(self.data)
        except Exception:  # no answer: the child died (the deadline's kill, the OOM killer)
            how = how_it_ended or "closed its pipe"
            return None, f"the engine state reader {how} without an answer", None
        self.events = events[0] if events else None
        return (payload, None, token) if kind == "ok" else (None, payload, token)


def read_in_child(write_fd, settings, refresh):
    """The body of the reading child: read, answer on write_fd, never return."""
    code = 0
    try:
        os.nice(READER_NICENESS)
        engine.bind(settings, token=refresh.token, deadline=time.monotonic() + refresh.timeout)
        if os.environ.get(FEED_ENV):  # `simulate UNIT`: the round's answer, ready-made (write_feed)
            with open(os.environ[FEED_ENV], "rb") as src, os.fdopen(write_fd, "wb") as dst:
                shutil.copyfileobj(src, dst)
            return
        snap = None
        try:
            with engine.connect() as conn:
                snap = readers.read_snapshot(conn, version=refresh.version, source=settings.url)
                events = _events(conn, refresh, snap)
            answer = ("ok", snap, engine.token(), events)
        except Exception as e:
            answer = ("error", engine.describe_error(e) or f"{type(e).__name__}: {e}", engine.token())
        with os.fdopen(write_fd, "wb") as f:
            pickle.dump(answer, f, protocol=pickle.HIGHEST_PROTOCOL)
        if snap is not None:  # after the answer: the fork server adopts it at the pipe's end
            _spool(snap)
    except BaseException:
        log.exception("the engine state reader failed")
        code = 70
    finally:
        exit_at_low_priority(code)


def _events(conn, refresh, snap):
    """The migration events above refresh.events_after (None when not asked for, or when the
    engine would not give them: the snapshot is what the call needs, the events are extra)."""
    if refresh.events_after < 0:
        return None
    try:
        return moves.read_events(conn, refresh.events_after, snap)
    except Exception as e:
        log.warning("cannot read the engine's migration events (the ledger misses them until "
                    "the next refresh): %s", engine.describe_error(e) or f"{type(e).__name__}: {e}")
        return None


def _spool(snap):
    """Leave the snapshot's document for the decision journal, when it is on (here, in the
    niced reading child, so the compression never stalls the fork server's loop)."""
    folder = os.environ.get(journal.SPOOL_ENV)
    if folder:
        try:
            journal.write_spool(folder, snap.version, state.to_document(snap))
        except OSError as e:
            log.warning("journal: cannot spool snapshot %d: %s", snap.version, e)


def load_file(path):
    """The Snapshot a snapshot file describes (serve --snapshot), as version 1."""
    doc = snapshot.load_snapshot(path)
    return state.from_document(doc, version=1, source=f"file {path}",
                               read_at=os.stat(path).st_mtime)


def adopt(snap, *, static=False, stale_limit=60.0):
    """Hold `snap` for the workers forked from now on.

    Its indexes are built here, once, rather than in each worker; gc.freeze() keeps the
    collector from walking (and so writing to, and copying) its pages in every worker.
    (No gc.collect() first: the old snapshot goes by reference counting, and a full
    collection here would stall the fork server's loop.)
    """
    engine.hold(snap.warm(), static=static, stale_limit=stale_limit)
    _remember(snap)
    gc.freeze()
    if _malloc_trim is not None:
        # The read's buffers and the previous snapshot are freed by now; pages malloc keeps
        # would be mapped in every worker and copied at every fork (docs/EXECUTION.md §10).
        _malloc_trim(0)
    log.debug("holding engine state %s", snap.summary())



class _History:
    readings = collections.deque()  # of the snapshots held before the current one, oldest first
    current = None  # the Reading of the snapshot held now


def reading_of(snap):
    """The load figures of a snapshot that hysteresis compares (balancing.Reading)."""
    hosts = snap.hosts.values()
    return balancing.Reading(snap.version, snap.read_at, {h.id: h.cpu_usage for h in hosts},
                             {h.id: h.free_memory for h in hosts})


def _remember(snap):
    """Push the snapshot held until now into the history ring and bind the ring, so every
    worker forked from here inherits it (the current snapshot is engine.snapshot())."""
    ring = _History.readings
    if _History.current is not None and _History.current.version != snap.version:
        ring.append(_History.current)
    _History.current = reading_of(snap)
    while ring and (len(ring) > HISTORY_MAX or snap.read_at - ring[0].read_at > HISTORY_SECONDS):
        ring.popleft()
    balancing.bind(history=tuple(ring))


def write_feed(path, snap, version, read_at=None):
    """Leave `snap`, as snapshot `version` read at `read_at` (default: now), for the next
    refresh: as the pickled answer a reading child sends, so the child only copies it (one
    pickling per round, not two)."""
    snap = dataclasses.replace(snap, version=version, read_at=time.time() if read_at is None else read_at)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        pickle.dump(("ok", snap, None), f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)
