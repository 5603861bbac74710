"""The simulated engine, driven by the real ovirtsdk4 (and raw HTTP where the SDK hides details)."""

import copy
import http.client
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import ovirtsdk4 as sdk
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy import simsearch
from proxy.simengine import SimulatedEngine
from proxy.simsnapshot import SnapshotError, generate_snapshot, load_snapshot, validate_snapshot
from proxy.simxml import stat_id

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
HOST_STATS = ["memory.total", "memory.used", "memory.free", "memory.shared", "swap.total",
              "swap.free", "swap.used", "ksm.cpu.current", "cpu.current.user",
              "cpu.current.system", "cpu.current.idle", "cpu.load.avg.5m", "boot.time"]


def connection(sim, **kwargs):
    return sdk.Connection(**{"url": sim.url, "username": sim.user, "password": sim.password,
                             **kwargs})


def names(entities):
    return sorted(e.name for e in entities)


def by_name(snapshot, kind):
    return {e["name"]: e for e in snapshot[kind]}


def raw(sim, method, path, *, token=None, body=None, headers=None):
    """(status, headers, body) of one plain HTTP request."""
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
    headers = dict(headers or {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, r.headers, data


def login(sim, password=None):
    status, headers, body = raw(
        sim, "POST", "/ovirt-engine/sso/oauth/token",
        body=f"grant_type=password&scope=ovirt-app-api&username=admin%40internal"
             f"&password={password or sim.password}",
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    return status, headers, json.loads(body)


# --- SSO ---------------------------------------------------------------------------------------

def test_sdk_logs_in_lazily_and_lists(sim_engine):
    conn = connection(sim_engine)
    assert sim_engine.logins == 0  # nothing is sent before the first request
    assert conn.test()
    assert names(conn.system_service().hosts_service().list()) == ["host1", "host2", "host3", "host4"]
    conn.close()
    assert (sim_engine.logins, sim_engine.api_requests, sim_engine.logouts) == (1, 2, 1)


def test_token_reply_is_json_with_the_oauth_fields(sim_engine):
    status, headers, reply = login(sim_engine)
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert set(reply) == {"access_token", "scope", "exp", "token_type"}
    assert reply["token_type"] == "bearer" and reply["access_token"] in sim_engine.tokens


def test_bad_password_is_an_access_denied_error(sim_engine):
    status, _, reply = login(sim_engine, password="wrong")
    assert status == 400 and reply["error_code"] == "access_denied"
    assert "Cannot authenticate user 'admin@internal'" in reply["error"]
    with pytest.raises(sdk.AuthError, match="access_denied"):
        connection(sim_engine, password="wrong").test(raise_exception=True)
    assert sim_engine.failed_logins == 2 and sim_engine.logins == 0


def test_logout_revokes_the_token(sim_engine):
    conn = connection(sim_engine)
    token = conn.authenticate()
    conn.close()
    assert sim_engine.logouts == 1 and token not in sim_engine.tokens
    assert raw(sim_engine, "GET", "/ovirt-engine/api/hosts", token=token)[0] == 401


def test_unknown_token_gets_401_with_an_empty_body(sim_engine):
    status, _, body = raw(sim_engine, "GET", "/ovirt-engine/api/hosts", token="nope")
    assert (status, body) == (401, b"")
    assert raw(sim_engine, "GET", "/ovirt-engine/api/hosts")[0] == 401  # no header at all


def test_sdk_renews_a_revoked_token_once_and_retries(sim_engine):
    conn = connection(sim_engine)
    first = conn.authenticate()
    sim_engine.revoke_tokens()
    assert len(conn.system_service().hosts_service().list()) == 4
    assert sim_engine.logins == 2 and conn.authenticate() != first
    assert [r.status for r in sim_engine.requests] == [401, 200]
    conn.close(logout=False)


# --- documents ---------------------------------------------------------------------------------

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
    assert stats["memory.total"].id == "7816602b-c05c-3db7-a4da-3769f7ad8896"  # ENGINE_API §3.4
    assert stats["memory.free"].host.id == hosts["host1"].id


def test_unknown_free_memory_serves_no_memory_used_or_free(sim_engine, small_snapshot):
    host = by_name(small_snapshot, "hosts")["host2"]
    sim_engine.update_host(host["id"], free_memory_mb=None)
    with connection(sim_engine) as conn:
        stats = conn.system_service().hosts_service().host_service(host["id"]) \
            .statistics_service().list()
    assert [s.name for s in stats] == [n for n in HOST_STATS if n not in ("memory.used", "memory.free")]


def test_vm_statistics_and_one_statistic_by_id(sim_engine, small_snapshot):
    vm = by_name(small_snapshot, "vms")["db1"]
    with connection(sim_engine) as conn:
        service = conn.system_service().vms_service().vm_service(vm["id"]).statistics_service()
        stats = {s.name: s.values[0].datum for s in service.list()}
        one = service.statistic_service(stat_id("cpu.current.total")).get()
    assert stats["memory.installed"] == 8192 * MIB
    assert stats["cpu.current.total"] == 55.0 and one.values[0].datum == 55.0
    assert {"memory.used", "cpu.current.guest", "cpu.current.hypervisor"} <= set(stats)


def test_follow_statistics_on_vms(sim_engine):
    with connection(sim_engine) as conn:
        vms = conn.system_service().vms_service().list(follow="statistics", search="name=tiny1")
    assert [s.name for s in vms[0].statistics][:2] == ["memory.installed", "memory.used"]


def test_clusters_and_api_root(sim_engine, small_snapshot):
    with connection(sim_engine) as conn:
        clusters = conn.system_service().clusters_service().list()
        assert [c.name for c in clusters] == ["Default"]
        assert clusters[0].memory_policy.over_commit.percent == 100
        assert conn.system_service().get().product_info.version.major == 4


def test_content_types(sim_engine):
    _, _, reply = login(sim_engine)
    status, headers, body = raw(sim_engine, "GET", "/ovirt-engine/api/hosts",
                                token=reply["access_token"])
    assert status == 200 and headers["Content-Type"].startswith("application/xml")
    assert body.startswith(b"<hosts>")


# --- search, max, paths ------------------------------------------------------------------------

SEARCHES = [
    ("vms", "host=host1", ["app1", "db1", "tiny1", "web1"]),
    ("vms", "host=HOST1", ["app1", "db1", "tiny1", "web1"]),  # case-insensitive by default
    ("vms", "status=down", ["old1", "test1"]),
    ("vms", "name=web*", ["web1", "web2"]),
    ("vms", "name=web* and host=host2 or name=tiny1", ["tiny1", "web2"]),  # AND binds tighter
    ("vms", "host=host1 os=rhel_9x64", ["db1", "web1"]),  # side by side: AND
    ("vms", "host!=host1", ["build3", "cache4", "web2", "win2"]),  # down VMs never match
    ("vms", "memory>=8192", ["db1"]),
    ("vms", "host=host9", []),
    ("hosts", "cluster=default", ["host1", "host2", "host3", "host4"]),
    ("hosts", "status=up and name=host1", ["host1"]),
    ("hosts", "active_vms>1", ["host1", "host2"]),
    ("hosts", "status=maintenance", []),
    ("clusters", "name=Def*", ["Default"]),
]


@pytest.mark.parametrize("collection,search,expected", SEARCHES)
def test_search(sim_engine, collection, search, expected):
    with connection(sim_engine) as conn:
        service = getattr(conn.system_service(), f"{collection}_service")()
        assert names(service.list(search=search)) == expected
    assert sim_engine.requests[-1].query["search"] == search  # '+' decoded as a space


def test_case_sensitive_search_and_max(sim_engine):
    with connection(sim_engine) as conn:
        vms = conn.system_service().vms_service()
        assert vms.list(search="name=WEB1", case_sensitive=True) == []
        assert names(vms.list(search="name=WEB1")) == ["web1"]
        assert len(vms.list(max=3)) == 3
        assert [v.name for v in vms.list(search="status=up sortby name desc", max=2)] == \
            ["win2", "web2"]


@pytest.mark.parametrize("search", ["name=", "id=a or", "or id=a", "colour=red", "memory>lots",
                                    "status=sleeping", "name=a and and name=b", "sortby"])
def test_malformed_search_is_a_400_fault(sim_engine, search):
    with connection(sim_engine) as conn:
        with pytest.raises(sdk.Error) as caught:
            conn.system_service().vms_service().list(search=search)
    assert caught.value.code == 400 and caught.value.fault.detail.startswith("Invalid search")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.integers(0, 3), min_size=1, max_size=6))
def test_id_or_search_returns_exactly_those_hosts(sim_engine, small_snapshot, picks):
    ids = [small_snapshot["hosts"][i]["id"] for i in picks]
    with connection(sim_engine) as conn:
        found = conn.system_service().hosts_service().list(search=" or ".join(f"id={i}" for i in ids))
        conn.close(logout=False)
    assert sorted(h.id for h in found) == sorted(set(ids))


@settings(max_examples=60, deadline=None)
@given(picks=st.lists(st.integers(0, 9), min_size=1, max_size=10), upper=st.booleans())
def test_id_or_search_property_without_http(picks, upper):
    snapshot = load_snapshot(ROOT / "config" / "cluster-small.json")
    vms = snapshot["vms"]
    fields = {"id": simsearch.Field("id", lambda v: v["id"])}
    word = " OR " if upper else " or "
    query = simsearch.parse(word.join(f"id={vms[i]['id']}" for i in picks), fields)
    assert {v["id"] for v in simsearch.apply(query, vms, fields)} == {vms[i]["id"] for i in picks}


def test_missing_ids_and_paths_are_404_with_an_empty_body(sim_engine, small_snapshot):
    with connection(sim_engine) as conn:
        with pytest.raises(sdk.NotFoundError, match="HTTP response code is 404"):
            conn.system_service().vms_service().vm_service("0" * 8 + "-0000-4000-8000-" + "0" * 12).get()
        with pytest.raises(sdk.NotFoundError):
            conn.system_service().hosts_service().host_service("nope").statistics_service().list()
        status, _, body = raw(sim_engine, "GET", "/ovirt-engine/api/datacenters",
                              token=conn.authenticate())
    assert (status, body) == (404, b"")


def test_double_slashes_are_tolerated(sim_engine):
    with sdk.Connection(url=sim_engine.url + "/", username=sim_engine.user,
                        password=sim_engine.password) as conn:
        assert len(conn.system_service().hosts_service().list()) == 4
    assert sim_engine.requests[-1].path == "/ovirt-engine/api/hosts"


# --- state changes and failure injection -------------------------------------------------------

def test_move_vm_is_seen_by_the_next_call(sim_engine, small_snapshot):
    hosts, vms = by_name(small_snapshot, "hosts"), by_name(small_snapshot, "vms")
    with connection(sim_engine) as conn:
        service = conn.system_service().hosts_service()
        service.list(follow="statistics")  # fill the render cache first
        sim_engine.move_vm(vms["tiny1"]["id"], hosts["host3"]["id"])
        after = {h.name: h for h in service.list(follow="statistics")}
        free = {n: next(s.values[0].datum for s in h.statistics if s.name == "memory.free")
                for n, h in after.items()}
        moved = conn.system_service().vms_service().vm_service(vms["tiny1"]["id"]).get()
    assert moved.host.id == hosts["host3"]["id"]
    assert (after["host1"].summary.active, after["host3"].summary.active) == (3, 2)
    assert free["host1"] == (400 + 1024) * MIB and free["host3"] == (51200 - 1024) * MIB


def test_update_vm_and_host(sim_engine, small_snapshot):
    hosts, vms = by_name(small_snapshot, "hosts"), by_name(small_snapshot, "vms")
    sim_engine.update_vm(vms["web1"]["id"], status="down", host=None)
    sim_engine.update_host(hosts["host4"]["id"], status="maintenance")
    with connection(sim_engine) as conn:
        assert "web1" not in names(conn.system_service().vms_service().list(search="host=host1"))
        assert names(conn.system_service().hosts_service().list(search="status=maintenance")) == ["host4"]
    with pytest.raises(SnapshotError, match="host must be null"):
        sim_engine.update_vm(vms["db1"]["id"], status="down")
    with pytest.raises(SnapshotError, match="free_memory_mb"):
        sim_engine.update_host(hosts["host1"]["id"], free_memory_mb=10 ** 9)


def test_fail_next_then_recover(sim_engine):
    sim_engine.fail_next(500, count=2)
    with connection(sim_engine) as conn:
        hosts = conn.system_service().hosts_service()
        for _ in range(2):
            with pytest.raises(sdk.Error, match="HTTP response code is 500") as caught:
                hosts.list()
            assert caught.value.code == 500
        assert len(hosts.list()) == 4
    assert [r.status for r in sim_engine.requests] == [500, 500, 200]


def test_counters_and_request_log_reset(sim_engine):
    with connection(sim_engine) as conn:
        conn.system_service().hosts_service().list(follow="statistics")
    sim_engine.reset_counters()
    assert (sim_engine.api_requests, sim_engine.logins, sim_engine.logouts) == (0, 0, 0)
    assert list(sim_engine.requests) == []


def test_keep_alive_requests_are_not_delayed_by_nagle(sim_engine):
    """Regression: http.server's two send()s plus delayed ACK cost 40 ms per warm request."""
    with connection(sim_engine) as conn:
        hosts = conn.system_service().hosts_service()
        hosts.list()
        start = time.monotonic()
        for _ in range(10):
            hosts.list(follow="statistics")
        assert time.monotonic() - start < 0.3


def test_stop_is_idempotent_and_closes_everything(small_snapshot):
    sim = SimulatedEngine(small_snapshot).start()
    conn = connection(sim)
    assert conn.test()
    sim.stop()
    sim.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", sim.port), timeout=2)
    with pytest.raises(sdk.Error):  # the kept-alive connection was closed too
        conn.system_service().hosts_service().list()
    conn.close(logout=False)


# --- snapshots -----------------------------------------------------------------------------------

def test_shipped_snapshots_load():
    small = load_snapshot(ROOT / "config" / "cluster-small.json")
    assert [c["name"] for c in small["clusters"]] == ["Default"]
    assert [h["name"] for h in small["hosts"] if h["free_memory_mb"] < 500] == ["host1"]
    assert len({v["os_type"] for v in small["vms"]}) >= 2
    assert sum(v["status"] == "down" for v in small["vms"]) == 2
    balanced = load_snapshot(ROOT / "config" / "cluster-balanced.json")
    assert all(h["free_memory_mb"] > 4096 for h in balanced["hosts"])


def _broken(snapshot, kind, index, **changes):
    broken = copy.deepcopy(snapshot)
    broken[kind][index].update(changes)
    for key, value in changes.items():
        if value is KeyError:
            del broken[kind][index][key]
    return broken


@pytest.mark.parametrize("kind,index,changes,message", [
    ("hosts", 1, {"memory_mb": KeyError}, r"hosts\[1\] \(host2\): memory_mb: missing"),
    ("hosts", 0, {"id": "A0000000-0000-4000-8000-000000000001"}, r"hosts\[0\] \(host1\): id: must be a lower-case UUID"),
    ("hosts", 2, {"status": "UP"}, r"hosts\[2\] \(host3\): status: must be one of"),
    ("hosts", 0, {"free_memory_mb": 20000}, r"host1\): free_memory_mb: must be a whole number between 0 and 16384"),
    ("hosts", 0, {"cpu_threads": 12}, r"host1\): cpu_threads: must be a multiple of cpu_cores"),
    ("hosts", 0, {"cpu_load": True}, r"host1\): cpu_load"),
    ("hosts", 3, {"free_memory": 5}, r"hosts\[3\] \(host4\): free_memory: unknown field"),
    ("hosts", 1, {"name": "host1"}, r"hosts\[1\]: name 'host1' is already used by hosts\[0\]"),
    ("hosts", 1, {"cluster": "c0000000-0000-4000-8000-000000000009"}, r"host2\): cluster: must be one of"),
    ("vms", 0, {"host": "a0000000-0000-4000-8000-000000000099"}, r"vms\[0\] \(web1\): host: must be the id of a host"),
    ("vms", 8, {"host": "a0000000-0000-4000-8000-000000000001"}, r"old1\): host: a down VM runs nowhere"),
    ("vms", 0, {"host": None}, r"web1\): host: a VM that is up must name the host"),
    ("vms", 1, {"guaranteed_memory_mb": 9000}, r"db1\): guaranteed_memory_mb"),
    ("vms", 1, {"id": "b0000000-0000-4000-8000-000000000001"}, r"vms\[1\] \(db1\): id b0000000-0000-4000-8000-000000000001 is used twice"),
])
def test_snapshot_errors_name_the_entry_and_field(small_snapshot, kind, index, changes, message):
    with pytest.raises(SnapshotError, match=message):
        SimulatedEngine(_broken(small_snapshot, kind, index, **changes))


def test_snapshot_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"clusters": [}')
    with pytest.raises(SnapshotError, match="bad.json: not valid JSON"):
        load_snapshot(bad)
    with pytest.raises(SnapshotError, match="cannot read"):
        load_snapshot(tmp_path / "missing.json")
    with pytest.raises(SnapshotError, match="at least one cluster"):
        validate_snapshot({"clusters": [], "hosts": [], "vms": []})
    with pytest.raises(SnapshotError, match="unknown top-level key 'host'"):
        validate_snapshot({"clusters": [], "host": []})


# --- generator -----------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(hosts=st.integers(1, 40), vms=st.integers(0, 300), seed=st.integers(0, 2 ** 32),
       clusters=st.integers(1, 3), data=st.data())
def test_generated_snapshots_are_valid_and_deterministic(hosts, vms, seed, clusters, data):
    pressure = data.draw(st.integers(0, hosts))
    made = generate_snapshot(hosts, vms, seed=seed, clusters=clusters, pressure_hosts=pressure)
    assert validate_snapshot(made) == made
    assert generate_snapshot(hosts, vms, seed=seed, clusters=clusters, pressure_hosts=pressure) == made
    assert (len(made["hosts"]), len(made["vms"]), len(made["clusters"])) == (hosts, vms, clusters)
    low = [h for h in made["hosts"] if h["free_memory_mb"] < 500]
    assert len(low) == pressure and all(h["status"] == "up" for h in low)


def test_generator_gives_pressure_hosts_something_to_move():
    made = generate_snapshot(20, 400, seed=7, pressure_hosts=2)
    assert made != generate_snapshot(20, 400, seed=8, pressure_hosts=2)
    for host in (h for h in made["hosts"] if h["free_memory_mb"] < 500):
        assert sum(v["host"] == host["id"] and v["status"] == "up" for v in made["vms"]) >= 1


def test_a_large_cluster_is_served_fast():
    snapshot = generate_snapshot(1000, 20000, seed=1)
    with SimulatedEngine(snapshot) as sim:
        token = login(sim)[2]["access_token"]
        conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=30)
        for path in ("/ovirt-engine/api/hosts?follow=statistics",
                     "/ovirt-engine/api/vms?search=status%3Dup"):
            start = time.monotonic()  # cold: nothing rendered yet
            conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
            response = conn.getresponse()
            body = response.read()
            assert response.status == 200 and time.monotonic() - start < 1.0, path
        assert body.count(b"<status>up</status>") == sum(v["status"] == "up" for v in snapshot["vms"])
        conn.close()


# --- command line --------------------------------------------------------------------------------

def test_cli_serves_until_sigterm(tmp_path):
    password_file = tmp_path / "pw"
    password_file.write_text("s3cret\n")
    proc = subprocess.Popen([sys.executable, "-m", "proxy.simengine", "--snapshot",
                             str(ROOT / "config" / "cluster-small.json"), "--password-file",
                             str(password_file)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/ovirt-engine/api")
        with sdk.Connection(url=url, username="admin@internal", password="s3cret") as conn:
            assert len(conn.system_service().hosts_service().list()) == 4
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_writes_a_generated_snapshot(tmp_path):
    out = tmp_path / "big.json"
    done = subprocess.run([sys.executable, "-m", "proxy.simengine", "--generate", "12", "150",
                           "--out", str(out), "--seed", "3"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert load_snapshot(out) == generate_snapshot(12, 150, seed=3)
