"""The decision journal's writer: a process of its own that encodes, compresses and stores
the entries the server hands it (`python -m proxy.journal_writer ACK_FD`).

Why a process: in the server, JSON encoding, zlib and sqlite share the interpreter lock with
the calls, and took ~1 ms from each call's p50 under load (docs/RELIABILITY.md, "The decision
journal").  Here they run beside the server, which only encodes each entry (orjson, C, ~1
us) and copies it into the buffer it writes onto a pipe.

The pipe carries frames: 4-byte big-endian length, 1 kind byte, payload.
- `C` (first frame): the settings, JSON.
- `D`: entries, each its 4-byte big-endian length and its JSON document (`docs_payload`):
  their columns are read here (`read_docs`), and they are written in one transaction.
- `F`: a flush token, 8 bytes: written back on ACK_FD once every earlier entry is stored.
End of file on the pipe (the server closed it, or died) stops the writer: it has no other way
to outlive the server.
"""

import contextlib
import json
import logging
import os
import signal
import sqlite3
import struct
import sys
import time
import zlib
from pathlib import Path

import orjson

from . import logs

log = logging.getLogger("proxy.journal")

# Its work can wait, the calls' cannot: the writer runs under SCHED_IDLE where Linux has it,
# on CPU no other process wants (nice 19 elsewhere, which still takes a 1.5 % share).  An
# entry waits at most until the calls leave a moment; if they never do, the server drops and
# counts entries, as for a slow disk.
NICENESS = 19

HEADER = struct.Struct(">Ic")
TOKEN = struct.Struct(">Q")
SIZE = struct.Struct(">I")  # an entry's length in a D frame

# A call's row holds its entry's document (doc) or, written since batches, an empty doc and
# where its entry is in a batch: the entries written together, as one compressed JSON
# array.  One encoding and one compression per batch, not per entry, halved the writer's
# CPU per small entry (~82 to ~40 us); on two busy cores every microsecond any process
# spends is taken from the calls.  Journals written before batches are read as they are.
SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (id TEXT PRIMARY KEY, time REAL NOT NULL, run TEXT NOT NULL,
    version INTEGER NOT NULL, method TEXT NOT NULL, units TEXT NOT NULL, doc BLOB NOT NULL,
    batch INTEGER, pos INTEGER);
CREATE INDEX IF NOT EXISTS calls_time ON calls (time);
CREATE TABLE IF NOT EXISTS batches (id INTEGER PRIMARY KEY, doc BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (run TEXT NOT NULL, version INTEGER NOT NULL, time REAL NOT NULL,
    doc BLOB NOT NULL, PRIMARY KEY (run, version));
"""
# A batch is cut at this many bytes of JSON, or entries: reading one call decodes its batch.
BATCH_BYTES = 1 << 20
BATCH_ENTRIES = 256


_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False, default=str)

# A row: what the pipe carries of an entry, and the calls table's columns but the last three.
ID, TIME, RUN, VERSION, METHOD, UNITS, DOC = range(7)


def encode(value):
    """JSON of value, as bytes.  orjson takes ~1 us for an entry, less than marshal (~1.9 us)
    and a thirteenth of the standard library (docs/RELIABILITY.md, "The decision journal").
    What orjson refuses (an int beyond 64 bits, a key that is not a string) the standard
    library encodes; a value JSON has no form for (a unit's answer of an unexpected type) is
    stored as its text; NaN and the infinities, which JSON lacks, as null."""
    try:
        return orjson.dumps(value, default=str)
    except TypeError:
        return _ENCODER.encode(value).encode()


def row(entry, doc):
    """The row of an entry (a journal.make_entry dict): its columns, and its JSON document."""
    return (entry["id"], entry["time"], entry["run"], entry["version"], entry["method"],
            "," + ",".join(entry["units"]) + ",", doc)


def docs_payload(docs):
    """The payload of a D frame: each document's length, then the document (what the server's
    journal buffer holds, proxy/journal.py)."""
    return b"".join(SIZE.pack(len(d)) + d for d in docs)


def read_docs(payload):
    """The rows of a D frame's payload; ValueError if its lengths do not add up.  The columns
    are read here, in the writer, so that the server only copies the document.  A document
    that is not an entry is logged and left out."""
    rows, at, view, bad = [], 0, memoryview(payload), 0
    while at < len(payload):
        if at + SIZE.size > len(payload):
            raise ValueError("a malformed D frame (a length cut short)")
        (size,) = SIZE.unpack_from(payload, at)
        at += SIZE.size
        if at + size > len(payload):
            raise ValueError("a malformed D frame (an entry cut short)")
        doc = bytes(view[at:at + size])
        at += size
        try:
            r = row(_decode(doc), doc)
        except (ValueError, KeyError, TypeError):
            bad += 1
            continue
        if _well_typed(r):
            rows.append(r)
        else:
            bad += 1
    if bad:
        log.error("journal: %d entries of a D frame are not entries; they are lost", bad)
    return rows


def _well_typed(r):
    """The columns have the types the calls table and the readers expect."""
    return (isinstance(r[ID], str) and isinstance(r[TIME], (int, float)) and isinstance(r[RUN], str)
            and type(r[VERSION]) is int and isinstance(r[METHOD], str))


def _decode(doc):
    try:
        return orjson.loads(doc)
    except orjson.JSONDecodeError:  # NaN, from encode()'s fallback to the standard library
        return json.loads(doc)


def pack(value):
    """zlib-compressed JSON of value."""
    return compress(encode(value))


def compress(data):
    """zlib, with its window and hash table sized to the data: zlib.compress sets up ~256 KB
    of state whatever the size, most of the cost for a few KB, and a window as large as the
    data finds every match a larger one would."""
    wbits = max(9, min(15, len(data).bit_length()))
    z = zlib.compressobj(1, zlib.DEFLATED, wbits, max(1, wbits - 7))
    return z.compress(data) + z.flush()


def batches(rows):
    """[(the rows, their documents as one JSON array)], cut at BATCH_ENTRIES rows or
    BATCH_BYTES bytes of JSON."""
    cuts, size = [[]], 0
    for r in rows:
        if cuts[-1] and (size + len(r[DOC]) > BATCH_BYTES or len(cuts[-1]) >= BATCH_ENTRIES):
            cuts.append([])
            size = 0
        cuts[-1].append(r)
        size += len(r[DOC])
    return [(cut, b"[" + b",".join(r[DOC] for r in cut) + b"]") for cut in cuts if cut]


class Store:
    """The sqlite side: rows in, snapshots taken from the spool, bounded by age and size."""

    def __init__(self, path, run, spool, max_age, max_bytes, prune_every):
        self.db = open_db(path)
        self.run, self.spool = run, Path(spool)
        self.max_age, self.max_bytes, self.prune_every = max_age, max_bytes, prune_every
        self._taken = set()  # snapshot versions already moved into the database
        self._last_prune = 0.0

    def write(self, rows):
        with self.db:
            self.db.execute("BEGIN")
            calls = []
            for cut, data in batches(rows):
                batch = self.db.execute("INSERT INTO batches (doc) VALUES (?)", (compress(data),)).lastrowid
                calls += [(*r[:DOC], b"", batch, pos) for pos, r in enumerate(cut)]
            self.db.executemany("INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", calls)
            for version in sorted({r[VERSION] for r in rows if r[VERSION]}):
                self._take_snapshot(version)
        if time.time() - self._last_prune >= self.prune_every:
            self.prune()

    def _take_snapshot(self, version):
        """Move the spooled document of `version` into the database, once; older spooled
        versions no call ran on are dropped."""
        if version in self._taken:
            return
        have = self.db.execute("SELECT 1 FROM snapshots WHERE run=? AND version=?",
                               (self.run, version)).fetchone()
        spooled = self.spool / f"{version}.json.z"
        if not have and not spooled.exists():
            return  # not spooled yet (the reader spools after its answer): the next entries retry
        self._taken.add(version)
        if not have:
            self.db.execute("INSERT INTO snapshots VALUES (?, ?, ?, ?)",
                            (self.run, version, time.time(), spooled.read_bytes()))
        for f in self.spool.glob("*.json.z"):
            if int(f.name.split(".")[0]) <= version:
                f.unlink(missing_ok=True)

    def prune(self):
        """Drop calls older than max_days, then the oldest until the file is under max_mb,
        then the snapshots no call ran on any more."""
        self._last_prune = time.time()
        db = self.db
        db.execute("DELETE FROM calls WHERE time < ?", (time.time() - self.max_age,))
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
        # NOT IN over a subquery that does not depend on the row: sqlite reads calls once.
        self.db.execute("DELETE FROM batches WHERE id NOT IN (SELECT batch FROM calls WHERE batch IS NOT NULL)")
        self.db.execute("DELETE FROM snapshots WHERE NOT EXISTS (SELECT 1 FROM calls c WHERE "
                        "c.run = snapshots.run AND c.version = snapshots.version)")

    def _used_bytes(self):
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * self.db.execute("PRAGMA page_size").fetchone()[0]


def open_db(path):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only takes effect on a new file
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # WAL: a crash loses at most the last entries
    # The writer only appends: sqlite's default 2 MB page cache (filled by snapshot blobs)
    # would stay in the writer's memory for nothing.
    db.execute("PRAGMA cache_size=-512")
    db.executescript(SCHEMA)
    if "batch" not in columns(db, "calls"):  # a journal from before batches: its rows stay as they are
        db.execute("ALTER TABLE calls ADD COLUMN batch INTEGER")
        db.execute("ALTER TABLE calls ADD COLUMN pos INTEGER")
    return db


def columns(db, table):
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def frame(kind, payload):
    return HEADER.pack(len(payload), kind) + payload


def read_frame(stream):
    """(kind byte, payload), or None at end of file."""
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    size, kind = HEADER.unpack(head)
    payload = stream.read(size)
    return (kind, payload) if len(payload) == size else None


def serve(stream, ack_fd):
    first = read_frame(stream)
    if first is None or first[0] != b"C":
        raise SystemExit("journal writer: the first frame must be the settings (C)")
    s = json.loads(first[1])
    if s.get("log"):
        logs.configure(*s["log"])
    store = Store(s["path"], s["run"], s["spool"], s["max_age"], s["max_bytes"], s["prune_every"])
    written = 0
    while True:
        got = read_frame(stream)
        if got is None:
            break
        kind, payload = got
        if kind == b"D":
            try:
                rows = read_docs(payload)
            except ValueError as e:  # only a server of another version would send one
                log.error("journal: %s; its entries are lost (is the writer of the same version "
                          "as the proxy?)", e)
                continue
            try:
                store.write(rows)
                written += len(rows)
            except Exception:  # one bad batch must not stop the journal
                log.exception("journal: writing %d entries failed", len(rows))
        elif kind == b"F":
            os.write(ack_fd, payload)
    store.db.close()
    return written


def main():
    # Ctrl-C reaches the whole terminal group; the server decides when the writer stops
    # (it closes the pipe), so the last entries are written.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    os.nice(NICENESS)
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or a kernel without it
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    serve(sys.stdin.buffer, int(sys.argv[1]))


if __name__ == "__main__":
    main()
