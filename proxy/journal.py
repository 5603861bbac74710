"""The decision journal: every engine call, what each unit answered and why, in sqlite.

One entry per call (request id, time, client, method, units and weights, hosts, VM,
properties, each unit's answer or error with its duration and reasons, the answer the engine
got, the snapshot version it ran on; the entries written together share one compressed
batch, proxy/journal_writer.py), and the snapshots those calls ran on, once per version,
as the zlib-compressed JSON document of proxy/snapshot.py: a recorded call can be re-run on
exactly the state it saw (`ovirt-scheduler-proxy explain`, `balance --snapshot`).

A call never waits on the disk: `record()` encodes the entry (orjson, C, ~1 us) and copies
its bytes into a buffer the server keeps for the journal, a feeder thread hands what gathered
(every GATHER seconds) to a pipe in one write, and a writer process
(proxy/journal_writer.py) reads each entry's columns, compresses and stores it, outside the
server's interpreter lock.  No entry outlives its call in the server, not even as bytes:
entries' bytes held for GATHER, then marshalled into new buffers and freed by the feeder,
cost the calls' p50 more than making the entries did (docs/RELIABILITY.md, "A sixth day").
The server's two buffers are allocated once and reused.  If the writer falls
behind (a slow disk), the pipe fills, the buffer fills, and entries are dropped and counted,
and the count is logged; the engine's calls go on at full speed.  The file is bounded by age
(journal.max_days) and size (journal.max_mb): the oldest calls go first.

Snapshots the fork server reads (proxy/holding.py) reach the writer through a spool folder
(SPOOL_ENV names it in the fork server's environment): one `<version>.json.z` file each,
taken into the database with the first call that ran on it.
"""

import collections
import fcntl
import json
import logging
import mmap
import os
import select
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
import zlib
from pathlib import Path

from . import child_environment, journal_writer
from .journal_writer import pack

log = logging.getLogger("proxy.journal")

SPOOL_ENV = "OVIRT_SCHEDULER_PROXY_SNAPSHOT_SPOOL"
# Bytes of encoded entries waiting for the pipe (a second buffer as large is being written):
# at ~1.5 KB an entry, 2,800 entries; at ~150 KB (a 1,000-host filter call), 28.  Beyond, new
# entries are dropped and counted.
BUFFER_BYTES = 4 << 20
PIPE_BYTES = 1 << 20  # the pipe to the writer holds this much more (Linux's default limit for a user)
# The feeder writes what gathered this often: one pipe write per GATHER, not one per call.
GATHER = 0.2
PRUNE_EVERY = 30.0  # seconds between two age/size checks (in the writer)
DROP_LOG_EVERY = 60.0  # seconds between two "entries dropped" log lines
STOP_WAIT = 2.0  # seconds the writer gets after its pipe closes, then after SIGTERM


def state_directory():
    """Where a relative journal.path lives: systemd's StateDirectory= ($STATE_DIRECTORY, i.e.
    /var/lib/ovirt-scheduler-proxy for the service), else the user's XDG state folder."""
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "ovirt-scheduler-proxy"


def resolve(path):
    """The journal file for a journal.path value; None when it is "" (no journal)."""
    if not path:
        return None
    path = Path(path)
    return path if path.is_absolute() else state_directory() / path


def unpack(blob):
    return json.loads(zlib.decompress(blob))


def make_entry(rid, started, client, method, record, answer, seconds, run):
    """The journal entry of one call (protocol.Record filled by the protocol and the server)."""
    inputs = record.inputs
    # Made for every call, in the call's thread, under the lock the callers queue for (at 8
    # callers, p50 is ~8 x the server's CPU a call; docs/RELIABILITY.md): no copies (the
    # record is the call's alone, and done with), and ms to two decimals without round(),
    # which takes twice as long.
    return {"id": rid, "time": started, "run": run, "client": client, "method": method,
            "units": record.units, "hosts": inputs.get("hosts", []), "vm": inputs.get("vm", ""),
            "properties": inputs.get("properties", {}), "version": record.version,
            "outcomes": record.outcomes, "answer": answer, "duration_ms": int(seconds * 100000 + 0.5) / 100}


class Journal:
    """The server's side: `record()` is safe from any thread, never waits on I/O, and only
    encodes and copies; a feeder thread sends what was recorded down the writer process's
    pipe (proxy/journal_writer.py), which stores it."""

    def __init__(self, path, max_days, max_mb, *, buffer_bytes=BUFFER_BYTES, prune_every=PRUNE_EVERY,
                 log_settings=None, pipe_bytes=PIPE_BYTES):
        self.path = Path(path)
        self.run = uuid.uuid4().hex[:12]  # versions restart with each proxy run: (run, version) is unique
        self.spool = Path(f"{self.path}.spool") / self.run
        self.dropped = 0
        # Entries recorded, not yet on the pipe: journal_writer.docs_payload's form, written
        # into the filling buffer up to `_used`, `_count` entries; the feeder swaps the two.
        # Anonymous maps: memory is taken as a busy moment first needs it, and then kept.
        self._buffers = [mmap.mmap(-1, buffer_bytes), mmap.mmap(-1, buffer_bytes)]
        self._filling, self._used, self._count = self._buffers[0], 0, 0
        self._lock = threading.Lock()  # the filling buffer's place; held for a copy, never for I/O
        self._wake, self._closing = threading.Event(), False
        self._flush_lock, self._flush_wanted, self._acked = threading.Lock(), 0, 0
        self._last_drop_log, self._flush_sent = 0.0, 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.spool.mkdir(parents=True, exist_ok=True)
        journal_writer.open_db(self.path).close()  # here, so a bad path is an error at start
        settings = {"path": str(self.path), "run": self.run, "spool": str(self.spool),
                    "max_age": max_days * 86400.0, "max_bytes": int(max_mb * 1024 * 1024),
                    "prune_every": prune_every, "log": log_settings}
        self.proc, self._pipe, self._acks = _start_writer(settings, pipe_bytes)
        self.thread = threading.Thread(target=self._feed, name="journal", daemon=True)
        self.thread.start()

    def record(self, entry):
        """Leave an entry for the writer, as it is now; drop (and count) it when the buffer
        cannot take it."""
        try:
            doc = journal_writer.encode(entry)
        except Exception:  # (a key JSON cannot take, a cycle): the call it records is not failed for it
            self.dropped += 1
            log.exception("journal: the entry of request %s cannot be encoded; it is dropped", entry.get("id"))
            return
        need = journal_writer.SIZE.size + len(doc)
        with self._lock:
            start = self._used
            end = start + need
            if end <= len(self._filling) and self._pipe is not None:
                buffer = self._filling
                journal_writer.SIZE.pack_into(buffer, start, len(doc))
                buffer[start + journal_writer.SIZE.size:end] = doc
                self._used, self._count = end, self._count + 1
                return
            self.dropped += 1
        if need > len(self._filling):
            log.warning("journal: the entry of request %s (%d bytes) is larger than the journal's buffer "
                        "(%d bytes); it is dropped", entry.get("id"), len(doc), len(self._filling))
            return
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_EVERY:
            self._last_drop_log = now
            log.warning("journal: the writer is behind (a slow disk?); %d entries dropped so far", self.dropped)

    def spool_document(self, version, doc):
        """Hand the writer the snapshot document of `version` (serve --snapshot does it at start)."""
        write_spool(self.spool, version, doc)

    def flush(self, timeout=10.0):
        """True once every entry recorded before the call is stored (tests, and the last
        entries at stop)."""
        deadline = time.monotonic() + timeout
        with self._flush_lock:
            if self._acks is None:
                return False  # closed
            self._flush_wanted += 1
            wanted = self._flush_wanted
            self._wake.set()  # write now, without waiting out GATHER
            while self._acked < wanted:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([self._acks], [], [], remaining)[0]:
                    return False
                data = os.read(self._acks, 4096)
                if not data:
                    return False  # the writer is gone
                self._acked = journal_writer.TOKEN.unpack(data[-journal_writer.TOKEN.size:])[0]
            return True

    def close(self, timeout=10.0):
        """Write what is recorded, then stop the writer: its pipe closed, a bounded wait,
        SIGTERM, a bounded wait, SIGKILL, always reaped and its exit logged."""
        self.flush(timeout)
        self._closing = True
        self._wake.set()
        self.thread.join(timeout)
        _stop_writer(self.proc, STOP_WAIT)
        self.thread.join(STOP_WAIT)  # a feeder blocked on a stopped writer's pipe sees it broken now
        with self._flush_lock:
            os.close(self._acks)
            self._acks = None
        if self.dropped:
            log.warning("journal: %d entries were dropped in this run", self.dropped)
        for f in self.spool.glob("*"):
            f.unlink(missing_ok=True)
        self.spool.rmdir()

    def _feed(self):
        while True:
            self._wake.wait(GATHER)
            self._wake.clear()
            closing, token = self._closing, self._flush_wanted  # read before taking the entries
            with self._lock:
                full, used, count = self._filling, self._used, self._count
                self._filling = self._buffers[full is self._buffers[0]]
                self._used = self._count = 0
            try:
                if used:
                    with memoryview(full) as view, view[:used] as payload:  # released before it fills again
                        self._send(b"D", payload)
                if token > self._flush_sent:
                    self._send(b"F", journal_writer.TOKEN.pack(token))
                    self._flush_sent = token
            except OSError as e:
                self._writer_gone(e, count)
                return
            if closing:
                with self._lock:
                    os.close(self._pipe)
                    self._pipe = None
                return

    def _send(self, kind, payload):
        """One frame, header and payload, without copying the payload (the interpreter lock is
        released for the write)."""
        parts = [journal_writer.HEADER.pack(len(payload), kind), payload]
        while parts:
            sent = os.writev(self._pipe, parts)
            while parts and sent >= len(parts[0]):
                sent -= len(parts.pop(0))
            if sent:
                parts[0] = parts[0][sent:]

    def _writer_gone(self, error, lost):
        """The writer died (or was stopped): what is recorded from now on is dropped."""
        with self._lock:
            self.dropped += lost + self._count
            self._used = self._count = 0
            pipe, self._pipe = self._pipe, None
        if not self._closing:
            code = self.proc.poll()
            log.error("journal: the writer process %d is gone (%s; exit code %s): calls are no longer "
                      "journaled; restart the proxy, and see the log above for why it ended",
                      self.proc.pid, error, code)
        os.close(pipe)


def _start_writer(settings, pipe_bytes):
    """(the writer process, the write end of its pipe, the read end of its flush answers)."""
    data_r, data_w = os.pipe()
    ack_r, ack_w = os.pipe()
    try:
        fcntl.fcntl(data_w, fcntl.F_SETPIPE_SZ, pipe_bytes)
    except OSError:
        pass  # above /proc/sys/fs/pipe-max-size: the default 64 KiB holds fewer entries, no more
    # Its own session: Ctrl-C in a terminal reaches the server, which stops the writer in order.
    proc = subprocess.Popen([sys.executable, "-m", "proxy.journal_writer", str(ack_w)], stdin=data_r,
                            pass_fds=[ack_w], env=child_environment(), start_new_session=True)
    os.close(data_r)
    os.close(ack_w)
    os.write(data_w, journal_writer.frame(b"C", json.dumps(settings).encode()))
    log.info("journal: writer process %d started", proc.pid)
    return proc, data_w, ack_r


def _stop_writer(proc, wait):
    for step, name in ((None, ""), ("terminate", "SIGTERM"), ("kill", "SIGKILL")):
        if step:
            log.warning("journal: the writer process %d did not stop in %.1f s; sending %s", proc.pid,
                        wait, name)
            getattr(proc, step)()
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    code = proc.wait()
    (log.info if code == 0 else log.warning)("journal: writer process %d exited with code %d", proc.pid, code)


def write_spool(folder, version, doc):
    """The snapshot document of `version` as `<version>.json.z` in folder (written whole, then renamed)."""
    folder = Path(folder)
    tmp = folder / f".{version}.{os.getpid()}.tmp"
    tmp.write_bytes(pack(doc))
    os.replace(tmp, folder / f"{version}.json.z")


class Reader:
    """The reading side (the journal and explain commands); opens the file read-only."""

    def __init__(self, path):
        if not Path(path).exists():
            raise FileNotFoundError(f"no journal at {path}")
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        # A journal no proxy has opened since batches has no batch column: every row has its doc.
        self._where = "batch, pos" if "batch" in journal_writer.columns(self.db, "calls") else "NULL, NULL"
        # The last two batches decoded: calls come batch after batch in time, and the calls in
        # flight when one batch was cut end up in the next, so two cover the seam.
        self._batches = collections.OrderedDict()

    def _select(self, since, unit):
        """The query for calls since `since` that ran `unit` (either None: any), and its arguments."""
        sql, args = f"SELECT doc, {self._where} FROM calls WHERE 1=1", []
        if since is not None:
            sql, args = sql + " AND time >= ?", args + [since]
        if unit:
            sql, args = sql + " AND units LIKE ?", args + [f"%,{unit},%"]
        return sql, args

    def _entry(self, doc, batch, pos):
        """A row's entry: its own doc, or its place in a batch; None if the batch is gone (pruned
        while this reader read)."""
        if doc:
            return unpack(doc)
        entries = self._batches.get(batch)
        if entries is None:
            row = self.db.execute("SELECT doc FROM batches WHERE id = ?", (batch,)).fetchone()
            if row is None:
                return None
            entries = self._batches[batch] = unpack(row[0])
            if len(self._batches) > 2:
                self._batches.popitem(last=False)
        return entries[pos] if 0 <= pos < len(entries) else None

    def recent(self, since=None, unit=None, method=None, limit=50):
        """The newest calls first, filtered."""
        sql, args = self._select(since, unit)
        if method:
            sql, args = sql + " AND method = ?", args + [method]
        rows = self.db.execute(sql + " ORDER BY time DESC LIMIT ?", args + [limit]).fetchall()
        return [e for e in (self._entry(*row) for row in rows) if e is not None]

    def calls(self, since=None, unit=None, methods=None):
        """The calls, oldest first, each decoded only when the caller takes it (replay reads
        a journal of any size this way; at most two batches are held)."""
        sql, args = self._select(since, unit)
        if methods:
            sql, args = sql + f" AND method IN ({','.join('?' * len(methods))})", args + list(methods)
        for row in self.db.execute(sql + " ORDER BY time", args):  # streamed: old rows carry their docs
            e = self._entry(*row)
            if e is not None:
                yield e

    def call(self, rid):
        row = self.db.execute(f"SELECT doc, {self._where} FROM calls WHERE id = ?", (rid,)).fetchone()
        return self._entry(*row) if row else None

    def snapshot(self, run, version):
        """The snapshot document a call ran on, or None (no snapshot, or pruned)."""
        row = self.db.execute("SELECT doc FROM snapshots WHERE run = ? AND version = ?",
                              (run, version)).fetchone()
        return unpack(row[0]) if row else None

    def close(self):
        self.db.close()
