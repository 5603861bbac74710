"""Bulk readers: the fast XML readers give exactly what the SDK's readers give, and one full
read of the engine's state is a handful of requests."""
import dataclasses

import pytest

from proxy import engine, readers, sdk_internals, state
from proxy.sim import SimulatedEngine
from proxy.sim.generate import generate_snapshot


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_fast_host_reader_gives_exactly_what_the_sdk_readers_give(seed):
    snapshot = generate_snapshot(40, 300, seed=seed, pressure_hosts=3)
    snapshot["hosts"][0]["free_memory_mb"] = None  # unknown free memory: no memory statistics
    snapshot["hosts"][1]["status"] = "maintenance"
    with SimulatedEngine(snapshot) as sim:
        engine.bind(engine.EngineSettings(url=sim.url, user=sim.user, password=sim.password))
        try:
            with engine.connect() as conn:
                fast = engine.hosts(conn)
                via_sdk = {h.id: _host_via_sdk_readers(h)
                           for h in conn.system_service().hosts_service().list(follow="statistics")}
        finally:
            engine.bind(None)
    assert fast == via_sdk
    assert fast[snapshot["hosts"][0]["id"]].free_memory is None
    assert fast[snapshot["hosts"][1]["id"]].status == "maintenance"


@pytest.mark.parametrize("seed", [1, 2])
def test_the_fast_vm_reader_gives_what_the_sdk_readers_give(seed):
    snapshot = generate_snapshot(10, 120, seed=seed)
    with SimulatedEngine(snapshot) as sim:
        engine.bind(engine.EngineSettings(url=sim.url, user=sim.user, password=sim.password))
        try:
            with engine.connect() as conn:
                fast = {v.id: v for v in sdk_internals.RawList(
                    conn, "/vms", {"follow": "statistics"}, readers.vms_from_xml).list()}
                via_sdk = {v.id: readers.vm_record(v)
                           for v in conn.system_service().vms_service().list(follow="statistics")}
        finally:
            engine.bind(None)
    # the SDK path does not compute memory usage; everything else must be equal
    assert {i: dataclasses.replace(v, memory_usage=None) for i, v in fast.items()} == via_sdk
    by_id = {v["id"]: v for v in snapshot["vms"]}
    assert all(v.memory_usage == pytest.approx(by_id[i]["memory_usage"], abs=0.01) for i, v in fast.items())


def test_one_full_read_is_a_handful_of_requests_and_matches_the_file(sim_engine, small_snapshot):
    engine.bind(engine.EngineSettings(url=sim_engine.url, user=sim_engine.user, password=sim_engine.password))
    try:
        sim_engine.reset_counters()
        with engine.connect() as conn:
            snap = readers.read_snapshot(conn, version=7, source=sim_engine.url)
    finally:
        engine.bind(None)
    clusters = len(small_snapshot["clusters"])
    assert sim_engine.api_requests == 3 + clusters + 1  # hosts, VMs, clusters, groups per cluster, labels
    from_file = state.from_document(small_snapshot, version=7, source="file", read_at=snap.read_at)
    assert snap.version == 7 and snap.hosts == from_file.hosts and snap.clusters == from_file.clusters
    assert snap.vms.keys() == from_file.vms.keys()
    for vm_id, vm in snap.vms.items():
        expected = from_file.vms[vm_id]
        assert dataclasses.replace(vm, cpu_usage=None, memory_usage=None) == \
            dataclasses.replace(expected, cpu_usage=None, memory_usage=None)
        assert vm.cpu_usage == pytest.approx(expected.cpu_usage, abs=0.01)


def _host_via_sdk_readers(h):
    """The reference for engine.hosts' fast reader: a Host from the SDK's own Host object."""
    return readers.host_record(id=h.id, name=h.name, status=h.status,
                               cluster_id=h.cluster.id if h.cluster is not None else None,
                               memory=h.memory, max_scheduling_memory=h.max_scheduling_memory,
                               active_vms=h.summary.active if h.summary is not None else None,
                               stats=readers.stats_of(h), cpu=h.cpu)


def test_a_statistic_without_a_value_does_not_shift_the_others():
    body = (b"<vms><vm id='v1'><name>a</name><status>up</status><statistics>"
            b"<statistic id='s1'><name>migration.progress</name><values/></statistic>"
            b"<statistic id='s2'><name>cpu.current.total</name><values><value><datum>12</datum>"
            b"</value></values></statistic>"
            b"<statistic id='s3'>\n  <name> memory.installed </name>\n  <values><value><datum> 100 </datum>"
            b"</value><value><datum>7</datum></value></values></statistic>"
            b"</statistics></vm></vms>")
    [vm] = readers.vms_from_xml(body)
    assert vm.cpu_usage == 12.0 and vm.name == "a"
