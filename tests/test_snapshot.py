"""proxy.snapshot: the shipped snapshots, and errors that name the entry and the field."""

import copy

import pytest

from proxy.snapshot import SnapshotError, load_snapshot, validate_snapshot
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
