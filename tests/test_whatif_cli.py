"""`simulate UNIT --snapshot FILE --rounds N`: the what-if, through the real execution path,
hand-checked on config/cluster-small.json (host1 has 400 MiB free; tiny1, 1 GiB, is its
smallest VM; host3 has the most free memory)."""
import json
import textwrap

import pytest

from proxy import holding, whatif_cli
from proxy import config as config_mod
from tests.support import ROOT, cli_outcome

CLUSTER = str(ROOT / "config" / "cluster-small.json")
HOST1, HOST3 = "a0000000-0000-4000-8000-000000000001", "a0000000-0000-4000-8000-000000000003"
TINY1 = "b0000000-0000-4000-8000-000000000004"


def simulate(*args):
    return cli_outcome("simulate", *args)


def test_one_round_moves_tiny1_to_host3_then_the_unit_stops():
    code, out, err = simulate("host_memory_balance", "--snapshot", CLUSTER, "--rounds", "5", "--json")
    assert code == 0, err
    found = json.loads(out)
    assert set(found) == {"rounds", "before", "after", "stopped"}
    [move] = found["rounds"]
    assert {k: move[k] for k in ("round", "vm", "from", "to", "moved_gib", "hosts_under_threshold")} == {
        "round": 1, "vm": TINY1, "from": HOST1, "to": HOST3, "moved_gib": 1.0, "hosts_under_threshold": 0}
    assert move["ic_mem"] < found["before"]["ic_mem"] and move["ic_mem"] == found["after"]["ic_mem"]
    assert found["before"]["hosts_under_threshold"] == 1
    assert found["stopped"] == "the unit answered no migration"


def test_text_output_is_a_table_with_names():
    code, out, _ = simulate("host_memory_balance", "--snapshot", CLUSTER, "--rounds", "3")
    assert code == 0
    assert any(line.split()[:4] == ["1", "tiny1", "host1", "host3"] for line in out.splitlines())
    assert "1 migration(s), 1.00 GiB moved; stopped: the unit answered no migration" in out
    assert "nothing was migrated" in out


def test_the_simulated_engine_command_is_still_there():
    code, out, _ = simulate("--help")
    assert code == 0 and "--generate" in out


def test_each_round_runs_on_the_state_the_previous_moves_left(tmp_path):
    """A unit that always moves the first VM of the first host sent to the second: on a state
    that did not change it would move the same VM every round; here it moves a new one."""
    (tmp_path / "mover.py").write_text(textwrap.dedent('''
        from proxy import engine

        class first_vm_mover:
            def do_balance(self, hosts, args):
                """Moves the first running VM of the first host to the second host."""
                vms = [v for v in engine.snapshot().vms_on(hosts[0]) if v.status == "up"]
                return (vms[0].id, [hosts[1]]) if vms else None
        '''))
    cfg = config_mod.load(None, {"plugins.folder": str(tmp_path)}).replace({"plugins.spare_workers": 1})
    snap = holding.load_file(CLUSTER)
    hosts = [h.id for h in snap.hosts.values()]
    result = whatif_cli.simulate(cfg, "first_vm_mover", snap, hosts, {}, 10)
    moved = [r["vm"] for r in result["rounds"]]
    assert len(moved) == len(set(moved)) == len(snap.vms_on(hosts[0])) - sum(
        v.status != "up" for v in snap.vms_on(hosts[0]))
    assert result["stopped"] == "the unit answered no migration"
    assert not result["last"].vms_on(hosts[0]) or all(v.status != "up" for v in result["last"].vms_on(hosts[0]))


def test_a_failing_unit_stops_the_rounds_and_exits_1(tmp_path):
    (tmp_path / "broken.py").write_text(textwrap.dedent('''
        class broken:
            def do_balance(self, hosts, args):
                """Always fails."""
                raise RuntimeError("no luck")
        '''))
    code, out, _ = simulate("broken", "--snapshot", CLUSTER, "--plugins", str(tmp_path), "--json")
    assert code == 1
    found = json.loads(out)
    assert found["rounds"] == [] and found["stopped"].startswith("the unit failed:") and "no luck" in found["stopped"]
    assert found["before"] == found["after"]


MOVER = '''
from proxy import engine

class ping_pong:
    def do_balance(self, hosts, args):
        """Moves the VM its vm property names to the other host sent."""
        vm = engine.snapshot().vms[args["vm"]]
        return vm.id, [h for h in hosts if h != vm.host_id]
'''


@pytest.mark.parametrize("cooldown", [0, 60])
def test_simulated_passes_are_an_engine_interval_apart_and_the_cooldown_stops_ping_pong(tmp_path, cooldown):
    (tmp_path / "ping.py").write_text(MOVER)
    cfg = config_mod.load(None, {"plugins.folder": str(tmp_path)}).replace(
        {"plugins.spare_workers": 1, "balancing.cooldown_minutes": cooldown})
    snap = holding.load_file(CLUSTER)
    a, b = list(snap.hosts)[:2]
    vm = snap.vms_on(a)[0].id
    result = whatif_cli.simulate(cfg, "ping_pong", snap, [a, b], {"vm": vm}, 4, interval=120)
    rows = result["rounds"]
    assert [r["at"] - rows[0]["at"] for r in rows] == [120.0 * i for i in range(len(rows))]
    assert [r["candidates"] for r in rows] == [[b], [a], [b], [a]][:len(rows)]
    if cooldown:
        assert [(r["from"], r["to"]) for r in rows] == [(a, b)]  # no A→B→A within the cooldown
        assert "within balancing.cooldown_minutes (60)" in result["stopped"]
    else:
        assert [(r["from"], r["to"]) for r in rows] == [(a, b), (b, a), (a, b), (b, a)]


def test_the_json_rounds_carry_the_candidates():
    code, out, _ = simulate("host_memory_balance", "--snapshot", CLUSTER, "--rounds", "2", "--json")
    assert code == 0
    [first, *_] = json.loads(out)["rounds"]
    assert first["to"] in first["candidates"] and first["from"] not in first["candidates"]


def test_a_unit_with_hysteresis_acts_once_its_hot_spot_has_held_and_patience_waits_for_it():
    # host1 runs at 72 % CPU: over HighUtilization=70 now, but cpu_memory_even_distribution
    # wants it over for CpuOverCommitDurationMinutes=2 of load history, which the passes
    # build one simulated minute at a time.
    args = ("--snapshot", CLUSTER, "--prop", "HighUtilization=70", "--prop", "CpuOverCommitDurationMinutes=2", "--json")
    code, out, err = simulate("cpu_memory_even_distribution", "--rounds", "6", *args)
    assert code == 0, err
    rounds = json.loads(out)["rounds"]
    assert rounds and rounds[0]["round"] == 3 and rounds[0]["from"] == HOST1  # minutes 0, 1, 2 over 70 %
    code, out, err = simulate("cpu_memory_even_distribution", "--rounds", "6", "--patience", "1", *args)
    found = json.loads(out)
    assert code == 0 and found["rounds"] == [] and found["stopped"] == "the unit answered no migration"
    code, out, err = simulate("cpu_memory_even_distribution", "--patience", "0", *args)
    assert code == 1 and "--patience: give 1 or more" in err
