"""The snapshot model: immutable records, built from a snapshot document, indexed per host."""
import dataclasses

import pytest
from hypothesis import given, settings, strategies as st

from proxy import state
from proxy.sim.generate import generate_snapshot
from proxy.snapshot import load_snapshot
from tests.support import ROOT

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def small():
    return state.from_document(load_snapshot(ROOT / "config" / "cluster-small.json"), version=3, source="t")


def test_a_document_becomes_typed_records_in_bytes(small):
    host1 = next(h for h in small.hosts.values() if h.name == "host1")
    assert (host1.free_memory, host1.max_scheduling_memory, host1.cpu_usage) == (400 * MIB, 512 * MIB, 72.0)
    assert host1.active_vms == 4 and host1.status == "up"
    assert small.version == 3 and small.source == "t"
    assert all(isinstance(v, state.Vm) for v in small.vms.values())


def test_records_cannot_be_changed(small):
    host = next(iter(small.hosts.values()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        host.free_memory = 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        small.version = 4


def test_vms_on_a_host_come_from_the_index(small):
    host1 = next(h for h in small.hosts.values() if h.name == "host1")
    assert sorted(v.name for v in small.vms_on(host1.id)) == ["app1", "db1", "tiny1", "web1"]
    assert small.vms_on("no-such-host") == ()


@settings(max_examples=25, deadline=None)
@given(hosts=st.integers(1, 30), vms=st.integers(0, 200), seed=st.integers(0, 1000))
def test_the_per_host_index_holds_every_placed_vm_once(hosts, vms, seed):
    snap = state.from_document(generate_snapshot(hosts, vms, seed=seed), version=1, source="t")
    indexed = [v.id for h in snap.hosts for v in snap.vms_on(h)]
    assert sorted(indexed) == sorted(v.id for v in snap.vms.values() if v.host_id is not None)
    assert all(h.active_vms == sum(v.status == "up" for v in snap.vms_on(h.id)) for h in snap.hosts.values())


def test_affinity_groups_and_labels_become_records():
    doc = load_snapshot(ROOT / "config" / "cluster-small.json")
    vms = [v["id"] for v in doc["vms"][:2]]
    doc["affinity_groups"] = [{"id": "f0000000-0000-4000-8000-000000000001", "name": "apart",
                               "cluster": doc["clusters"][0]["id"], "vms": vms,
                               "vms_rule": {"enabled": True, "positive": False, "enforcing": True}}]
    doc["affinity_labels"] = [{"id": "f1000000-0000-4000-8000-000000000001", "name": "gpu", "vms": vms[:1],
                               "hosts": []}]
    snap = state.from_document(doc, version=1, source="t")
    [group] = snap.affinity_groups
    assert group.vms_rule == state.Rule(enabled=True, positive=False, enforcing=True)
    assert group.hosts_rule == state.Rule() and group.vm_ids == tuple(vms)
    assert snap.groups_of(vms[0]) == (group,) and snap.groups_of("other") == ()
    assert snap.affinity_labels[0].vm_ids == (vms[0],)


def test_to_document_is_the_inverse_of_from_document():
    from proxy import snapshot
    from proxy.holding import load_file
    snap = load_file(ROOT / "config" / "cluster-small.json")
    doc = state.to_document(snap)
    snapshot.validate_snapshot(doc)  # a journaled state is a valid snapshot file again
    assert state.from_document(doc, version=snap.version, source=snap.source, read_at=snap.read_at) == snap
    unknown = dataclasses.replace(snap, hosts={h.id: dataclasses.replace(h, free_memory=None, cpu_usage=None)
                                               for h in snap.hosts.values()})
    back = state.from_document(state.to_document(unknown), version=1, source="x", read_at=snap.read_at)
    assert all(h.free_memory is None and h.cpu_usage is None for h in back.hosts.values())
