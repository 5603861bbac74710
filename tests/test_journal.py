"""The decision journal: entries written behind the call, bounded by age and size, dropped
(and counted) rather than waited for, snapshots stored once per version."""
import json
import logging
import os
import signal
import threading
import time

from proxy import journal, state
from proxy.holding import load_file
from tests.support import ROOT

DAY = 86400.0


def entry(n, when, version=0, payload=""):
    return {"id": f"t-{n}", "time": when, "run": "r", "version": version, "method": "runLoadBalancing",
            "units": ["host_memory_balance"], "hosts": [], "vm": "", "properties": {"p": payload},
            "outcomes": [], "answer": {"result": ["", []]}, "duration_ms": 1.0}


def ids(path, **filters):
    reader = journal.Reader(path)
    try:
        return [e["id"] for e in reader.recent(limit=10_000, **filters)]
    finally:
        reader.close()


def test_calls_older_than_max_days_are_pruned(tmp_path):
    now = time.time()
    j = journal.Journal(tmp_path / "j.sqlite", max_days=14, max_mb=100, prune_every=0)
    j.record(entry(1, now - 20 * DAY))
    j.record(entry(2, now - 13 * DAY))
    j.record(entry(3, now))
    j.close()
    assert ids(tmp_path / "j.sqlite") == ["t-3", "t-2"]


def test_the_file_stays_under_max_mb_and_keeps_the_newest(tmp_path):
    path = tmp_path / "j.sqlite"
    j = journal.Journal(path, max_days=14, max_mb=0.25, prune_every=0)
    for n in range(400):  # ~2 KB each after compression (random text does not compress): ~0.8 MB
        j.record(entry(n, time.time() + n, payload=os.urandom(1500).hex()))
        j.flush()
    j.close()
    kept = ids(path)
    assert 0 < len(kept) < 400 and kept[0] == "t-399"
    assert path.stat().st_size <= 0.25 * 1024 * 1024 * 1.2  # the freed pages are given back


def test_a_stalled_writer_drops_and_counts_entries_and_never_blocks_the_call(tmp_path, caplog):
    # A writer that does not answer (a disk that hangs): the process stopped outright.
    j = journal.Journal(tmp_path / "j.sqlite", 14, 100, buffer_bytes=16384, pipe_bytes=4096)
    assert j.flush()
    os.kill(j.proc.pid, signal.SIGSTOP)
    caplog.set_level(logging.WARNING, "proxy.journal")
    begun = time.monotonic()
    for n in range(300):  # ~3 KB each: the 4 KiB pipe and the 16 KiB buffer fill at once
        j.record(entry(n, time.time(), payload=os.urandom(1500).hex()))
        if n % 20 == 0:
            j._wake.set()  # let the feeder move what it can now, as the passing time would
    assert time.monotonic() - begun < 0.5  # 300 calls, none waited for the disk
    assert 0 < j.dropped < 300
    assert "entries dropped so far" in caplog.text
    assert not j.flush(0.3)  # nothing is written while the writer is stopped
    os.kill(j.proc.pid, signal.SIGCONT)
    assert j.flush()
    j.close()
    written = ids(tmp_path / "j.sqlite")
    assert len(written) + j.dropped == 300 and "t-0" in written


def test_snapshots_are_stored_once_per_version_and_come_back_whole(tmp_path):
    doc = state.to_document(load_file(ROOT / "config" / "cluster-small.json"))
    j = journal.Journal(tmp_path / "j.sqlite", 14, 100)
    j.spool_document(3, doc)
    for n in range(3):
        j.record(dict(entry(n, time.time(), version=3), run=j.run))
    j.close()
    reader = journal.Reader(tmp_path / "j.sqlite")
    assert reader.snapshot(j.run, 3) == json.loads(json.dumps(doc))
    assert reader.db.execute("SELECT COUNT(*) FROM snapshots").fetchone()[0] == 1
    assert not (tmp_path / "j.sqlite.spool" / j.run).exists()  # the spool is cleaned at close


def test_filters_and_paths(tmp_path, monkeypatch):
    now = time.time()
    j = journal.Journal(tmp_path / "j.sqlite", 14, 100)
    j.record(entry(1, now - 100))
    j.record(dict(entry(2, now), method="runFilters", units=["max_vms"]))
    j.close()
    assert ids(tmp_path / "j.sqlite", unit="max_vms") == ["t-2"]
    assert ids(tmp_path / "j.sqlite", method="runLoadBalancing") == ["t-1"]
    assert ids(tmp_path / "j.sqlite", since=now - 50) == ["t-2"]
    reader = journal.Reader(tmp_path / "j.sqlite")
    assert [e["id"] for e in reader.calls()] == ["t-1", "t-2"]  # oldest first, as replay runs them
    assert [e["id"] for e in reader.calls(methods=("runFilters", "discover"))] == ["t-2"]
    assert [e["id"] for e in reader.calls(since=now - 50, unit="host_memory_balance")] == []
    reader.close()
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/x")
    assert journal.resolve("journal.sqlite") == journal.Path("/var/lib/x/journal.sqlite")
    assert journal.resolve("") is None
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert journal.resolve("j.sqlite") == tmp_path / "ovirt-scheduler-proxy" / "j.sqlite"


def test_an_entry_is_stored_as_it_was_when_recorded(tmp_path):
    # The server keeps no entry as Python objects past its call: what changes in the call's
    # objects afterwards (a shadow run reading them, a later release) is not in the journal.
    j = journal.Journal(tmp_path / "j.sqlite", 14, 10)
    e = entry(1, time.time(), payload="before")
    j.record(e)
    e["properties"]["p"] = "after"
    e["outcomes"].append({"unit": "late"})
    assert j.flush()
    j.close()
    reader = journal.Reader(tmp_path / "j.sqlite")
    stored = reader.call("t-1")
    assert stored["properties"] == {"p": "before"} and stored["outcomes"] == []


def test_an_entry_no_encoder_takes_is_dropped_and_counted_and_the_next_is_stored(tmp_path, caplog):
    j = journal.Journal(tmp_path / "j.sqlite", 14, 10)
    bad = entry(1, time.time())
    bad["outcomes"] = [{("a", "tuple"): "key"}]  # neither orjson nor the standard library takes it
    j.record(bad)
    j.record(entry(2, time.time()))
    assert j.flush()
    j.close()
    assert j.dropped == 1 and "the entry of request t-1 cannot be encoded" in caplog.text
    assert ids(tmp_path / "j.sqlite") == ["t-2"]


def test_an_entry_larger_than_the_buffer_is_dropped_and_named_and_the_next_is_stored(tmp_path, caplog):
    j = journal.Journal(tmp_path / "j.sqlite", 14, 10, buffer_bytes=4096)
    j.record(entry(1, time.time(), payload="x" * 5000))
    j.record(entry(2, time.time()))
    assert j.flush()
    j.close()
    assert j.dropped == 1 and "the entry of request t-1 (5" in caplog.text and "larger than the journal's buffer" in caplog.text
    assert ids(tmp_path / "j.sqlite") == ["t-2"]


def test_entries_recorded_by_many_threads_at_once_are_all_stored_whole(tmp_path):
    # The calls' threads share the buffer the feeder swaps: no entry may be cut, mixed with
    # another, lost at a swap or written twice.
    j = journal.Journal(tmp_path / "j.sqlite", 14, 100)
    now = time.time()

    def calls(t):
        for n in range(250):
            j.record(entry(f"{t}-{n}", now + n, payload=str(t) * (n % 97)))
            if n % 50 == 0:
                j._wake.set()  # swaps while the other threads write, as the passing time would

    threads = [threading.Thread(target=calls, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert j.flush()
    j.close()
    reader = journal.Reader(tmp_path / "j.sqlite")
    stored = list(reader.calls())
    assert j.dropped == 0 and len(stored) == 8 * 250
    assert sorted(e["id"] for e in stored) == sorted(f"t-{t}-{n}" for t in range(8) for n in range(250))
    assert all(e["properties"]["p"] == e["id"].split("-")[1] * (int(e["id"].split("-")[2]) % 97) for e in stored)
