"""The journal's writer process: what the pipe carries is stored, a flush is answered only
once the entries before it are stored, and the process never outlives its server nor
escapes the stop ladder."""
import io
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time

from proxy import journal, journal_writer
from tests.support import ROOT, alive, wait_until


def entry(n, **extra):
    return {"id": f"w-{n}", "time": time.time(), "run": "r", "version": 0, "method": "runFilters",
            "units": ["max_vms"], "hosts": ["h1"], "vm": "v", "properties": {}, "outcomes": [],
            "answer": {"result": ["h1"]}, "duration_ms": 1.0, **extra}


def _payload(*entries):
    return journal_writer.docs_payload([journal_writer.encode(e) for e in entries])


def _settings_frame(tmp_path):
    """The C frame a writer starts with: a journal in tmp_path, no bounds a test reaches."""
    settings = {"path": str(tmp_path / "j.sqlite"), "run": "r", "spool": str(tmp_path), "max_age": 86400.0,
                "max_bytes": 1 << 30, "prune_every": 30.0, "log": None}
    return journal_writer.frame(b"C", json.dumps(settings).encode())


def _rows(entries):
    return [journal_writer.row(e, journal_writer.encode(e)) for e in entries]


def test_frames_are_stored_in_order_and_a_flush_is_answered_after_them(tmp_path):
    stream = io.BytesIO(_settings_frame(tmp_path)
                        + journal_writer.frame(b"D", _payload(entry(1), entry(2)))
                        + journal_writer.frame(b"F", journal_writer.TOKEN.pack(7))
                        + journal_writer.frame(b"D", _payload(entry(3, hosts=("h1", "h2")))))
    acks_r, acks_w = os.pipe()
    assert journal_writer.serve(stream, acks_w) == 3
    assert journal_writer.TOKEN.unpack(os.read(acks_r, 64)) == (7,)
    reader = journal.Reader(tmp_path / "j.sqlite")
    assert [e["id"] for e in reader.recent()] == ["w-3", "w-2", "w-1"]
    assert reader.call("w-3")["hosts"] == ["h1", "h2"]  # a tuple comes back as JSON's list


def test_a_value_json_has_no_form_for_is_stored_as_text(tmp_path):
    j = journal.Journal(tmp_path / "j.sqlite", 14, 10)
    j.record(entry(1, answer={"result": object()}))
    assert j.flush()
    j.close()
    reader = journal.Reader(tmp_path / "j.sqlite")
    assert reader.call("w-1")["answer"]["result"].startswith("<object object")


def test_a_writer_that_does_not_stop_gets_sigterm_then_sigkill_and_is_reaped(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(journal, "STOP_WAIT", 0.2)
    caplog.set_level(logging.INFO, "proxy.journal")
    j = journal.Journal(tmp_path / "j.sqlite", 14, 10)
    os.kill(j.proc.pid, signal.SIGSTOP)  # a stopped process ignores its pipe's end and SIGTERM alike
    j.close(timeout=0.2)
    assert j.proc.returncode == -signal.SIGKILL and not alive(j.proc.pid)
    assert "sending SIGTERM" in caplog.text and "sending SIGKILL" in caplog.text
    assert f"writer process {j.proc.pid} exited with code -9" in caplog.text


PARENT = """
import sys, time
from proxy import journal
j = journal.Journal(sys.argv[1], 14, 10)
j.record({"id": "before", "time": time.time(), "run": "r", "version": 0, "method": "runFilters",
          "units": [], "hosts": [], "vm": "", "properties": {}, "outcomes": [], "answer": None,
          "duration_ms": 1.0})
assert j.flush()
print(j.proc.pid, flush=True)
time.sleep(600)
"""


def test_the_writer_dies_with_its_server(tmp_path):
    server = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path / "j.sqlite")], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        writer = int(server.stdout.readline())
        assert alive(writer)
        server.kill()  # no close(), no signal handler: only the pipe's end tells the writer
        server.wait()
        wait_until(lambda: not alive(writer), what=f"the writer {writer} to exit after its server")
    finally:
        server.kill()
        server.wait()
        server.stdout.close()
    assert [e["id"] for e in journal.Reader(tmp_path / "j.sqlite").recent()] == ["before"]


def test_a_snapshot_spooled_after_its_first_calls_are_stored_is_taken_with_the_next(tmp_path):
    """The reading child spools a snapshot after handing it over: calls on it may be stored
    first; the snapshot is taken with a later entry of that version, not lost."""
    spool = tmp_path / "spool"
    spool.mkdir()
    store = journal_writer.Store(str(tmp_path / "j.sqlite"), "r", str(spool), 86400.0, 1 << 30, 30.0)
    store.write(_rows([entry(1, version=5)]))
    reader = journal.Reader(tmp_path / "j.sqlite")
    assert reader.snapshot("r", 5) is None
    journal.write_spool(spool, 5, {"hosts": [], "vms": []})
    store.write(_rows([entry(2, version=5)]))
    assert reader.snapshot("r", 5) == {"hosts": [], "vms": []}
    assert not list(spool.glob("*.json.z"))  # moved into the database


def test_the_writer_only_takes_cpu_the_calls_leave(tmp_path):
    """SCHED_IDLE (Linux): a call that wants a CPU preempts the writer at once; nice 19 too."""
    j = journal.Journal(tmp_path / "j.sqlite", 14, 10)
    try:
        pid, idle = j.proc.pid, getattr(os, "SCHED_IDLE", None)
        # It sets its nice value first, then its policy: wait for both, not just the first.
        wait_until(lambda: os.getpriority(os.PRIO_PROCESS, pid) == journal_writer.NICENESS
                   and (idle is None or os.sched_getscheduler(pid) == idle),
                   what="the writer to run at nice 19 under SCHED_IDLE")
        j.record(entry(1))
        assert j.flush() and [e["id"] for e in journal.Reader(tmp_path / "j.sqlite").recent()] == ["w-1"]
    finally:
        j.close()


def _store(tmp_path, max_age=86400.0):
    (tmp_path / "spool").mkdir(exist_ok=True)
    return journal_writer.Store(str(tmp_path / "j.sqlite"), "r", str(tmp_path / "spool"), max_age, 1 << 30, 30.0)


def _count(reader, table):
    return reader.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_entries_written_together_share_a_batch_and_each_reads_back_as_written(tmp_path, monkeypatch):
    monkeypatch.setattr(journal_writer, "BATCH_ENTRIES", 3)
    now = time.time()
    _store(tmp_path).write(_rows([entry(n, time=now + n, hosts=[f"h{n}"]) for n in range(7)]))
    reader = journal.Reader(tmp_path / "j.sqlite")
    assert _count(reader, "batches") == 3  # 3 + 3 + 1
    assert [reader.call(f"w-{n}")["hosts"] for n in (6, 0, 4)] == [["h6"], ["h0"], ["h4"]]
    assert [e["id"] for e in reader.calls()] == [f"w-{n}" for n in range(7)]
    assert [e["id"] for e in reader.recent(limit=4)] == ["w-6", "w-5", "w-4", "w-3"]


def test_a_reader_holds_at_most_two_batches_however_many_it_reads(tmp_path, monkeypatch):
    monkeypatch.setattr(journal_writer, "BATCH_ENTRIES", 1)
    now = time.time()
    _store(tmp_path).write(_rows([entry(n, time=now + n) for n in range(5)]))
    reader, held = journal.Reader(tmp_path / "j.sqlite"), []
    for e in reader.calls():
        held.append(len(reader._batches))
    assert held == [1, 2, 2, 2, 2]


def test_a_batch_is_cut_at_its_size_in_bytes(tmp_path, monkeypatch):
    now = time.time()
    one = len(journal_writer.encode(entry(0, time=now)))
    monkeypatch.setattr(journal_writer, "BATCH_BYTES", one * 3 // 2)  # no two entries fit
    _store(tmp_path).write(_rows([entry(n, time=now + n) for n in range(5)]))
    reader = journal.Reader(tmp_path / "j.sqlite")
    assert _count(reader, "batches") == 5
    assert [e["id"] for e in reader.calls()] == [f"w-{n}" for n in range(5)]


def test_what_the_fast_encoder_refuses_is_stored_all_the_same(tmp_path):
    now = time.time()
    big = 2 ** 70  # beyond orjson's 64 bits: the standard library encodes this entry
    _store(tmp_path).write(_rows([entry(1, time=now, answer={"result": [["h1", big]]}),
                                  entry(2, time=now + 1, answer={"result": [["h1", float("nan")]]})]))
    reader = journal.Reader(tmp_path / "j.sqlite")
    assert reader.call("w-1")["answer"]["result"] == [["h1", big]]
    assert reader.call("w-2")["answer"]["result"] == [["h1", None]]  # JSON has no NaN
    assert _count(reader, "batches") == 1


def test_pruning_drops_the_batches_no_call_is_in_any_more(tmp_path):
    store, now = _store(tmp_path, max_age=100.0), time.time()
    store.write(_rows([entry(1, time=now - 1000), entry(2, time=now - 1000)]))  # both too old
    store.write(_rows([entry(3, time=now - 1000), entry(4, time=now)]))  # one too old, one kept
    store.prune()
    reader = journal.Reader(tmp_path / "j.sqlite")
    assert [e["id"] for e in reader.recent()] == ["w-4"]
    assert _count(reader, "batches") == 1  # the second stays, for w-4
    assert reader.call("w-3") is None


def test_a_journal_from_before_batches_is_read_and_then_written_on(tmp_path):
    path, now = tmp_path / "j.sqlite", time.time()
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE calls (id TEXT PRIMARY KEY, time REAL NOT NULL, run TEXT NOT NULL, version INTEGER "
               "NOT NULL, method TEXT NOT NULL, units TEXT NOT NULL, doc BLOB NOT NULL)")  # the former schema
    db.execute("INSERT INTO calls VALUES (?, ?, ?, ?, ?, ?, ?)",
               ("w-1", now, "r", 0, "runFilters", ",max_vms,", journal_writer.pack(entry(1, time=now))))
    db.commit()
    db.close()
    reader = journal.Reader(path)  # read-only: the file is read as it is
    assert reader.call("w-1")["time"] == now
    reader.close()
    _store(tmp_path).write(_rows([entry(2, time=now + 1)]))  # the writer adds the batch columns
    reader = journal.Reader(path)
    assert [e["id"] for e in reader.calls()] == ["w-1", "w-2"]
    assert [e["id"] for e in reader.calls(unit="max_vms")] == ["w-1", "w-2"]


def test_a_malformed_entries_frame_is_logged_and_skipped_and_the_next_is_stored(tmp_path, caplog):
    good = _payload(entry(1))
    not_an_entry = journal_writer.docs_payload([b'{"id": "w-8"}', b"[1, 2]", b"not json",
                                                journal_writer.encode(entry(7, version="1")),
                                                journal_writer.encode(entry(3))])
    stream = io.BytesIO(_settings_frame(tmp_path)
                        + journal_writer.frame(b"D", good[:-3])  # cut short
                        + journal_writer.frame(b"D", b"\xff\xff\xff\xffgarbage!")  # a length past the end
                        + journal_writer.frame(b"D", not_an_entry)  # four bad entries, one good
                        + journal_writer.frame(b"D", _payload(entry(2))))
    acks_r, acks_w = os.pipe()
    with caplog.at_level(logging.ERROR, "proxy.journal"):
        assert journal_writer.serve(stream, acks_w) == 2
    assert caplog.text.count("malformed D frame") == 2
    assert "4 entries of a D frame are not entries" in caplog.text
    assert [e["id"] for e in journal.Reader(tmp_path / "j.sqlite").recent()] == ["w-2", "w-3"]
