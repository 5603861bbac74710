"""The fork server holds the engine's state for its workers: one read serves every call,
new reads reach new workers, the engine may be down at start, a stale snapshot is refused
past stale_limit, a snapshot file needs no engine, and legacy SDK plugins keep working."""
import collections
import dataclasses
import os
import time

import pytest

from proxy import balancing, config, executor, holding, metrics
from proxy.errors import EngineUnavailable
from tests.support import PLUGINS, ROOT, wait_until

STATE = PLUGINS / "state"


def make(folder, sim=None, password=None, snapshot_file="", **settings):
    values = {"plugins.folder": str(folder), "plugins.timeout": "10"}
    if sim is not None:
        values["engine.url"] = sim.url
    cfg = config.load(None, values).replace({"engine.user": "admin@internal", **settings})
    ex = executor.Executor(cfg, password=password if password is not None else getattr(sim, "password", ""),
                           snapshot_file=snapshot_file)
    ex.start()
    return ex


def call(ex, name, args=None, timeout=10):
    unit = ex.catalog().find("filter", name)
    [value], finished = ex.run([executor.Call(unit, [["h1"], "", args or {}])], time.monotonic() + timeout)
    finished.release()
    return value


def test_one_read_serves_every_call_and_workers_hold_it_without_asking(sim_engine, small_snapshot):
    ex = make(STATE, sim_engine)
    try:
        first = call(ex, "what_state")
        assert first[:3] == ["1", str(len(small_snapshot["hosts"])), str(len(small_snapshot["vms"]))]
        sim_engine.reset_counters()
        answers = [call(ex, "what_state") for _ in range(20)]
        assert sim_engine.api_requests == 0  # no call asked the engine
        assert {a[0] for a in answers} == {"1"} and len({a[3] for a in answers}) == 20  # 20 workers
    finally:
        ex.stop()


def test_a_new_read_reaches_the_next_calls(sim_engine, small_snapshot):
    ex = make(STATE, sim_engine)
    try:
        assert call(ex, "what_state")[0] == "1"
        sim_engine.update_vm(small_snapshot["vms"][-1]["id"], status="down", host=None)
        ex.generation.refresher.read_at = 0  # as if max_age had passed
        assert call(ex, "what_state")[0] == "2"
    finally:
        ex.stop()


def test_max_age_zero_shares_nothing_and_units_read_the_engine(sim_engine):
    ex = make(STATE, sim_engine, **{"engine.max_age": 0})
    try:
        assert ex.generation.refresher is None
        sim_engine.reset_counters()
        assert call(ex, "what_state")[0] == "0"  # a read of its own (version 0)
        assert sim_engine.api_requests >= 4
    finally:
        ex.stop()


def test_a_unit_may_ask_for_fresh_data(sim_engine):
    ex = make(STATE, sim_engine)
    try:
        call(ex, "what_state")
        sim_engine.reset_counters()
        assert call(ex, "fresh_state")[0] == "0" and sim_engine.api_requests >= 4
    finally:
        ex.stop()


def test_the_engine_down_at_start_fails_only_the_units_that_read_it(tmp_path):
    ex = make(STATE, None, password="x", **{"engine.url": "http://127.0.0.1:9/ovirt-engine/api"})
    try:
        assert call(ex, "no_state") == ["h1"]  # the proxy started and serves
        wait_until(lambda: ex.generation.refresher.error, 10, "the first read to fail")
        value = call(ex, "what_state")
        assert isinstance(value, EngineUnavailable) and "cannot connect to the engine" in str(value)
    finally:
        ex.stop()


def test_a_stale_snapshot_is_kept_on_engine_errors_then_refused_past_stale_limit(sim_engine):
    ex = make(STATE, sim_engine, **{"engine.max_age": 0.2, "engine.stale_limit": 1.5})
    try:
        assert call(ex, "what_state")[0] == "1"
        sim_engine.fail_next(500, count=1000)  # the engine fails every request from now on
        kept = wait_until(lambda: (v := call(ex, "what_state")) and ex.generation.refresher.error and v,
                          10, "a failed refresh")
        assert kept[0] == "1"  # the last good snapshot, within stale_limit
        refused = wait_until(lambda: isinstance(v := call(ex, "what_state"), EngineUnavailable) and v, 10,
                             "the snapshot to pass stale_limit")
        assert "past engine.stale_limit" in str(refused) and "HTTP 500" in str(refused)
    finally:
        ex.stop()


def test_a_snapshot_file_needs_no_engine(tmp_path):
    ex = make(STATE, None, snapshot_file=str(ROOT / "config" / "cluster-small.json"))
    try:
        assert ex.generation.refresher is None
        assert call(ex, "what_state")[:3] == ["1", "4", "10"]
    finally:
        ex.stop()


def test_load_file_gives_version_one_from_the_files_time():
    snap = holding.load_file(str(ROOT / "config" / "cluster-small.json"))
    assert snap.version == 1 and snap.source.startswith("file ") and len(snap.hosts) == 4
    assert snap.read_at == pytest.approx((ROOT / "config" / "cluster-small.json").stat().st_mtime)


def test_legacy_sdk_plugins_work_unchanged_beside_the_shared_snapshot(sim_engine, small_snapshot):
    ex = make(PLUGINS / "legacy_sdk", sim_engine)
    try:
        hosts = [h["id"] for h in small_snapshot["hosts"]]
        up = [h["id"] for h in small_snapshot["hosts"] if h["status"] == "up"]
        unit = ex.catalog().find("filter", "via_bound_connection")
        [value], f = ex.run([executor.Call(unit, [hosts, "", {}])], time.monotonic() + 10)
        f.release()
        assert value == up
        own = ex.catalog().find("filter", "via_own_connection")
        args = {"url": sim_engine.url, "user": sim_engine.user, "password": sim_engine.password}
        [value], f = ex.run([executor.Call(own, [hosts, "", args])], time.monotonic() + 10)
        f.release()
        assert value == hosts
    finally:
        ex.stop()


def test_each_read_shows_in_the_metrics(sim_engine):
    from prometheus_client.parser import text_string_to_metric_families

    def sample(name):
        for family in text_string_to_metric_families(metrics.exposition().decode()):
            for s in family.samples:
                if s.name == name and s.labels.get("source", "snapshot") == "snapshot":
                    return s.value
        return 0.0
    reads_before = sample("ovirt_scheduler_proxy_engine_requests_total")
    ex = make(STATE, sim_engine)
    try:
        call(ex, "what_state")
        version = ex.generation.refresher.version
        assert sample("ovirt_scheduler_proxy_snapshot_version") == version
        assert 0 <= sample("ovirt_scheduler_proxy_snapshot_age_seconds") < 60
        assert sample("ovirt_scheduler_proxy_engine_requests_total") == reads_before + 1
    finally:
        ex.stop()


def test_a_feed_file_holds_the_answer_a_reading_child_sends(tmp_path):
    """`simulate UNIT` hands each round's state over as the reading child's ready-made answer."""
    snap = holding.load_file(str(ROOT / "config" / "cluster-small.json"))
    feed = tmp_path / "feed"
    holding.write_feed(str(feed), snap, 7)
    read = holding.Read(0, os.open(feed, os.O_RDONLY), 7, 0)
    while not read.feed():
        pass
    got, error, token = read.outcome("exited")
    assert (got.version, error, token) == (7, None, None)
    assert got.hosts == snap.hosts and got.vms == snap.vms


def _snap(version, read_at, load):
    snap = holding.load_file(str(ROOT / "config" / "cluster-small.json"))
    hosts = {h: dataclasses.replace(host, cpu_usage=load) for h, host in snap.hosts.items()}
    return dataclasses.replace(snap, version=version, read_at=read_at, hosts=hosts)


def test_the_history_ring_holds_earlier_snapshots_only_bounded_by_count_and_age(monkeypatch):
    monkeypatch.setattr(holding._History, "readings", collections.deque())
    monkeypatch.setattr(holding._History, "current", None)
    monkeypatch.setattr(holding, "HISTORY_MAX", 3)
    for v in range(1, 6):  # a reading a minute
        holding._remember(_snap(v, 1000.0 + 60 * v, float(v)))
    assert [r.version for r in balancing.load_history()] == [2, 3, 4]  # oldest first; 5 is current
    reading = balancing.load_history()[-1]
    assert set(reading.cpu_usage.values()) == {4.0} and len(reading.free_memory) == 4
    holding._remember(_snap(5, 1000.0 + 60 * 5, 5.0))  # the same version again adds nothing
    assert [r.version for r in balancing.load_history()] == [2, 3, 4]
    holding._remember(_snap(6, 1000.0 + 60 * 5 + holding.HISTORY_SECONDS - 1, 6.0))
    assert [r.version for r in balancing.load_history()] == [5]  # older than HISTORY_SECONDS: gone
    balancing.bind(history=())
