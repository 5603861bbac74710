"""Properties of every shipped balancer over generated snapshots held in-process: candidates
are Up hosts that were sent, no enforcing affinity rule is broken, nothing cooling moves, and
a move meant to balance memory never raises Ic_mem (proxy/whatif.py's figure)."""

import time

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from balancers import even_distribution
from balancers.even_distribution import cpu_memory_even_distribution
from balancers.host_memory_balance import host_memory_balance
from balancers.vm_balance import vm_balance
from proxy import affinity, balancing, engine, state, whatif

MIB = 1 << 20
STATUSES = ["up"] * 8 + ["maintenance", "non_responsive"]


@st.composite
def rules(draw):
    return state.Rule(draw(st.booleans()), draw(st.booleans()), draw(st.booleans()))


@st.composite
def clusters(draw):
    """(a Snapshot, the host ids the engine sends, the VM ids cooling down)."""
    n = draw(st.integers(3, 8))
    ids = [f"h{i}" for i in range(n)]
    placement = draw(st.lists(st.sampled_from(ids * 3 + [None]), min_size=n, max_size=30))
    vms = [state.Vm(f"v{j}", f"v{j}", "up" if h else "down", h, draw(st.integers(64, 4096)) * MIB, None,
                    "rhel_8x64", float(draw(st.integers(0, 100))), draw(st.integers(1, 4)), "c")
           for j, h in enumerate(placement)]
    hosts = []
    for h in ids:
        memory = draw(st.integers(4096, 65536))
        free = draw(st.one_of(st.integers(0, memory), st.integers(0, 1500)))
        scheduling = max(0, free - draw(st.integers(0, 1024)))  # the engine keeps some back
        hosts.append(state.Host(h, h, draw(st.sampled_from(STATUSES)), "c", memory * MIB,
                                scheduling * MIB, free * MIB, float(draw(st.integers(0, 100))),
                                8, draw(st.integers(2, 16)), sum(1 for v in vms if v.host_id == h)))
    vm_ids = [v.id for v in vms]
    labels = [state.AffinityLabel("l0", "l0", tuple(draw(st.lists(st.sampled_from(vm_ids), max_size=3)))
                                  if vm_ids else (), tuple(draw(st.lists(st.sampled_from(ids), max_size=2))))]
    groups = [state.AffinityGroup(f"g{k}", f"g{k}", "c", draw(rules()), draw(rules()),
                                  vm_ids=tuple(draw(st.lists(st.sampled_from(vm_ids), max_size=4))) if vm_ids else (),
                                  host_ids=tuple(draw(st.lists(st.sampled_from(ids), max_size=3))),
                                  vm_label_ids=tuple(draw(st.lists(st.just("l0"), max_size=1))),
                                  host_label_ids=tuple(draw(st.lists(st.just("l0"), max_size=1))))
              for k in range(draw(st.integers(0, 3)))]
    snap = state.Snapshot(1, time.time(), 0.0, "gen", {}, state.index(hosts), state.index(vms),
                          tuple(groups), tuple(labels))
    sent = draw(st.one_of(st.just(ids), st.lists(st.sampled_from(ids + ["gone"]), min_size=1, max_size=n + 2)))
    cooling = frozenset(draw(st.lists(st.sampled_from(vm_ids), max_size=3))) if vm_ids else frozenset()
    return snap, sent, cooling


def ic_mem(snap, host_ids):
    hosts = [h for h in snap.hosts.values() if h.id in host_ids and h.status == "up"]
    return whatif.spread(whatif.used_memory_fractions(hosts))[0]


def run(unit, snap, sent, args, cooling, history=()):
    engine.hold(snap, static=True)
    balancing.bind(balancing.Limits(cooldown_minutes=10, cooling=cooling), history=history)
    try:
        answer = unit.do_balance(sent, args)
    finally:
        engine.hold(None)
        balancing.bind(history=())
    event("a move" if answer else "no move")  # --hypothesis-show-statistics: not all empty
    return answer


def check_common(snap, sent, cooling, answer, source_listed=False):
    """The answer's VM runs on a sent Up host, is not cooling, and every candidate is a sent Up
    host it may go to under every enforcing rule.  Returns (VM, destinations)."""
    vm_id, candidates = answer
    vm = snap.vms[vm_id]
    up_sent = {h for h in sent if h in snap.hosts and snap.hosts[h].status == "up"}
    assert vm.status == "up" and vm.host_id in up_sent and vm_id not in cooling
    destinations = candidates[:-1] if source_listed else candidates
    if source_listed:
        assert candidates[-1] == vm.host_id
    assert destinations and set(candidates) <= up_sent and vm.host_id not in destinations
    assert all(affinity.allowed(snap, vm, h) for h in destinations), affinity.violations
    return vm, destinations


def assert_ic_mem_never_rises(snap, sent, vm, destinations):
    before = ic_mem(snap, sent)
    for target in destinations:
        assert ic_mem(whatif.apply_move(snap, vm.id, target), sent) <= before, target


SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(clusters(), st.sampled_from(["500", "1000", "4000"]), st.sampled_from(["True", "False"]))
def test_host_memory_balance_never_raises_ic_mem_nor_breaks_a_rule(case, threshold, safe):
    snap, sent, cooling = case
    args = {"minimum_host_memoryMB": threshold, "safe_selection": safe}
    answer = run(host_memory_balance(), snap, sent, args, cooling)
    if answer is None:
        return
    assert_ic_mem_never_rises(snap, sent, *check_common(snap, sent, cooling, answer))


@SETTINGS
@given(clusters(), st.sampled_from(["1000", "3000"]), st.sampled_from(["500", "2000"]))
def test_even_distribution_memory_moves_never_raise_ic_mem(case, max_free, min_free):
    snap, sent, cooling = case
    # no load history: no CPU load is sustained, so every move is a memory move
    args = {"MaxFreeMemoryForOverUtilized": max_free, "MinFreeMemoryForUnderUtilized": min_free}
    answer = run(cpu_memory_even_distribution(), snap, sent, args, cooling)
    if answer is None:
        return
    assert_ic_mem_never_rises(snap, sent, *check_common(snap, sent, cooling, answer, source_listed=True))


@SETTINGS
@given(clusters(), st.sampled_from(["50", "70", "80"]), st.sampled_from(["0", "5", "20"]))
def test_even_distribution_cpu_moves_gain_the_margin_and_fit(case, high, gain):
    snap, sent, cooling = case
    history = [balancing.Reading(0, snap.read_at - 300, {h: 100.0 for h in snap.hosts}, {})]
    answer = run(cpu_memory_even_distribution(), snap, sent, {"HighUtilization": high, "MinimumCpuGain": gain},
                 cooling, history)
    if answer is None:
        return
    vm, destinations = check_common(snap, sent, cooling, answer, source_listed=True)
    source = snap.hosts[vm.host_id]
    if source.cpu_usage >= int(high):  # a CPU move (memory keys unset: no memory sources)
        for target in destinations:
            dest = snap.hosts[target]
            assert even_distribution.cpu_gain(vm, source, dest) >= int(gain)
            assert dest.cpu_usage + even_distribution.vm_load(vm) / dest.cpu_threads <= int(high)


@SETTINGS
@given(clusters(), st.integers(0, 6))
def test_vm_balance_candidates_are_sent_up_hosts_allowed_by_affinity(case, maximum):
    snap, sent, cooling = case
    answer = run(vm_balance(), snap, sent, {"maximum_vm_count": str(maximum)}, cooling)
    if answer is not None:
        _, destinations = check_common(snap, sent, cooling, answer)
        assert all(snap.hosts[h].active_vms < maximum for h in destinations)


@pytest.mark.parametrize("unit, args", [
    (host_memory_balance(), {"minimum_host_memoryMB": "4000"}),
    (cpu_memory_even_distribution(), {"MaxFreeMemoryForOverUtilized": "3000"}),
    (vm_balance(), {"maximum_vm_count": "0"}),
])
def test_no_balancer_moves_while_the_budget_is_spent(unit, args):
    snap = state.from_document(__import__("proxy.sim.generate", fromlist=["x"]).generate_snapshot(
        20, 200, seed=3, pressure_hosts=3, affinity_groups=5), version=1, source="gen")
    sent = [h.id for h in snap.hosts.values()]
    engine.hold(snap, static=True)
    try:
        balancing.bind(balancing.Limits(max_migrations_per_hour=2, budget_left=0))
        assert unit.do_balance(sent, args) is None
    finally:
        engine.hold(None)
        balancing.bind()
