"""proxy.sim.affinity: affinity groups and labels as the real ovirtsdk4 reads them."""

import ovirtsdk4 as sdk
import pytest

from proxy.sim import SimulatedEngine, affinity
from proxy.sim.generate import generate_snapshot
from tests.sim_fixtures import by_name, connection, raw

CLUSTER = "c0000000-0000-4000-8000-000000000001"


def _groups_service(conn):
    return conn.system_service().clusters_service().cluster_service(CLUSTER).affinity_groups_service()


def _rule(rule):
    return {"enabled": rule.enabled, "positive": rule.positive, "enforcing": rule.enforcing}


def test_one_list_request_gives_every_group_with_its_rules_and_member_ids(affinity_engine, affinity_snapshot):
    with connection(affinity_engine) as conn:
        affinity_engine.reset_counters()
        served = {g.id: g for g in _groups_service(conn).list()}
    assert affinity_engine.api_requests == 1
    assert len(served) == len(affinity_snapshot["affinity_groups"])
    for expected in affinity_snapshot["affinity_groups"]:
        g = served[expected["id"]]
        assert (g.name, g.cluster.id, g.priority) == (expected["name"], CLUSTER, expected["priority"])
        assert _rule(g.vms_rule) == expected["vms_rule"]
        assert _rule(g.hosts_rule) == expected["hosts_rule"]
        assert [v.id for v in g.vms] == expected["vms"] and [h.id for h in g.hosts] == expected["hosts"]
        assert [x.id for x in g.vm_labels] == expected["vm_labels"] == []
        # The legacy fields are the VM rule's; positive is absent when that rule is off.
        assert g.enforcing == expected["vms_rule"]["enforcing"]
        assert g.positive == (expected["vms_rule"]["positive"] if expected["vms_rule"]["enabled"] else None)
        assert g.vms.href.endswith(f"/affinitygroups/{g.id}/vms")
        assert g.hosts.href.endswith(f"/affinitygroups/{g.id}/hosts")


def test_follow_vms_hosts_inlines_members_with_names(affinity_engine):
    with connection(affinity_engine) as conn:
        groups = {g.name: g for g in _groups_service(conn).list(follow="vms,hosts")}
        plain = {g.name: g for g in _groups_service(conn).list()}
        linked = conn.follow_link(plain["web-spread"].vms)
    assert [v.name for v in groups["web-spread"].vms] == ["web1", "web2", "web3"]
    assert [h.name for h in groups["licensed-hosts"].hosts] == ["host4", "host5"]
    assert plain["web-spread"].vms[0].name is None  # ids only without follow
    assert [v.name for v in linked] == ["web1", "web2", "web3"]


def test_one_group_and_its_member_sub_collections(affinity_engine, affinity_snapshot):
    group = by_name(affinity_snapshot, "affinity_groups")["licensed-hosts"]
    labelled = {**group, "name": "ssd-prefer", "id": "d0000000-0000-4000-8000-000000000009",
                "vm_labels": [affinity_snapshot["affinity_labels"][0]["id"]]}
    affinity_engine.set_affinity_groups([*affinity_snapshot["affinity_groups"], labelled])
    with connection(affinity_engine) as conn:
        service = _groups_service(conn).group_service(group["id"])
        one = service.get()
        hosts = service.hosts_service().list()
        vms = service.vms_service().list()
        labels = _groups_service(conn).group_service(labelled["id"]).vm_labels_service().list()
    assert one.name == "licensed-hosts" and _rule(one.hosts_rule) == group["hosts_rule"]
    assert [h.name for h in hosts] == ["host4", "host5"] and [v.name for v in vms] == ["lic1", "lic2"]
    assert [x.name for x in labels] == ["ssd"]


def test_broken_follows_the_current_placement(affinity_engine, affinity_snapshot):
    hosts, vms = by_name(affinity_snapshot, "hosts"), by_name(affinity_snapshot, "vms")
    with connection(affinity_engine) as conn:
        before = {g.name: g.broken for g in _groups_service(conn).list()}
        affinity_engine.move_vm(vms["cache2"]["id"], hosts["host2"]["id"])
        affinity_engine.move_vm(vms["web2"]["id"], hosts["host1"]["id"])
        affinity_engine.move_vm(vms["lic1"]["id"], hosts["host3"]["id"])
        after = {g.name: g.broken for g in _groups_service(conn).list()}
    assert before == {"web-spread": False, "db-with-app": False, "licensed-hosts": False,
                      "cache-together": True}  # soft rules may be broken: cache1, cache2 apart
    assert after == {"web-spread": True, "db-with-app": False, "licensed-hosts": True,
                     "cache-together": False}


def _group(vms_rule=None, hosts_rule=None, **members):
    off = {"enabled": False, "positive": False, "enforcing": False}
    return {"vms_rule": vms_rule or off, "hosts_rule": hosts_rule or off, "vms": [], "hosts": [],
            "vm_labels": [], "host_labels": [], **members}


@pytest.mark.parametrize("group,expected", [
    (_group(hosts_rule={"enabled": True, "positive": False, "enforcing": True}, vms=["v1"], hosts=["h1"]), True),
    (_group(hosts_rule={"enabled": True, "positive": False, "enforcing": True}, vms=["v1"], hosts=["h2"]), False),
    (_group(hosts_rule={"enabled": True, "positive": True, "enforcing": False}, vm_labels=["l"], hosts=["h1"]), True),
    (_group(hosts_rule={"enabled": True, "positive": True, "enforcing": False}, vm_labels=["l"], host_labels=["l"]), False),
    (_group(vms_rule={"enabled": True, "positive": False, "enforcing": True}, vms=["v1", "v2", "v4"]), False),
    (_group(vms_rule={"enabled": True, "positive": False, "enforcing": True}, vm_labels=["l"], vms=["v3"]), True),
    (_group(vms_rule={"enabled": True, "positive": True, "enforcing": True}, vms=["v2", "v3", "v4"]), False),
    (_group(vms_rule={"enabled": True, "positive": True, "enforcing": False}, vms=["v1"], vm_labels=["l"]), True),
    (_group(vms=["v1", "v2"], hosts=["h1"]), False),  # both rules off: never broken
])
def test_broken_expands_labels_and_ignores_vms_that_do_not_run(group, expected):
    vms = {"v1": {"host": "h1"}, "v2": {"host": "h2"}, "v3": {"host": "h2"}, "v4": {"host": None}}
    labels = {"l": {"vms": ["v2", "v4"], "hosts": ["h2"]}}
    assert affinity.broken(group, vms, labels) is expected


def test_labels_carry_members_only_when_followed(affinity_engine, affinity_snapshot):
    label = affinity_snapshot["affinity_labels"][0]
    with connection(affinity_engine) as conn:
        service = conn.system_service().affinity_labels_service()
        plain = service.list()[0]
        followed = service.list(follow="vms,hosts")[0]
        one = service.label_service(label["id"])
        sub_vms, sub_hosts = one.vms_service().list(), one.hosts_service().list()
        assert one.get().name == "ssd"
    assert (plain.name, len(plain.vms), len(plain.hosts)) == ("ssd", 0, 0)
    assert plain.vms.href.endswith(f"/affinitylabels/{label['id']}/vms")
    assert [v.id for v in followed.vms] == label["vms"] and [h.id for h in followed.hosts] == label["hosts"]
    assert [v.id for v in sub_vms] == label["vms"] and [h.id for h in sub_hosts] == label["hosts"]
    assert followed.read_only is False and followed.has_implicit_affinity_group is False


@pytest.mark.parametrize("path", [
    f"clusters/{'c' * 8}-0000-4000-8000-000000000009/affinitygroups",
    f"clusters/{CLUSTER}/affinitygroups/nope", f"clusters/{CLUSTER}/affinitygroups/"
    "d0000000-0000-4000-8000-000000000001/disks", "affinitylabels/nope",
    "affinitylabels/e0000000-0000-4000-8000-000000000001/templates",
])
def test_unknown_paths_are_404_with_an_empty_body(affinity_engine, path):
    with connection(affinity_engine) as conn:
        status, _, body = raw(affinity_engine, "GET", f"/ovirt-engine/api/{path}", token=conn.authenticate())
    assert (status, body) == (404, b"")


def test_max_and_unsupported_follow(affinity_engine):
    with connection(affinity_engine) as conn:
        assert [g.name for g in _groups_service(conn).list(max=2)] == ["web-spread", "db-with-app"]
        with pytest.raises(sdk.Error) as caught:
            _groups_service(conn).list(follow="statistics")
    assert caught.value.code == 400 and "follow=statistics is not supported" in caught.value.fault.detail


@pytest.mark.parametrize("priority,text", [(1.0, "1"), (2.5, "2.5"), (0, "0"), (0.1234567, "0.1234567"),
                                           (100, "100")])
def test_priority_is_written_as_the_engine_divides_it(priority, text):
    assert affinity.priority_text(priority) == text


def test_generated_groups_are_served_and_none_is_broken():
    snapshot = generate_snapshot(10, 80, seed=4, clusters=2, affinity_groups=8)
    with SimulatedEngine(snapshot) as sim, connection(sim) as conn:
        clusters = conn.system_service().clusters_service()
        served = [g for c in snapshot["clusters"]
                  for g in clusters.cluster_service(c["id"]).affinity_groups_service().list()]
    assert sorted(g.id for g in served) == sorted(g["id"] for g in snapshot["affinity_groups"])
    assert not any(g.broken for g in served)
