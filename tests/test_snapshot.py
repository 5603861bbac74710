"""proxy.snapshot: the shipped snapshots, and errors that name the entry and the field."""

import copy

import pytest

from proxy.snapshot import SnapshotError, compact, load_snapshot, validate_snapshot
from tests.support import ROOT


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
        validate_snapshot(_broken(small_snapshot, kind, index, **changes))


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


# --- affinity groups and labels, events ------------------------------------------------------

def test_the_affinity_example_loads_with_defaults_filled_in(affinity_snapshot):
    groups = {g["name"]: g for g in affinity_snapshot["affinity_groups"]}
    assert groups["web-spread"]["vms_rule"] == {"enabled": True, "positive": False, "enforcing": True}
    assert groups["web-spread"]["hosts_rule"] == {"enabled": False, "positive": False, "enforcing": False}
    assert groups["web-spread"]["priority"] == 1.0 and groups["cache-together"]["priority"] == 2.5
    assert groups["licensed-hosts"]["vm_labels"] == [] == groups["licensed-hosts"]["host_labels"]
    assert [x["name"] for x in affinity_snapshot["affinity_labels"]] == ["ssd"]
    events = affinity_snapshot["events"]
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert events[0]["time"] == "2024-05-01T09:58:02.000+00:00"  # given as ...09:58:02Z
    assert {e["severity"] for e in events} == {"normal", "error"}
    assert validate_snapshot(affinity_snapshot) == affinity_snapshot


def test_the_new_sections_are_optional_and_compact_leaves_empty_ones_out(small_snapshot):
    assert small_snapshot["affinity_groups"] == small_snapshot["events"] == []
    assert list(compact(small_snapshot)) == ["clusters", "hosts", "vms"]
    with_event = {**small_snapshot, "events": [{"id": 1, "code": 30, "description": "x",
                                                "time": "2024-05-01T12:00:00+02:00"}]}
    assert list(compact(validate_snapshot(with_event))) == ["clusters", "hosts", "vms", "events"]
    assert validate_snapshot(with_event)["events"][0] == {
        "id": 1, "code": 30, "time": "2024-05-01T12:00:00.000+02:00", "description": "x",
        "vm": None, "host": None, "severity": "normal"}


VM_ON_HOST4 = "b0000000-0000-4000-8000-000000000009"
UNKNOWN = "f0000000-0000-4000-8000-000000000001"


@pytest.mark.parametrize("kind,index,changes,message", [
    ("affinity_groups", 0, {"id": "web-spread"}, r"affinity_groups\[0\] \(web-spread\): id: must be a lower-case UUID"),
    ("affinity_groups", 0, {"cluster": UNKNOWN}, r"\(web-spread\): cluster: must be one of"),
    ("affinity_groups", 0, {"vms_rule": KeyError}, r"\(web-spread\): vms_rule: missing"),
    ("affinity_groups", 0, {"vms_rule": True}, r"\(web-spread\): vms_rule: must be an object"),
    ("affinity_groups", 0, {"vms_rule": {"enabled": "yes"}}, r"\(web-spread\): vms_rule: enabled: must be true or false"),
    ("affinity_groups", 0, {"vms_rule": {"positive": True}}, r"\(web-spread\): vms_rule: positive: a disabled rule has no polarity"),
    ("affinity_groups", 0, {"hosts_rule": {"hard": True}}, r"\(web-spread\): hosts_rule: hard: unknown field"),
    ("affinity_groups", 0, {"priority": -1}, r"\(web-spread\): priority: must be a number of at least 0"),
    ("affinity_groups", 0, {"vms": [UNKNOWN]}, r"\(web-spread\): vms\[0\]: must be the id of a VM in the snapshot"),
    ("affinity_groups", 0, {"vms": [VM_ON_HOST4, VM_ON_HOST4]}, r"\(web-spread\): vms\[1\]: .* is listed twice"),
    ("affinity_groups", 2, {"hosts": "host4"}, r"\(licensed-hosts\): hosts: must be a list of host ids"),
    ("affinity_groups", 2, {"hosts": [UNKNOWN]}, r"\(licensed-hosts\): hosts\[0\]: must be the id of a host"),
    ("affinity_groups", 2, {"vm_labels": [UNKNOWN]}, r"\(licensed-hosts\): vm_labels\[0\]: must be the id of an affinity label"),
    ("affinity_groups", 1, {"name": "web-spread"}, r"affinity_groups\[1\]: name 'web-spread' is already used by affinity_groups\[0\] in the same cluster"),
    ("affinity_groups", 1, {"id": "d0000000-0000-4000-8000-000000000001"}, r"affinity_groups\[1\] \(db-with-app\): id .* is used twice"),
    ("affinity_groups", 1, {"members": []}, r"\(db-with-app\): members: unknown field"),
    ("affinity_labels", 0, {"vms": [UNKNOWN]}, r"affinity_labels\[0\] \(ssd\): vms\[0\]: must be the id of a VM"),
    ("affinity_labels", 0, {"hosts": KeyError}, r"affinity_labels\[0\] \(ssd\): hosts: missing"),
    ("affinity_labels", 0, {"name": ""}, r"affinity_labels\[0\]: name: must be a non-empty string"),
    ("events", 1, {"id": 101}, r"events\[1\]: id: must be greater than the id before it \(101\)"),
    ("events", 0, {"id": "101"}, r"events\[0\]: id: must be a whole number"),
    ("events", 0, {"code": 6.5}, r"events\[0\]: code: must be a whole number"),
    ("events", 0, {"time": 1714557482}, r"events\[0\]: time: must be ISO-8601 text with a UTC offset"),
    ("events", 0, {"time": "2024-05-01T09:58:02"}, r"events\[0\]: time: must be ISO-8601 text with a UTC offset"),
    ("events", 0, {"vm": UNKNOWN}, r"events\[0\]: vm: must be the id of a VM in the snapshot, or null"),
    ("events", 0, {"host": "host1"}, r"events\[0\]: host: must be the id of a host"),
    ("events", 0, {"severity": "info"}, r"events\[0\]: severity: must be one of alert, error, normal, warning"),
    ("events", 0, {"description": KeyError}, r"events\[0\]: description: missing"),
])
def test_affinity_and_event_errors_name_the_entry_and_field(affinity_snapshot, kind, index, changes, message):
    with pytest.raises(SnapshotError, match=message):
        validate_snapshot(_broken(affinity_snapshot, kind, index, **changes))


def test_group_members_must_be_in_the_groups_cluster(affinity_snapshot):
    two = copy.deepcopy(affinity_snapshot)
    two["clusters"].append({"id": "c0000000-0000-4000-8000-000000000002", "name": "Other"})
    two["affinity_groups"][2]["cluster"] = "c0000000-0000-4000-8000-000000000002"
    with pytest.raises(SnapshotError, match=r"\(licensed-hosts\): vms\[0\]: VM lic1 is not in "
                                            r"the group's cluster Other"):
        validate_snapshot(two)
    two["affinity_groups"][2]["vms"] = []
    with pytest.raises(SnapshotError, match=r"hosts\[0\]: host host4 is not in the group's cluster"):
        validate_snapshot(two)
    two["affinity_groups"][2]["hosts"] = []
    two["affinity_groups"][2]["name"] = "web-spread"  # unique per cluster only
    assert len(validate_snapshot(two)["affinity_groups"]) == 4


def test_a_section_that_is_not_a_list_is_refused(small_snapshot):
    with pytest.raises(SnapshotError, match="affinity_groups must be a list, got dict"):
        validate_snapshot({**small_snapshot, "affinity_groups": {}})
