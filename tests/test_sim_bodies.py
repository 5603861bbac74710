"""proxy.sim.bodies: the XML documents, read by the real ovirtsdk4 and checked directly."""

import ovirtsdk4 as sdk
import pytest

from proxy.sim import bodies
from tests.sim_fixtures import by_name, connection

MIB = 1024 * 1024
HOST_STATS = ["memory.total", "memory.used", "memory.free", "memory.shared", "swap.total",
              "swap.free", "swap.used", "ksm.cpu.current", "cpu.current.user",
              "cpu.current.system", "cpu.current.idle", "cpu.load.avg.5m", "boot.time"]


def test_hosts_are_served_in_v4_form(sim_engine, small_snapshot):
    with connection(sim_engine) as conn:
        hosts = {h.name: h for h in conn.system_service().hosts_service().list()}
        host1 = hosts["host1"]
        expected = by_name(small_snapshot, "hosts")["host1"]
        assert host1.id == expected["id"] and host1.status == sdk.types.HostStatus.UP
        assert host1.memory == expected["memory_mb"] * MIB
        assert host1.max_scheduling_memory == expected["max_scheduling_memory_mb"] * MIB
        assert (host1.summary.active, host1.summary.total) == (4, 4)
        t = host1.cpu.topology
        assert t.sockets * t.cores == expected["cpu_cores"]
        assert t.sockets * t.cores * t.threads == expected["cpu_threads"]
        assert hosts["host4"].summary.active == 1
        assert len(host1.statistics) == 0 and host1.statistics.href.endswith("/statistics")
        assert conn.follow_link(host1.cluster).name == "Default"


def test_vms_are_served_in_v4_form(sim_engine, small_snapshot):
    with connection(sim_engine) as conn:
        vms = {v.name: v for v in conn.system_service().vms_service().list()}
        hosts = by_name(small_snapshot, "hosts")
        db1 = vms["db1"]
        assert db1.status == sdk.types.VmStatus.UP and db1.host.id == hosts["host1"]["id"]
        assert (db1.memory, db1.memory_policy.guaranteed) == (8192 * MIB, 4096 * MIB)
        assert db1.os.type == "rhel_9x64" and db1.cpu.topology.sockets == 4
        assert vms["old1"].status == sdk.types.VmStatus.DOWN and vms["old1"].host is None
        assert conn.follow_link(db1.host).name == "host1"


def test_follow_statistics_inlines_the_13_host_statistics(sim_engine, small_snapshot):
    with connection(sim_engine) as conn:
        hosts = {h.name: h for h in conn.system_service().hosts_service().list(follow="statistics")}
    stats = {s.name: s for s in hosts["host1"].statistics}
    assert list(stats) == HOST_STATS
    free = stats["memory.free"]
    assert free.values[0].datum == 400 * MIB
    assert (free.kind, free.type, free.unit) == (sdk.types.StatisticKind.GAUGE,
                                                 sdk.types.ValueType.INTEGER, sdk.types.StatisticUnit.BYTES)
    assert stats["memory.used"].values[0].datum == (16384 - 400) * MIB
    assert stats["cpu.current.idle"].values[0].datum == 28.0  # cpu_load 72
    assert stats["memory.total"].id == "7816602b-c05c-3db7-a4da-3769f7ad8896"  # docs/ENGINE_API.md §3.4
    assert stats["memory.free"].host.id == hosts["host1"].id


def test_unknown_free_memory_serves_no_memory_used_or_free(sim_engine, small_snapshot):
    host = by_name(small_snapshot, "hosts")["host2"]
    sim_engine.update_host(host["id"], free_memory_mb=None)
    with connection(sim_engine) as conn:
        stats = conn.system_service().hosts_service().host_service(host["id"]) \
            .statistics_service().list()
    assert [s.name for s in stats] == [n for n in HOST_STATS if n not in ("memory.used", "memory.free")]


def test_clusters_and_api_root(sim_engine, small_snapshot):
    with connection(sim_engine) as conn:
        clusters = conn.system_service().clusters_service().list()
        assert [c.name for c in clusters] == ["Default"]
        assert clusters[0].memory_policy.over_commit.percent == 100
        assert conn.system_service().get().product_info.version.major == 4
    assert all(f'rel="{rel}"' in bodies.api_root() for rel in ("affinitylabels", "events", "hosts"))
    assert clusters[0].affinity_groups.href.endswith(f"/clusters/{clusters[0].id}/affinitygroups")


def test_stat_id_is_javas_name_based_uuid():
    # Java's UUID.nameUUIDFromBytes("memory.total".getBytes()) (docs/ENGINE_API.md §3.4)
    assert bodies.stat_id("memory.total") == "7816602b-c05c-3db7-a4da-3769f7ad8896"
    assert bodies.stat_id("cpu.current.total") != bodies.stat_id("cpu.current.user")


@pytest.mark.parametrize("value,text", [(55, "55"), (57.6, "58"), (100, "100"), (0.125, "0.13"),
                                        (0, "0.0"), (1.25, "1.3")])
def test_decimals_keep_two_significant_digits_rounded_half_up(value, text):
    assert bodies.decimal(value) == text


def test_fault_escapes_its_text():
    assert bodies.fault("a < b & c") == ("<fault><detail>a &lt; b &amp; c</detail>"
                                         "<reason>Operation Failed</reason></fault>")


def test_statistic_named_finds_one_by_id_or_none(small_snapshot):
    host = small_snapshot["hosts"][0]
    values = bodies.host_stat_values(host)
    one = bodies.statistic_named("host", host["id"], values, bodies.stat_id("memory.free"))
    assert one.count("<statistic ") == 1 and "<name>memory.free</name>" in one
    assert bodies.statistic_named("host", host["id"], values, "nope") is None
