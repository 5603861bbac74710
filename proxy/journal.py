"""The decision journal: every engine call, what each unit answered and why, in sqlite.

One row per call (request id, time, client, method, units and weights, hosts, VM,
properties, each unit's answer or error with its duration and reasons, the answer the engine
got, the snapshot version it ran on), and the snapshots those calls ran on, once per version,
as the zlib-compressed JSON document of proxy/snapshot.py: a recorded call can be re-run on
exactly the state it saw (`ovirt-scheduler-proxy explain`, `balance --snapshot`).

A call never waits on the disk: `record()` puts the entry on a bounded queue and one writer
thread writes it.  If the writer falls behind (a slow disk), entries are dropped and counted,
and the count is logged; the engine's calls go on at full speed.  The file is bounded by age
(journal.max_days) and size (journal.max_mb): the oldest calls go first.

Snapshots the fork server reads (proxy/holding.py) reach the writer through a spool folder
(SPOOL_ENV names it in the fork server's environment): one `<version>.json.z` file each,
taken into the database with the first call that ran on it.
"""

import json
import logging
import os
import queue
import sqlite3
import threading
import time
import uuid
import zlib
from pathlib import Path

log = logging.getLogger("proxy.journal")

SPOOL_ENV = "OVIRT_SCHEDULER_PROXY_SNAPSHOT_SPOOL"
QUEUE_SIZE = 2000  # entries waiting for the writer; beyond, new entries are dropped
BATCH = 200  # entries written in one transaction
# The writer gathers entries for this long before a transaction: the writing (JSON, zlib,
# sqlite) shares the server's interpreter lock with the calls, so fewer, larger
# transactions take less from them (journal on vs off: bench_whatif).
GATHER = 0.2
PRUNE_EVERY = 30.0  # seconds between two age/size checks
DROP_LOG_EVERY = 60.0  # seconds between two "entries dropped" log lines
_STOP = object()
_NUDGE = object()  # flush(): end the gathering now

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (id TEXT PRIMARY KEY, time REAL NOT NULL, run TEXT NOT NULL,
    version INTEGER NOT NULL, method TEXT NOT NULL, units TEXT NOT NULL, doc BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS calls_time ON calls (time);
CREATE TABLE IF NOT EXISTS snapshots (run TEXT NOT NULL, version INTEGER NOT NULL, time REAL NOT NULL,
    doc BLOB NOT NULL, PRIMARY KEY (run, version));
"""


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


def pack(value):
    return zlib.compress(json.dumps(value, separators=(",", ":")).encode(), 1)


def unpack(blob):
    return json.loads(zlib.decompress(blob))


def make_entry(rid, started, client, method, record, answer, seconds, run):
    """The journal entry of one call (protocol.Record filled by the protocol and the server)."""
    inputs = record.inputs
    return {"id": rid, "time": started, "run": run, "client": client, "method": method,
            "units": list(record.units), "hosts": inputs.get("hosts", []), "vm": inputs.get("vm", ""),
            "properties": inputs.get("properties", {}), "version": record.version,
            "outcomes": record.outcomes, "answer": answer, "duration_ms": round(seconds * 1000, 2)}


class Journal:
    """The writing side; `record()` is safe from any thread and never blocks."""

    def __init__(self, path, max_days, max_mb, *, queue_size=QUEUE_SIZE, write=None, clock=time.time):
        self.path = Path(path)
        self.max_age, self.max_bytes = max_days * 86400.0, int(max_mb * 1024 * 1024)
        self.clock = clock
        self.run = uuid.uuid4().hex[:12]  # versions restart with each proxy run: (run, version) is unique
        self.spool = Path(f"{self.path}.spool") / self.run
        self.queue = queue.Queue(queue_size)
        self.dropped = 0
        self._taken = set()  # snapshot versions already moved into the database
        self._dropped_logged, self._last_drop_log, self._last_prune = 0, 0.0, 0.0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.spool.mkdir(parents=True, exist_ok=True)
        self.db = self._open()  # here, so a bad path is an error at start, not in the thread
        self.write = write or self._write
        self.thread = threading.Thread(target=self._loop, name="journal", daemon=True)
        self.thread.start()

    def _open(self):
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only takes effect on a new file
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL: a crash loses at most the last entries
        db.executescript(SCHEMA)
        return db

    def record(self, entry):
        """Queue an entry for the writer; drop (and count) it when the queue is full."""
        try:
            self.queue.put_nowait(entry)
        except queue.Full:
            self.dropped += 1
            now = time.monotonic()
            if now - self._last_drop_log >= DROP_LOG_EVERY:
                self._last_drop_log = now
                log.warning("journal: the writer is behind (a slow disk?); %d entries dropped so far",
                            self.dropped)

    def spool_document(self, version, doc):
        """Hand the writer the snapshot document of `version` (serve --snapshot does it at start)."""
        write_spool(self.spool, version, doc)

    def flush(self, timeout=10.0):
        """True once every queued entry is written (tests, and the last entries at stop)."""
        deadline = time.monotonic() + timeout
        try:
            self.queue.put_nowait(_NUDGE)  # write now, without waiting out GATHER
        except queue.Full:
            pass
        while self.queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout=10.0):
        self.flush(timeout)
        self.queue.put(_STOP)
        self.thread.join(timeout)
        if self.dropped:
            log.warning("journal: %d entries were dropped in this run", self.dropped)
        for f in self.spool.glob("*"):
            f.unlink(missing_ok=True)
        self.spool.rmdir()

    def _loop(self):
        while True:
            batch = [self.queue.get()]
            until = time.monotonic() + GATHER
            while len(batch) < BATCH and batch[-1] not in (_STOP, _NUDGE):
                try:
                    batch.append(self.queue.get(timeout=max(0.0, until - time.monotonic())))
                except queue.Empty:
                    break
            stop = _STOP in batch
            entries = [e for e in batch if e is not _STOP and e is not _NUDGE]
            try:
                if entries:
                    self.write(entries)
                if self.clock() - self._last_prune >= PRUNE_EVERY:
                    self.prune()
            except Exception:  # the journal must never take the proxy down
                log.exception("journal: writing %d entries failed", len(entries))
            finally:
                for _ in batch:
                    self.queue.task_done()
            if stop:
                self.db.close()
                return

    def _write(self, entries):
        with self.db:
            self.db.execute("BEGIN")
            for e in entries:
                self.db.execute("INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?, ?, ?)",
                                (e["id"], e["time"], e["run"], e["version"], e["method"],
                                 "," + ",".join(e["units"]) + ",", pack(e)))
            for version in sorted({e["version"] for e in entries if e["version"]}):
                self._take_snapshot(version)

    def _take_snapshot(self, version):
        """Move the spooled document of `version` into the database, once; older spooled
        versions no call ran on are dropped."""
        if version in self._taken:
            return
        self._taken.add(version)
        have = self.db.execute("SELECT 1 FROM snapshots WHERE run=? AND version=?",
                               (self.run, version)).fetchone()
        spooled = self.spool / f"{version}.json.z"
        if not have and spooled.exists():
            self.db.execute("INSERT INTO snapshots VALUES (?, ?, ?, ?)",
                            (self.run, version, self.clock(), spooled.read_bytes()))
        for f in self.spool.glob("*.json.z"):
            if int(f.name.split(".")[0]) <= version:
                f.unlink(missing_ok=True)

    def prune(self):
        """Drop calls older than max_days, then the oldest until the file is under max_mb,
        then the snapshots no call ran on any more."""
        self._last_prune = self.clock()
        db = self.db
        db.execute("DELETE FROM calls WHERE time < ?", (self.clock() - self.max_age,))
        while self._used_bytes() > self.max_bytes:
            count = db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
            if not count:
                break
            db.execute("DELETE FROM calls WHERE id IN (SELECT id FROM calls ORDER BY time LIMIT ?)",
                       (max(1, count // 10),))
            self._drop_orphans()
        self._drop_orphans()
        db.execute("PRAGMA incremental_vacuum")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _drop_orphans(self):
        self.db.execute("DELETE FROM snapshots WHERE NOT EXISTS (SELECT 1 FROM calls c WHERE "
                        "c.run = snapshots.run AND c.version = snapshots.version)")

    def _used_bytes(self):
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * self.db.execute("PRAGMA page_size").fetchone()[0]


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

    def recent(self, since=None, unit=None, method=None, limit=50):
        """The newest calls first, filtered."""
        sql, args = "SELECT doc FROM calls WHERE 1=1", []
        if since is not None:
            sql, args = sql + " AND time >= ?", args + [since]
        if unit:
            sql, args = sql + " AND units LIKE ?", args + [f"%,{unit},%"]
        if method:
            sql, args = sql + " AND method = ?", args + [method]
        rows = self.db.execute(sql + " ORDER BY time DESC LIMIT ?", args + [limit])
        return [unpack(doc) for (doc,) in rows]

    def call(self, rid):
        row = self.db.execute("SELECT doc FROM calls WHERE id = ?", (rid,)).fetchone()
        return unpack(row[0]) if row else None

    def snapshot(self, run, version):
        """The snapshot document a call ran on, or None (no snapshot, or pruned)."""
        row = self.db.execute("SELECT doc FROM snapshots WHERE run = ? AND version = ?",
                              (run, version)).fetchone()
        return unpack(row[0]) if row else None

    def close(self):
        self.db.close()
