"""The shipped units on hand-built snapshots held in-process (engine.hold): enforcing affinity,
cooldown and budget across consecutive calls (balancing.bind), hysteresis across readings."""

import time

import pytest

from balancers.enforcing_affinity import enforcing_affinity
from balancers.even_distribution import cpu_memory_even_distribution
from balancers.host_memory_balance import host_memory_balance
from balancers.vm_balance import vm_balance
from proxy import balancing, engine, explain, state

GIB = 1 << 30
MIB = 1 << 20
HOSTS = ["h1", "h2", "h3", "h4"]


def rule(positive=True):
    return state.Rule(True, positive, True)


def group(name, vms=(), hosts=(), *, vm_rule=None, host_rule=None, vm_labels=(), host_labels=()):
    return state.AffinityGroup(name, name, "c", vm_rule or state.Rule(), host_rule or state.Rule(),
                               vm_ids=tuple(vms), host_ids=tuple(hosts), vm_label_ids=tuple(vm_labels),
                               host_label_ids=tuple(host_labels))


def snapshot(vms, groups=(), labels=(), *, free_mb=None, cpu=None, version=1, read_at=None):
    """Four 16 GiB Up hosts; h1 has 400 MiB free (under the 500 MiB default), the others 8 GiB.
    vms: {id: (host, memory MiB, CPU %)}."""
    free_mb = {"h1": 400, "h2": 8192, "h3": 8192, "h4": 8192, **(free_mb or {})}
    cpu = {"h1": 20.0, "h2": 20.0, "h3": 20.0, "h4": 20.0, **(cpu or {})}
    counts = {h: sum(1 for v in vms.values() if v[0] == h) for h in HOSTS}
    hosts = [state.Host(h, h, "up", "c", 16 * GIB, free_mb[h] * MIB, free_mb[h] * MIB, cpu[h], 4, 4, counts[h])
             for h in HOSTS]
    records = [state.Vm(v, v, "up", h, mem * MIB, mem * MIB, "rhel_8x64", load, 1, "c")
               for v, (h, mem, load) in vms.items()]
    return state.Snapshot(version, time.time() if read_at is None else read_at, 0.0, "test", {},
                          state.index(hosts), state.index(records), tuple(groups), tuple(labels))


@pytest.fixture(autouse=True)
def _clean():
    explain.reset()
    yield
    engine.hold(None)
    balancing.bind(history=())
    explain.reset()


def balance(unit, snap, args=None):
    engine.hold(snap, static=True)
    return unit.do_balance(HOSTS, args or {})


# h1 is short of memory and runs small (256 MiB) and big (1024 MiB)
SHORT = {"small": ("h1", 256, 5.0), "big": ("h1", 1024, 5.0), "other": ("h2", 512, 5.0)}


# --- host_memory_balance and affinity ---------------------------------------------------------

def test_memory_balance_never_offers_a_host_a_vm_to_host_rule_forbids():
    snap = snapshot(SHORT, [group("not-h2", ["small"], ["h2", "h3"], host_rule=rule(False))])
    assert balance(host_memory_balance(), snap) == ("small", ["h4"])
    assert "not-h2" in explain.collected()["hosts"]["h2"]


def test_memory_balance_skips_a_vm_tied_to_its_host_and_takes_the_next():
    snap = snapshot({**SHORT, "buddy": ("h1", 2048, 5.0)},
                    [group("together", ["small", "buddy"], vm_rule=rule())])
    assert balance(host_memory_balance(), snap) == ("big", ["h2", "h3", "h4"])
    assert "no host allowed by enforcing affinity" in explain.collected()["decision"]


def test_memory_balance_keeps_vm_to_vm_negative_members_apart():
    snap = snapshot(SHORT, [group("apart", ["small", "other"], vm_rule=rule(False))])
    assert balance(host_memory_balance(), snap) == ("small", ["h3", "h4"])


def test_memory_balance_follows_labels():
    labels = [state.AffinityLabel("fast", "fast", host_ids=("h4",)), state.AffinityLabel("db", "db", ("small",))]
    snap = snapshot(SHORT, [group("on-fast", vm_labels=["db"], host_labels=["fast"], host_rule=rule())], labels)
    assert balance(host_memory_balance(), snap) == ("small", ["h4"])


def test_memory_balance_prefers_the_move_a_rule_requires():
    # big runs on h1 but must run on h3: moving it mends the rule, so it goes before small
    snap = snapshot(SHORT, [group("big-on-h3", ["big"], ["h3"], host_rule=rule())])
    assert balance(host_memory_balance(), snap) == ("big", ["h3"])
    assert "mends an enforcing affinity rule" in explain.collected()["decision"]


def test_memory_balance_joins_split_positive_members():
    snap = snapshot(SHORT, [group("pair", ["big", "other"], vm_rule=rule())])
    assert balance(host_memory_balance(), snap) == ("big", ["h2"])


# --- the other balancers and affinity ---------------------------------------------------------

def test_vm_balance_honours_affinity_and_prefers_the_required_move():
    vms = {f"v{i}": ("h1", 256 * (i + 1), 5.0) for i in range(4)}
    snap = snapshot(vms, [group("v0-stays", ["v0", "v1"], vm_rule=rule()),
                          group("v3-off-h2", ["v3"], ["h3", "h4"], host_rule=rule())])
    # v0 and v1 must stay together; v2 is the cheapest free VM, but v3 breaks its rule now
    assert balance(vm_balance(), snap, {"maximum_vm_count": "2"}) == ("v3", ["h3", "h4"])
    snap = snapshot(vms, [group("v0-stays", ["v0", "v1"], vm_rule=rule())])
    assert balance(vm_balance(), snap, {"maximum_vm_count": "2"}) == ("v2", ["h2", "h3", "h4"])


def test_even_distribution_honours_affinity_on_cpu_moves():
    vms = {"hot": ("h1", 1024, 60.0), "warm": ("h1", 2048, 50.0)}
    cpu = {"h1": 95.0, "h2": 10.0, "h3": 15.0, "h4": 30.0}
    now = time.time()
    snap = snapshot(vms, [group("hot-not-h2", ["hot"], ["h2"], host_rule=rule(False))], cpu=cpu, read_at=now)
    balancing.bind(history=[balancing.Reading(0, now - 150, {"h1": 92.0}, {})])
    assert balance(cpu_memory_even_distribution(), snap) == ("hot", ["h3", "h4", "h1"])
    snap = snapshot(vms, [group("hot-stays", ["hot"], ["h1"], host_rule=rule())], cpu=cpu, read_at=now)
    assert balance(cpu_memory_even_distribution(), snap) == ("warm", ["h2", "h3", "h4", "h1"])


def test_the_filter_drops_hosts_that_break_an_enforcing_rule_and_says_why():
    snap = snapshot(SHORT, [group("apart", ["small", "other"], vm_rule=rule(False)),
                            group("not-h4", ["small"], ["h4"], host_rule=rule(False))])
    engine.hold(snap, static=True)
    assert enforcing_affinity().do_filter(HOSTS + ["h2"], "small", {}) == ["h1", "h3"]
    reasons = explain.collected()["hosts"]
    assert "apart" in reasons["h2"] and "not-h4" in reasons["h4"]


def test_the_filter_lets_every_host_through_for_a_vm_it_does_not_know():
    engine.hold(snapshot(SHORT), static=True)
    assert enforcing_affinity().do_filter(HOSTS, "new-vm", {}) == HOSTS
    assert "not in the engine state" in explain.collected()["decision"]
    assert enforcing_affinity().do_filter([], "new-vm", {}) == []


# --- cooldown and budget across consecutive calls ---------------------------------------------

def test_cooldown_across_calls_moves_another_vm():
    # the state still shows small on h1 (the migration is in flight, or the engine let it stay)
    unit = host_memory_balance()
    snap = snapshot({**SHORT, "third": ("h1", 300, 5.0)})
    vm_id, candidates = balance(unit, snap)
    assert vm_id == "small"
    balancing.bind(balancing.Limits(cooldown_minutes=10, cooling=frozenset({"small"})),
                   [balancing.Move("small", "h1", tuple(candidates), time.time())])
    assert balance(unit, snap)[0] == "third"
    assert "1 VM(s) cooling down" in explain.collected()["decision"]


def test_a_vm_is_never_sent_back_to_the_host_it_left_within_the_cooldown():
    # the engine moved small h1 -> h2 (an event); a unit that opted in never proposes h2 -> h1
    snap = snapshot({"small": ("h2", 256, 5.0), "x": ("h2", 256, 5.0)}, free_mb={"h1": 8192, "h2": 100})
    balancing.bind(balancing.Limits(cooldown_minutes=10),
                   [balancing.Move("small", "h1", ("h2",), time.time() - 60, origin="events")])
    assert balance(host_memory_balance(), snap) == ("small", ["h3", "h4"])
    assert "cooldown" in explain.collected()["hosts"]["h1"]
    balancing.bind(balancing.Limits(cooldown_minutes=10),
                   [balancing.Move("small", "h1", ("h2",), time.time() - 3600)])  # long ago
    assert balance(host_memory_balance(), snap) == ("small", ["h1", "h3", "h4"])


def test_a_unit_that_opted_out_ignores_cooling_and_budget():
    balancing.bind(balancing.Limits(cooldown_minutes=10, cooling=frozenset({"small"}), budget_left=0,
                                    max_migrations_per_hour=1, applies=False))
    assert balance(host_memory_balance(), snapshot(SHORT))[0] == "small"


@pytest.mark.parametrize("unit, snap, args", [
    (host_memory_balance(), snapshot(SHORT), {}),
    (vm_balance(), snapshot(SHORT), {"maximum_vm_count": "1"}),
])
def test_a_spent_budget_means_no_migration_and_says_so(unit, snap, args):
    balancing.bind(balancing.Limits(max_migrations_per_hour=3, budget_left=1))
    assert balance(unit, snap, args) is not None
    balancing.bind(balancing.Limits(max_migrations_per_hour=3, budget_left=0))
    assert balance(unit, snap, args) is None
    assert "budget is used up" in explain.collected()["decision"]


def test_even_distribution_spends_no_budget_pass_either():
    now = time.time()
    snap = snapshot({"hot": ("h1", 1024, 60.0)}, cpu={"h1": 95.0}, read_at=now)
    balancing.bind(balancing.Limits(max_migrations_per_hour=3, budget_left=0),
                   history=[balancing.Reading(0, now - 150, {"h1": 92.0}, {})])
    assert balance(cpu_memory_even_distribution(), snap) is None
    assert "budget" in explain.collected()["decision"]


# --- hysteresis across readings ---------------------------------------------------------------

def readings(now, *loads, step=40):
    """One reading per load for h1, the last one `step` seconds before now, each `step` apart."""
    return [balancing.Reading(i, now - step * (len(loads) - i), {"h1": load}, {}) for i, load in enumerate(loads)]


@pytest.mark.parametrize("history, moves", [
    ([], False),  # nothing yet: one reading is not sustained
    ([95, 96], False),  # 80 s of history: less than the 2 minutes
    ([95, 96, 94], True),  # 120 s, all over 80 %
    ([85, 70, 94], False),  # a dip in the span
    ([70, 95, 96, 94], True),  # the dip was before the span
    ([95, None, 94], False),  # a reading without a figure for the host
])
def test_cpu_load_must_hold_for_the_whole_duration(history, moves):
    now = time.time()
    snap = snapshot({"hot": ("h1", 1024, 60.0)}, cpu={"h1": 95.0}, read_at=now)
    balancing.bind(history=readings(now, *history))
    answer = balance(cpu_memory_even_distribution(), snap, {"CpuOverCommitDurationMinutes": "2"})
    assert (answer is not None) == moves, answer
    if not moves:
        text = explain.collected()
        assert "sustained" in text["hosts"]["h1"] or "sustained" in text["decision"]
