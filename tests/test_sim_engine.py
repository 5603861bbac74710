"""proxy.sim.engine: SSO, the API's paths and answers, state changes and failure injection.

Driven by the real ovirtsdk4, and by raw HTTP where the SDK hides details.
"""

import http.client
import socket
import time

import ovirtsdk4 as sdk
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.sim import SimulatedEngine
from proxy.sim.bodies import stat_id
from proxy.sim.generate import generate_snapshot
from proxy.snapshot import SnapshotError
from tests.sim_fixtures import by_name, connection, login, names, raw

MIB = 1024 * 1024


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


# --- paths and follow --------------------------------------------------------------------------

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


def test_missing_ids_and_paths_are_404_with_an_empty_body(sim_engine, small_snapshot):
    with connection(sim_engine) as conn:
        with pytest.raises(sdk.NotFoundError, match="HTTP response code is 404"):
            conn.system_service().vms_service().vm_service("0" * 8 + "-0000-4000-8000-" + "0" * 12).get()
        with pytest.raises(sdk.NotFoundError):
            conn.system_service().hosts_service().host_service("nope").statistics_service().list()
        status, _, body = raw(sim_engine, "GET", "/ovirt-engine/api/datacenters",
                              token=conn.authenticate())
    assert (status, body) == (404, b"")


# --- search and max ----------------------------------------------------------------------------

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


# --- state changes and failure injection -------------------------------------------------------

def test_an_invalid_snapshot_is_refused_before_serving():
    with pytest.raises(SnapshotError, match="at least one cluster"):
        SimulatedEngine({"clusters": [], "hosts": [], "vms": []})


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


# --- affinity and events controls --------------------------------------------------------------

def test_set_affinity_groups_and_labels_validate_and_take_effect(affinity_engine, affinity_snapshot):
    groups, label = affinity_snapshot["affinity_groups"], affinity_snapshot["affinity_labels"][0]
    affinity_engine.set_affinity_groups(groups[:1])
    with connection(affinity_engine) as conn:
        cluster = conn.system_service().clusters_service().list()[0]
        assert [g.name for g in conn.follow_link(cluster.affinity_groups)] == ["web-spread"]
    with pytest.raises(SnapshotError, match=r"affinity_groups\[0\] \(web-spread\): vms_rule: "
                                            r"enforcing: must be true or false"):
        affinity_engine.set_affinity_groups([{**groups[0], "vms_rule": {"enforcing": "yes"}}])
    affinity_engine.set_affinity_groups([{**groups[1], "vm_labels": [label["id"]]}])
    with pytest.raises(SnapshotError, match=r"vm_labels\[0\]: must be the id of an affinity label"):
        affinity_engine.set_affinity_labels([])  # a group still names the label
    assert affinity_engine.snapshot()["affinity_labels"] == [label]
    assert [g["name"] for g in affinity_engine.snapshot()["affinity_groups"]] == ["db-with-app"]


def test_add_event_validates_as_the_snapshot_does(affinity_engine):
    with pytest.raises(SnapshotError, match=r"events\[7\]: vm: must be the id of a VM in the snapshot"):
        affinity_engine.add_event(63, "Migration completed", vm="nope")
    with pytest.raises(SnapshotError, match=r"events\[7\]: time: must be ISO-8601 text with a UTC offset"):
        affinity_engine.add_event(63, "Migration completed", time="yesterday")
    assert len(affinity_engine.snapshot()["events"]) == 7
