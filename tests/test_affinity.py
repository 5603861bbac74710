"""proxy/affinity.py: the engine's enforcing affinity rules over hand-built snapshots."""

import pytest
from hypothesis import given, settings, strategies as st

from proxy import affinity, state, whatif
from proxy.sim.generate import generate_snapshot

ON, OFF = state.Rule(True, True, True), state.Rule()


def rule(positive=True, enforcing=True, enabled=True):
    return state.Rule(enabled, positive, enforcing)


def snapshot(placement, groups=(), labels=(), hosts=("h1", "h2", "h3", "h4")):
    """A snapshot with the given hosts and {vm id: host id or None}."""
    host_records = [state.Host(h, h, "up", "c", 16 << 30, 8 << 30, 8 << 30, 10.0, 8, 16, 0) for h in hosts]
    vms = [state.Vm(v, v, "up" if h else "down", h, 1 << 30, 1 << 30, "rhel_8x64", 5.0, 1, "c")
           for v, h in placement.items()]
    return state.Snapshot(1, 0.0, 0.0, "test", {}, state.index(host_records), state.index(vms),
                          tuple(groups), tuple(labels))


def group(name, vms=(), hosts=(), *, vms_rule=OFF, hosts_rule=OFF, vm_labels=(), host_labels=()):
    return state.AffinityGroup(name, name, "c", vms_rule, hosts_rule, vm_ids=tuple(vms),
                               host_ids=tuple(hosts), vm_label_ids=tuple(vm_labels),
                               host_label_ids=tuple(host_labels))


def targets(snap, vm_id):
    vm = snap.vms[vm_id]
    return [h.id for h in affinity.allowed_targets(snap, vm, list(snap.hosts.values()))]


# --- VM→host --------------------------------------------------------------------------------

def test_vm_to_host_positive_keeps_the_vm_on_the_groups_hosts():
    snap = snapshot({"a": "h1"}, [group("lic", ["a"], ["h2", "h3"], hosts_rule=rule())])
    assert targets(snap, "a") == ["h2", "h3"]
    assert affinity.violations(snap, "a", "h4") == ["lic"]
    assert affinity.fixes(snap, snap.vms["a"], "h2") == ["lic"]  # it runs outside them now


def test_vm_to_host_negative_keeps_the_vm_off_the_groups_hosts():
    snap = snapshot({"a": "h1"}, [group("not-here", ["a"], ["h1", "h2"], hosts_rule=rule(False))])
    assert targets(snap, "a") == ["h3", "h4"]
    assert affinity.fixes(snap, snap.vms["a"], "h3") == ["not-here"]
    assert affinity.fixes(snap, snap.vms["a"], "h2") == []


def test_labels_add_their_hosts_and_vms_to_a_group():
    labels = [state.AffinityLabel("ssd", "ssd", vm_ids=("b",), host_ids=("h4",)),
              state.AffinityLabel("apps", "apps", vm_ids=("a",))]
    g = group("on-ssd", ["x"], ["h3"], hosts_rule=rule(), vm_labels=["apps"], host_labels=["ssd"])
    snap = snapshot({"a": "h1", "b": "h1", "x": "h3"}, [g], labels)
    assert targets(snap, "a") == ["h3", "h4"]  # a through its label, h4 through the host label
    assert targets(snap, "b") == ["h1", "h2", "h3", "h4"]  # b's label is not named as a VM label


def test_a_positive_host_rule_without_hosts_limits_nothing():
    snap = snapshot({"a": "h1"}, [group("empty", ["a"], [], hosts_rule=rule())])
    assert targets(snap, "a") == ["h1", "h2", "h3", "h4"]


# --- VM↔VM ----------------------------------------------------------------------------------

def test_vm_to_vm_positive_members_together_cannot_leave_alone():
    snap = snapshot({"a": "h1", "b": "h1", "c": None}, [group("pair", ["a", "b", "c"], vms_rule=rule())])
    assert targets(snap, "a") == ["h1"]
    assert affinity.violations(snap, "a", "h2") == ["pair"]
    assert targets(snap, "c") == ["h1"]  # a VM being started joins its running members


def test_vm_to_vm_positive_split_members_may_join_and_joining_mends():
    snap = snapshot({"a": "h1", "b": "h2", "c": "h2"}, [group("trio", ["a", "b", "c"], vms_rule=rule())])
    a = snap.vms["a"]
    assert targets(snap, "a") == ["h2"]
    assert affinity.fixes(snap, a, "h2") == ["trio"]
    assert targets(snap, "b") == ["h1", "h2"]  # c still runs on h2: b may join a too
    assert affinity.fixes(snap, snap.vms["b"], "h1") == []  # that does not gather them


def test_vm_to_vm_positive_alone_limits_nothing():
    snap = snapshot({"a": "h1", "b": None}, [group("pair", ["a", "b"], vms_rule=rule())])
    assert targets(snap, "a") == ["h1", "h2", "h3", "h4"]


def test_vm_to_vm_negative_never_shares_a_host_and_splitting_mends():
    snap = snapshot({"a": "h1", "b": "h1", "c": "h3"}, [group("spread", ["a", "b", "c"], vms_rule=rule(False))])
    assert targets(snap, "a") == ["h2", "h4"]
    assert affinity.violations(snap, "a", "h3") == ["spread"]
    assert affinity.fixes(snap, snap.vms["a"], "h2") == ["spread"]


def test_vm_labels_make_vm_to_vm_members_too():
    labels = [state.AffinityLabel("web", "web", vm_ids=("a", "b"))]
    snap = snapshot({"a": "h1", "b": "h2"}, [group("web-spread", vm_labels=["web"], vms_rule=rule(False))],
                    labels)
    assert targets(snap, "a") == ["h1", "h3", "h4"]


@pytest.mark.parametrize("soft", [rule(enforcing=False), rule(enabled=False), rule(False, enforcing=False)])
def test_rules_that_do_not_enforce_forbid_nothing(soft):
    snap = snapshot({"a": "h1", "b": "h2"}, [group("soft", ["a", "b"], ["h3"], vms_rule=soft, hosts_rule=soft)])
    assert targets(snap, "a") == ["h1", "h2", "h3", "h4"]
    assert affinity.fixes(snap, snap.vms["a"], "h2") == []


def test_several_groups_each_have_their_say_and_are_all_named():
    groups = [group("lic", ["a"], ["h2", "h3"], hosts_rule=rule()),
              group("apart", ["a", "b"], vms_rule=rule(False))]
    snap = snapshot({"a": "h2", "b": "h3"}, groups)
    assert targets(snap, "a") == ["h2"]
    assert affinity.violations(snap, "a", "h4") == ["lic"]
    assert affinity.violations(snap, "a", "h3") == ["apart"]
    assert affinity.violations(snap, "unknown", "h3") == []
    assert affinity.rule_text(snap, snap.vms["a"], "h3") == "breaks enforcing affinity group(s) apart"


# --- the index ------------------------------------------------------------------------------

def test_the_index_is_built_once_per_snapshot_and_warm_builds_it():
    snap = snapshot({"a": "h1", "b": "h1"}, [group("apart", ["a", "b"], vms_rule=rule(False))])
    assert "_affinity_index" not in snap.__dict__
    snap.warm()
    assert affinity.index(snap) is snap.__dict__["_affinity_index"] is affinity.index(snap)
    moved = whatif.apply_move(snap, "b", "h2")  # a new snapshot sees the new placement
    assert targets(snap, "a") == ["h2", "h3", "h4"]
    assert targets(moved, "a") == ["h1", "h3", "h4"]
    assert snap == snapshot({"a": "h1", "b": "h1"}, snap.affinity_groups)  # not a field


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**16), st.integers(0, 12))
def test_generated_clusters_keep_their_groups_unbroken_and_an_allowed_move_breaks_none(seed, groups):
    doc = generate_snapshot(8, 40, seed=seed, affinity_groups=groups)
    snap = state.from_document(doc, version=1, source="gen")
    hosts = [h for h in snap.hosts.values() if h.status == "up"]
    for vm in snap.vms.values():
        if vm.host_id is None:
            continue
        assert affinity.allowed(snap, vm, vm.host_id)  # the generator places them unbroken
        for h in affinity.allowed_targets(snap, vm, hosts):
            moved = whatif.apply_move(snap, vm.id, h.id)
            assert all(affinity.allowed(moved, other, other.host_id)
                       for other in moved.vms.values() if other.host_id is not None
                       and affinity.index(moved).rules(other.id))
