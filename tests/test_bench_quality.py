"""The quality benchmark's pieces (tests/benchmarks/): A→B→A and violation counting, the
greedy feasibility check, and the greedy reference unit on hand-built states."""

from proxy import registry, state
from tests.benchmarks import quality_metrics as qm
from tests.support import ROOT

GIB = 1024 * state.MIB
greedy = registry.load_module(ROOT / "tests" / "benchmarks" / "baseline" / "greedy_balance.py")


def host(i, used_gib, memory_gib=64, cpu=40.0, room_gib=None, free_gib=None):
    free = (memory_gib - used_gib) if free_gib is None else free_gib
    return state.Host(id=f"h{i}", name=f"host{i}", status="up", cluster_id="c", memory=memory_gib * GIB,
                      max_scheduling_memory=int((free if room_gib is None else room_gib) * GIB),
                      free_memory=int(free * GIB), cpu_usage=cpu, cpu_cores=16, cpu_threads=32, active_vms=1)


def vm(i, host_id, memory_gib, cpu=0.0):
    return state.Vm(id=f"v{i}", name=f"vm{i}", status="up", host_id=host_id, memory=int(memory_gib * GIB),
                    guaranteed_memory=int(memory_gib * GIB), os_type="rhel_9x64", cpu_usage=cpu, vcpus=2)


def snapshot(hosts, vms):
    return state.Snapshot(version=1, read_at=0.0, read_seconds=0.0, source="t",
                          clusters={"c": state.Cluster("c", "Default")}, hosts=state.index(hosts),
                          vms=state.index(vms))


def row(n, vm_id, source, target, **more):
    return {"round": n, "vm": vm_id, "from": source, "to": target, **more}


def test_a_vm_moved_back_to_a_host_it_left_counts_once_and_by_how_long_ago():
    rows = [row(1, "a", "h1", "h2"), row(2, "b", "h1", "h3"), row(3, "a", "h2", "h1"),  # A→B→A in 2 min
            row(4, "b", "h3", "h2"), row(70, "b", "h2", "h1"),  # b back to h1 after 68 min
            row(71, "c", "h1", "h2"), row(72, "c", "h2", "h3")]  # a chain, never back
    assert qm.back_and_forth(rows) == (2, 1)
    assert qm.back_and_forth(rows, window_minutes=120) == (2, 2)
    assert qm.back_and_forth([]) == (0, 0)


def test_violations_are_counted_per_candidate_on_the_state_before_each_move():
    snap = snapshot([host(1, 40), host(2, 10), host(3, 10)], [vm(1, "h1", 4), vm(2, "h1", 4)])
    def forbid_h3_while_v2_is_on_h1(s, vm_id, host_id):
        return ["rule"] if host_id == "h3" and s.vms["v2"].host_id == "h1" else []
    # Round 1 offers h2 and h3 while v2 is still on h1: one violation.  Round 2 moved v2 off
    # h1 first, so h3 breaks nothing any more; the source itself never counts.
    rows = [row(1, "v1", "h1", "h2", candidates=["h2", "h3"]), row(2, "v2", "h1", "h2", candidates=["h2", "h1"]),
            row(3, "v1", "h2", "h3", candidates=["h3"])]
    assert qm.violations_proposed(snap, rows, forbid_h3_while_v2_is_on_h1) == (1, True)
    # Without candidates in the rows, the host each VM went to is what is checked: h2, h2,
    # then h3 once v2 has left h1.
    bare = [{k: v for k, v in r.items() if k != "candidates"} for r in rows]
    assert qm.violations_proposed(snap, bare, forbid_h3_while_v2_is_on_h1) == (0, False)
    assert qm.violations_proposed(snap, [row(1, "v1", "h1", "h3")], forbid_h3_while_v2_is_on_h1) == (1, False)


def test_feasible_fix_finds_a_plan_or_says_there_is_none():
    short = host(1, 63.8, free_gib=0.2)  # 200 MiB free: under 500
    # A 1 GiB VM fits on host2: feasible.
    assert qm.feasible_fix(snapshot([short, host(2, 10)], [vm(1, "h1", 1)]), "c", 500)
    # Nothing fits anywhere (host2 would drop to the threshold itself): infeasible.
    assert not qm.feasible_fix(snapshot([short, host(2, 63, free_gib=1.2)], [vm(1, "h1", 1)]), "c", 500)
    # Two short hosts, one helper with room for one VM only: infeasible; with room for both: feasible.
    two = [short, host(2, 63.8, free_gib=0.3)]
    vms = [vm(1, "h1", 2), vm(2, "h2", 2)]
    assert not qm.feasible_fix(snapshot(two + [host(3, 60, free_gib=3)], vms), "c", 500)
    assert qm.feasible_fix(snapshot(two + [host(3, 50, free_gib=5)], vms), "c", 500)
    assert qm.feasible_fix(snapshot([host(1, 10)], []), "c", 500)  # nothing short: nothing to do


# host1 uses 48 of 64 GiB, host2 16: Ic_mem 0.5 (fractions 0.75 and 0.25, mean 0.5, sd 0.25);
# CPU even and the VMs idle, so Ic_cpu stays 0.  Moving the 16 GiB VM makes both 32 GiB: Ic 0;
# the 8 GiB VM would leave 0.625 / 0.375: Ic 0.25.
PAIR = [host(1, 48), host(2, 16)]


def test_greedy_takes_the_move_that_most_reduces_the_imbalance():
    snap = snapshot(PAIR, [vm(1, "h1", 8), vm(2, "h1", 16), vm(3, "h2", 1)])
    moves, now = greedy.best_moves(snap, ["h1", "h2"])
    assert abs(now - 0.5) < 1e-12
    assert (moves[0][1].id, moves[0][2]) == ("v2", "h2") and abs(moves[0][0]) < 1e-6
    assert abs(next(a for a, v, t in moves if v.id == "v1") - 0.25) < 1e-9
    assert greedy.decide(snap, ["h1", "h2"]) == ("v2", ["h2"])


def test_greedy_keeps_to_the_memory_filter_and_stops_when_nothing_helps():
    tight = [host(1, 48), host(2, 16, room_gib=10)]  # host2 schedules at most 10 GiB more
    assert greedy.decide(snapshot(tight, [vm(1, "h1", 8), vm(2, "h1", 16)]), ["h1", "h2"]) == ("v1", ["h2"])
    even = [host(1, 32), host(2, 32)]
    assert greedy.decide(snapshot(even, [vm(1, "h1", 8), vm(2, "h2", 8)]), ["h1", "h2"]) is None
    # Only hosts the engine sent count; one host is nothing to balance.
    assert greedy.decide(snapshot(PAIR, [vm(1, "h1", 16)]), ["h1"]) is None
