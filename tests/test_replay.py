"""`replay --plugins DIR`: recorded calls run again on their recorded state, with the units of
another folder; a changed unit shows up as changed calls, an unchanged one as the same."""
import json
import shutil
import time

from proxy import config as config_mod
from proxy import holding, journal, replay, whatif_cli
from proxy.protocol import EngineProtocol, Record
from proxy.snapshot import load_snapshot
from tests.support import ROOT, cli_outcome

CLUSTER = ROOT / "config" / "cluster-small.json"
HOSTS = [f"a0000000-0000-4000-8000-00000000000{i}" for i in (1, 2, 3, 4)]
TINY1 = "b0000000-0000-4000-8000-000000000004"


def recorded(tmp_path):
    """A journal of real answers of the shipped units: a balance call, a filter call, a score
    call, and a balance call without a recorded state."""
    cfg = config_mod.load(None, {"plugins.folder": str(ROOT / "balancers")}).replace({"plugins.spare_workers": 1})
    calls = [("runLoadBalancing", ["host_memory_balance", HOSTS, {}]),
             ("runFilters", [["max_vms"], HOSTS, TINY1, {}]),
             ("runCostFunctions", [[["even_vm_distribution", 2]], HOSTS, TINY1, {}])]
    j = journal.Journal(tmp_path / "j.sqlite", 14, 100)
    j.spool_document(1, load_snapshot(CLUSTER))
    with whatif_cli.fed_executor(cfg, holding.load_file(str(CLUSTER))) as executor:
        protocol = EngineProtocol(executor, 30)
        for n, (method, args) in enumerate(calls + calls[:1], 1):
            record = Record()
            answer = getattr(protocol, method)(record, *args)
            record.release()
            e = journal.make_entry(f"c-{n}", time.time(), "t", method, record, answer, 0.001, j.run)
            e["version"] = 1 if n < 4 else 0  # the fourth ran on no recorded state
            j.record(json.loads(json.dumps(e)))
    j.close()
    return tmp_path / "j.sqlite"


def plugins(tmp_path, change=True):
    folder = tmp_path / ("changed" if change else "same")
    shutil.copytree(ROOT / "balancers", folder, ignore=shutil.ignore_patterns("__pycache__"))
    if change:  # the threshold lowered: host1 (400 MiB free) is no longer short of memory
        unit = folder / "host_memory_balance.py"
        unit.write_text(unit.read_text().replace("DEFAULT_MINIMUM_MB = 500", "DEFAULT_MINIMUM_MB = 300"))
    return folder


def run(*args):
    return cli_outcome("replay", *args)


def test_a_changed_unit_shows_its_calls_old_and_new(tmp_path):
    path = recorded(tmp_path)
    code, out, err = run("--journal", str(path), "--plugins", str(plugins(tmp_path)), "--json")
    found = json.loads(out)
    assert code == 1, err  # c-4 could not run again
    assert {k: found[k] for k in ("same", "changed", "failed")} == {"same": 2, "changed": 1, "failed": 1}
    by_id = {c["id"]: c for c in found["calls"]}
    assert by_id["c-1"]["status"] == "changed"
    assert by_id["c-1"]["old"]["result"] == [TINY1, HOSTS[1:]] and by_id["c-1"]["new"]["result"] == ["", []]
    assert by_id["c-4"] == {"id": "c-4", "method": "runLoadBalancing", "units": ["host_memory_balance"],
                            "status": "failed", "old": by_id["c-4"]["old"],
                            "new": "no recorded engine state to run it on"}


def test_the_same_units_give_the_same_answers(tmp_path):
    code, out, _ = run("--journal", str(recorded(tmp_path)), "--plugins", str(plugins(tmp_path, change=False)),
                       "--json")
    found = json.loads(out)
    assert {k: found[k] for k in ("same", "changed", "failed")} == {"same": 3, "changed": 0, "failed": 1}


def test_text_output_and_filters(tmp_path):
    path, folder = recorded(tmp_path), plugins(tmp_path)
    code, out, _ = run("--journal", str(path), "--plugins", str(folder), "--unit", "max_vms")
    assert code == 0
    assert out.strip() == "1 call(s) replayed: 1 same, 0 changed, 0 failed"
    code, out, _ = run("--journal", str(path), "--plugins", str(folder), "--since", "1h")
    assert "c-1  runLoadBalancing  host_memory_balance  changed" in out
    assert f'  old: ["{TINY1}", ' in out and '  new: ["", []]' in out
    assert out.splitlines()[-1] == "4 call(s) replayed: 2 same, 1 changed, 1 failed"


def entry(rid, method, units, answer, vm="", outcomes=None):
    return {"id": rid, "method": method, "units": units, "hosts": HOSTS, "vm": vm, "properties": {},
            "outcomes": outcomes or [{"unit": u, "weight": None} for u in units]}


def test_the_engine_arguments_of_each_method_come_back():
    e = entry("x", "runCostFunctions", ["a", "b"], [], outcomes=[{"unit": "a", "weight": 2}, {"unit": "b", "weight": 3}])
    assert replay.call_args(e) == [[["a", 2], ["b", 3]], HOSTS, "", {}]
    assert replay.call_args(entry("y", "runFilters", ["f"], [], vm="v")) == [["f"], HOSTS, "v", {}]
    assert replay.call_args(entry("z", "runLoadBalancing", ["u"], [])) == ["u", HOSTS, {}]
