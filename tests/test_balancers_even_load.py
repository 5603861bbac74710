"""even_load's decisions on hand-built snapshots: the cheapest of the good moves, the gain
floor, affinity, cooldown, budget, never back, hysteresis; and with hypothesis, that a move
it proposes never raises the imbalance and goes to an Up host it was sent."""

import dataclasses

import pytest
from hypothesis import given, settings, strategies as st

from balancers import even_load
from proxy import affinity, balancing, dryrun, state, whatif, whatif_cli
from proxy import config as config_mod
from proxy.sim.generate import generate_snapshot

GIB = 1024 * state.MIB
NONE = balancing.Limits()


def host(i, used_gib, memory_gib=64, cpu=40.0, threads=32, status="up"):
    return state.Host(id=f"h{i}", name=f"host{i}", status=status, cluster_id="c", memory=memory_gib * GIB,
                      max_scheduling_memory=(memory_gib - used_gib) * GIB, free_memory=(memory_gib - used_gib) * GIB,
                      cpu_usage=cpu, cpu_cores=threads // 2, cpu_threads=threads, active_vms=1)


def vm(i, host_id, memory_gib, cpu=10.0, vcpus=2):
    return state.Vm(id=f"v{i}", name=f"vm{i}", status="up", host_id=host_id, memory=int(memory_gib * GIB),
                    guaranteed_memory=int(memory_gib * GIB), os_type="rhel_9x64", cpu_usage=cpu, vcpus=vcpus)


def snapshot(hosts, vms, groups=(), read_at=1000.0):
    return state.Snapshot(version=1, read_at=read_at, read_seconds=0.0, source="t",
                          clusters={"c": state.Cluster("c", "Default")}, hosts=state.index(hosts),
                          vms=state.index(vms), affinity_groups=tuple(groups))


def decide(snap, limits=NONE, recent=(), history=(), minimum_gain=20, hot_minutes=2):
    return even_load.decide(snap, list(snap.hosts), minimum_gain, hot_minutes, limits, recent, history)


def imbalance(snap):
    f = whatif.figures(snap, "even_load", {})
    return max(f["ic_mem"], f["ic_cpu"])


# host1 holds 48 of 64 GiB, host2 16, host3 20: memory is the imbalance (Ic_mem 0.508, CPU
# even).  Gains, 3 × (Ic² before − after): vm3 (16 GiB) to host2 0.653, the best; vm2 (8 GiB)
# to host2 0.490, 75 % of it (at least 70 %: the same fix) and more gain per GiB (0.061 vs
# 0.041); vm1 (1 GiB) to host2 0.079 is the best per GiB but far under: not the same fix.
UNEVEN = snapshot([host(1, 48), host(2, 16), host(3, 20)],
                  [vm(1, "h1", 1), vm(2, "h1", 8), vm(3, "h1", 16), vm(4, "h2", 2)])


def test_the_best_gain_per_gib_among_the_moves_that_fix_the_same_problem():
    decision, why = decide(UNEVEN)
    assert decision == ("v2", ["h2"])
    assert "best gain per GiB" in why and "vm2 (8.00 GiB) from host1 to host2" in why
    after = whatif.apply_move(UNEVEN, "v2", "h2")
    assert imbalance(after) < imbalance(UNEVEN)


def test_below_the_minimum_gain_nothing_moves():
    # 34, 32 and 32 GiB used: moving 1 GiB to host2 gains 3 × (Ic² before − after) = 0.0019.
    even = snapshot([host(1, 34), host(2, 32), host(3, 32)], [vm(1, "h1", 1), vm(2, "h1", 8)])
    decision, why = decide(even)
    assert decision is None and "minimum_gain" in why
    # A floor of 1 thousandth lets that move through.
    assert decide(even, minimum_gain=1)[0] == ("v1", ["h2"])


def test_a_cooling_vm_stays_and_the_next_best_moves():
    limits = balancing.Limits(cooldown_minutes=30, cooling=frozenset({"v2"}))
    decision, _ = decide(UNEVEN, limits)
    assert decision is not None and decision[0] != "v2"


def test_a_spent_budget_moves_nothing_and_says_why():
    limits = balancing.Limits(max_migrations_per_hour=5, budget_left=0)
    decision, why = decide(UNEVEN, limits)
    assert decision is None and "budget" in why
    # A unit that opted out is not held to it.
    assert decide(UNEVEN, dataclasses.replace(limits, applies=False))[0] == ("v2", ["h2"])


def test_a_vm_never_goes_back_to_the_host_it_recently_left():
    recent = [balancing.Move(vm_id="v2", source_id="h2", candidates=("h1",), at=900.0)]
    decision, _ = decide(UNEVEN, recent=recent)
    assert decision is not None and decision != ("v2", ["h2"])
    assert decision[1] != ["h2"] or decision[0] != "v2"


def test_a_target_the_affinity_rules_forbid_is_never_offered():
    loads = even_load.Loads(list(UNEVEN.hosts.values()))
    blocked = even_load.Blocked(frozenset(), {})
    chosen = even_load.best_move(UNEVEN, loads, ["h1"], ["h2", "h3"], blocked, False, 0.02,
                                 allowed=lambda snap, v, t: t != "h2")
    assert chosen[2] == "h3"
    # No target allowed for any VM: nothing is chosen rather than a forbidden move.
    assert even_load.best_move(UNEVEN, loads, ["h1"], ["h2", "h3"], blocked, False, 0.02,
                               allowed=lambda snap, v, t: False) is None


def test_an_enforcing_negative_vm_to_host_group_keeps_the_vm_off_that_host():
    rule = state.Rule(enabled=True, positive=False, enforcing=True)
    group = state.AffinityGroup("g", "off-h2", "c", vms_rule=state.Rule(), hosts_rule=rule,
                                vm_ids=("v2", "v3"), host_ids=("h2",))
    snap = dataclasses.replace(UNEVEN, affinity_groups=(group,))
    if not affinity.violations(snap, "v2", "h2"):
        pytest.skip("proxy.affinity does not evaluate rules yet (its interface stub)")
    decision, _ = decide(snap)
    assert decision is not None and not (decision[0] in ("v2", "v3") and decision[1] == ["h2"])


# CPU is the imbalance: host1 at 90 %, the others at 20 % and 25 %; memory even.
HOT = snapshot([host(1, 32, cpu=90.0), host(2, 32, cpu=20.0), host(3, 32, cpu=25.0)],
               [vm(1, "h1", 2, cpu=80.0, vcpus=8), vm(2, "h1", 2, cpu=50.0, vcpus=4), vm(3, "h2", 2)])


def reading(at, h1, h2=20.0, h3=25.0):
    return balancing.Reading(version=1, read_at=at, cpu_usage={"h1": h1, "h2": h2, "h3": h3}, free_memory={})


def test_a_cpu_hot_spot_must_hold_for_the_duration_before_a_move():
    decision, why = decide(HOT)  # no history: one reading is not sustained
    assert decision is None and "cpu_hot_minutes" in why
    held = [reading(880.0, 88.0), reading(940.0, 91.0)]
    decision, _ = decide(HOT, history=held)
    assert decision is not None and HOT.vms[decision[0]].host_id == "h1"
    # Cooler than the mean a minute ago: the spike has not held.
    assert decide(HOT, history=[reading(880.0, 88.0), reading(940.0, 10.0)])[0] is None
    # Readings from the last minute only do not cover two minutes.
    assert decide(HOT, history=[reading(940.0, 91.0)])[0] is None
    # cpu_hot_minutes=0 acts on one reading.
    assert decide(HOT, hot_minutes=0)[0] is not None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 60), st.floats(0, 100)), min_size=2, max_size=6),
       st.lists(st.tuples(st.integers(0, 5), st.integers(1, 16), st.floats(0, 100)), max_size=20),
       st.lists(st.booleans(), min_size=6, max_size=6))
def test_a_proposed_move_never_raises_the_imbalance_and_goes_to_a_sent_up_host(hosts, vms, sent):
    hs = [host(i, used, cpu=cpu, status="up" if i % 4 else "maintenance") for i, (used, cpu) in enumerate(hosts)]
    placed = [vm(n, f"h{k % len(hs)}", mem, cpu=cpu) for n, (k, mem, cpu) in enumerate(vms)]
    snap = snapshot(hs, placed)
    ids = [h.id for h, keep in zip(hs, sent) if keep]
    decision, _ = even_load.decide(snap, ids, 20, 0, NONE, (), ())
    if decision is None:
        return
    vm_id, (target,) = decision
    assert target in ids and snap.hosts[target].status == "up" and target != snap.vms[vm_id].host_id
    assert snap.vms[vm_id].host_id in ids
    up = [h for h in whatif.up_hosts(snap) if h.id in ids]
    def ics(s):
        hs_ = [s.hosts[h.id] for h in up]
        return whatif.spread(whatif.used_memory_fractions(hs_))[0], whatif.spread(whatif.cpu_fractions(hs_))[0]
    (mem, cpu), (mem2, cpu2) = ics(snap), ics(whatif.apply_move(snap, vm_id, target))
    # The imbalance falls; or, evening memory while CPU cannot be acted on, Ic_mem falls and
    # the imbalance does not rise.
    assert max(mem2, cpu2) < max(mem, cpu) or (mem2 < mem and max(mem2, cpu2) <= max(mem, cpu) + 1e-9)


# CPU figures as the engine reports them (percent, two decimals at most): running sums of
# squares cannot follow subnormal loads such as 1e-308 %, which no host ever reports.
_PERCENT = st.integers(0, 10_000).map(lambda n: n / 100)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 60), _PERCENT, st.sampled_from([0, 8, 64])), min_size=2,
                max_size=6),
       st.integers(1, 16), _PERCENT, st.booleans(), st.data())
def test_the_running_sums_agree_with_whatifs_accounting_of_the_move(hosts, mem, cpu, on_memory, data):
    hs = [dataclasses.replace(host(i, used, cpu=c), cpu_threads=threads, max_scheduling_memory=64 * GIB)
          for i, (used, c, threads) in enumerate(hosts)]
    source, target = data.draw(st.sampled_from(hs)), data.draw(st.sampled_from(hs))
    if source.id == target.id:
        return  # the unit never scores staying
    snap = snapshot(hs, [vm(1, source.id, mem, cpu=cpu)])
    expected = gains(snap, list(snap.hosts), on_memory)[("v1", target.id)]
    chosen = even_load.best_move(snap, even_load.Loads(hs), [source.id], [target.id],
                                 even_load.Blocked(frozenset(), {}), on_memory, 0.0)
    if chosen is not None:
        assert abs(chosen[0] - expected) < 1e-7
    else:  # no gain, or (evening memory) a raise of the imbalance
        assert expected is None or expected < 1e-7


def gains(snap, host_ids, on_memory, sources=None, targets=None):
    """{(VM id, target id): gain or None} of every move of an Up VM between host_ids (from
    `sources` to `targets` when given), each scored on whatif's figures of the snapshot after
    it: what best_move must choose among."""
    def ics(s):
        hs = [s.hosts[h] for h in host_ids]
        return (whatif.spread(whatif.used_memory_fractions(hs))[0], whatif.spread(whatif.cpu_fractions(hs))[0])
    (mem, cpu), n, out = ics(snap), len(host_ids), {}
    vms = [v for h in sources for v in snap.vms_on(h)] if sources is not None else snap.vms.values()
    for v in vms:
        for t in host_ids if targets is None else targets:
            if v.status == "up" and v.host_id in host_ids and t != v.host_id:
                mem2, cpu2 = ics(whatif.apply_move(snap, v.id, t))
                raise_ = max(mem2, cpu2) ** 2 - max(mem, cpu) ** 2
                out[(v.id, t)] = (n * (max(mem, cpu) ** 2 - max(mem2, cpu2) ** 2) if not on_memory
                                  else n * (mem ** 2 - mem2 ** 2) if raise_ <= 1e-9 else None)
                out[(v.id, t, "raise")] = raise_
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 60), _PERCENT, st.sampled_from([0, 16, 64])), min_size=2, max_size=6),
       st.lists(st.tuples(st.integers(0, 5), st.integers(1, 16), _PERCENT, st.integers(1, 8)), max_size=24),
       st.booleans(), st.sampled_from([0.0, 0.02, 0.2]), st.data())
def test_the_pruned_search_chooses_what_scoring_every_move_would(hosts, vms, on_memory, floor, data):
    hs = [dataclasses.replace(host(i, used, cpu=c), cpu_threads=threads) for i, (used, c, threads) in enumerate(hosts)]
    snap = snapshot(hs, [vm(n, f"h{k % len(hs)}", m, cpu=c, vcpus=vc) for n, (k, m, c, vc) in enumerate(vms)])
    ids = list(snap.hosts)
    sources = data.draw(st.lists(st.sampled_from(ids), unique=True))
    targets = data.draw(st.lists(st.sampled_from(ids), unique=True))
    cooling = frozenset(data.draw(st.lists(st.sampled_from([f"v{n}" for n in range(len(vms))] or ["none"]))))
    left = {f"v{n}": {data.draw(st.sampled_from(ids))} for n in range(len(vms)) if data.draw(st.booleans())}
    forbidden = set(data.draw(st.lists(st.tuples(st.sampled_from([f"v{n}" for n in range(len(vms))] or ["none"]),
                                                 st.sampled_from(ids)))))
    allowed = lambda s, v, t: (v.id, t) not in forbidden  # noqa: E731 (an affinity stand-in)
    chosen = even_load.best_move(snap, even_load.Loads(hs), sources, targets, even_load.Blocked(cooling, left),
                                 on_memory, floor, allowed=allowed)
    scored = gains(snap, ids, on_memory)
    moves = [(scored[(v.id, t)], v, t) for v in snap.vms.values() for t in targets
             if v.host_id in sources and scored.get((v.id, t)) is not None and v.id not in cooling
             and t not in left.get(v.id, ()) and snap.hosts[t].max_scheduling_memory >= v.memory
             and allowed(snap, v, t)]
    best = max((g for g, _, _ in moves), default=None)
    if best is None or best <= floor + 1e-7:  # nothing gains the floor (a tie with it: either answer)
        assert chosen is None or best is not None and floor - 1e-7 <= chosen[0] <= best + 1e-7
        return
    assert chosen is not None and abs(chosen[3] - best) < 1e-7
    gain, v, t, _ = chosen
    assert allowed(snap, v, t) and v.host_id in sources and t in targets and v.id not in cooling
    assert abs(scored[(v.id, t)] - gain) < 1e-7 and gain >= max(floor, 0.7 * best) - 1e-7
    if on_memory:
        assert scored[(v.id, t, "raise")] <= 1e-9
    # The most gain per GiB among the moves that gain 70 % of the best, up to rounding.
    cheap = [g / m.memory * GIB for g, m, _ in moves if g >= max(floor, 0.7 * best) + 1e-7]
    assert gain / v.memory * GIB >= max(cheap, default=0.0) - 1e-6


class Counted(list):
    """The search's list of VMs, counting the entries read: it reads a VM's once, to score it."""
    read = 0

    def __getitem__(self, i):
        self.read += 1
        return list.__getitem__(self, i)


@pytest.mark.parametrize("on_memory", [False, True])
def test_on_a_generated_cluster_it_scores_few_vms_and_chooses_what_scoring_every_move_would(on_memory, monkeypatch):
    snap = state.from_document(generate_snapshot(30, 450, seed=5, pressure_hosts=2, hot_hosts=2), version=1,
                               source="t", read_at=0.0)
    hosts = [h.id for h in snap.hosts.values() if h.status == "up"]
    loads = even_load.Loads([snap.hosts[h] for h in hosts])
    sources, targets = even_load.pick_hosts(loads)
    leaving, real = [], even_load._leaving
    monkeypatch.setattr(even_load, "_leaving", lambda *args: leaving.append(Counted(real(*args))) or leaving[-1])
    chosen = even_load.best_move(snap, loads, sources, targets, even_load.Blocked(frozenset(), {}), on_memory, 0.02)
    scored = gains(snap, hosts, on_memory, sources, targets)
    moves = [(g, snap.vms[k[0]], k[1]) for k, g in scored.items() if len(k) == 2 and g is not None
             and snap.hosts[k[1]].max_scheduling_memory >= snap.vms[k[0]].memory]
    best = max(g for g, _, _ in moves)
    # The most gain per byte; ties: more gain, then the lower VM id (this cluster has two VMs alike)
    cheap = min((-g / v.memory, -g, v.id, t) for g, v, t in moves if g >= 0.7 * best)
    assert (chosen[1].id, chosen[2]) == cheap[2:] and abs(chosen[0] + cheap[1]) < 1e-7
    assert leaving[0].read < len(leaving[0]) / 4  # of 219 VMs, 4 scored when this was written


def test_while_cpu_hot_spots_have_not_held_it_evens_memory_without_raising_the_cpu_imbalance():
    # UNEVEN's memory, but host1 at 90 % CPU: CPU is the larger imbalance (Ic_cpu 0.71), with
    # no history to show it held.  Idle VMs move memory and leave CPU as it is.
    hosts = [dataclasses.replace(h, cpu_usage=c) for h, c in zip(UNEVEN.hosts.values(), (90.0, 20.0, 25.0))]
    snap = snapshot(hosts, [dataclasses.replace(v, cpu_usage=0.0) for v in UNEVEN.vms.values()])
    decision, why = decide(snap)
    assert decision == ("v2", ["h2"]) and "evening memory only" in why
    f_before, f_after = whatif.figures(snap, "even_load", {}), whatif.figures(whatif.apply_move(snap, "v2", "h2"),
                                                                            "even_load", {})
    assert f_after["ic_mem"] < f_before["ic_mem"] and f_after["ic_cpu"] <= f_before["ic_cpu"]


def test_through_simulate_each_move_evens_the_cluster_until_it_stops_by_itself():
    # The shipped unit as the engine calls it (registry, fork server, answer checks), on a
    # generated cluster with memory the larger imbalance, round after round.
    doc = generate_snapshot(12, 150, seed=21, pressure_hosts=2)
    for h in doc["hosts"]:
        h["cpu_load"] = 30  # CPU even: memory is what there is to balance
    snap = state.from_document(doc, version=1, source="t", read_at=0.0)
    hosts = dryrun.default_hosts(snap, None, lambda note: None)
    # No hourly budget: the test follows the unit until it stops by itself.
    cfg = config_mod.load(None, {}).replace({"plugins.spare_workers": 1, "log.level": "WARNING",
                                             "balancing.max_migrations_per_hour": 0})
    result = whatif_cli.simulate(cfg, "even_load", snap, hosts, {}, 40, snap.hosts[hosts[0]].cluster_id)
    assert not result["failed"] and result["stopped"] == "the unit answered no migration"
    ics = [result["before"]["ic_mem"]] + [r["ic_mem"] for r in result["rounds"]]
    assert len(ics) > 2 and all(b < a for a, b in zip(ics, ics[1:]))
    assert all(r["to"] in hosts for r in result["rounds"])
