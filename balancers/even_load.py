"""Even-load balancer: make the cluster even, one cheap migration at a time.

Why a new unit rather than changing cpu_memory_even_distribution: that unit stays faithful
to the engine's OptimalForEvenDistribution (the same keys, the same thresholds), so a policy
that moves from the engine's balancer to it behaves the same.  Admins who want an *even*
cluster, not merely no host over a threshold, need a different rule, and that is this unit.

The rule, on the shared snapshot:

* The imbalance is max(Ic_mem, Ic_cpu): Ic is the population standard deviation over the
  mean of the Up hosts' used-memory fraction and CPU fraction (proxy/whatif.py's figures);
  a move is scored with the same accounting as whatif.apply_move, updated from running
  sums (no pass over every host per move).
* Sources are the most loaded hosts in memory and in CPU, targets the least loaded ones (a
  bounded set: only the sources' VMs are read, through snap.vms_on).  A VM fits a target
  when its memory is at most the target's max scheduling memory.
* A move's gain is hosts × (imbalance² before − after²): for one dimension, how much it
  shrinks the hosts' summed squared distance from the mean (in units of the mean²), which
  depends only on the two hosts it touches, not on how many hosts the cluster has nor on how
  uneven the rest is.  Moving 5 % of a host's memory between two hosts 10 points apart, at a
  mean of 50 %, gains 0.02.  Moves below minimum_gain thousandths are not worth a migration:
  the unit stops at diminishing returns.
* Cost-aware: among the moves that gain at least 70 % of the best gain (they fix the same
  problem about as well), the best gain per GiB moved wins (small, idle VMs first), and the
  reason says so.
* Affinity (proxy.affinity): a target that would break an enforcing rule is never offered; a
  VM with no allowed target is skipped.
* Memory of moves (proxy.balancing): a VM in its cooldown is not moved, no move is made
  once the budget is spent, and a VM is never sent back to a host it recently left.
* Hysteresis: when CPU is the larger imbalance, a source must have been a CPU hot spot
  (above the hosts' mean CPU) in every load reading of the last cpu_hot_minutes, and the
  readings must reach that far back.  Until then the unit evens memory only (gain on Ic_mem),
  with moves that do not raise max(Ic_mem, Ic_cpu).

The answer's one candidate is the chosen target: the gain was computed for that host.
"""

import math

from balancers import _common
from proxy import affinity, balancing, engine, explain, properties

DEFAULT_MINIMUM_GAIN = 20  # thousandths of hosts × Ic² (see the module docstring)
DEFAULT_HOT_MINUTES = 2  # the engine's CpuOverCommitDurationMinutes default
SOURCES_PER_DIMENSION = 8
TARGETS_PER_ORDER = 16
SAME_PROBLEM = 0.7  # moves within this share of the best gain are compared per GiB
GIB = 1024 * _common.MIB
_SLACK_SECONDS = 1.0  # readings a round apart are not exactly a minute apart

PARAMS = properties.Parameters(
    minimum_gain=properties.Whole(DEFAULT_MINIMUM_GAIN, unit="thousandths"),
    cpu_hot_minutes=properties.Whole(DEFAULT_HOT_MINUTES, unit="minutes"),
)


class Loads:
    """The Up hosts' memory and CPU fractions and their running sums: the imbalance now, and
    after one move, without a pass over every host."""

    def __init__(self, hosts):
        self.hosts = {h.id: h for h in hosts}
        self.mem = {h.id: (h.memory - h.free_memory) / h.memory for h in hosts
                    if h.memory and h.free_memory is not None}
        self.cpu = {h.id: h.cpu_usage / 100 for h in hosts if h.cpu_usage is not None}
        self.sums = {"mem": _sums(self.mem.values()), "cpu": _sums(self.cpu.values())}

    def imbalance(self):
        return max(_ic(*self.sums["mem"]), _ic(*self.sums["cpu"]))

    def ics(self):
        return _ic(*self.sums["mem"]), _ic(*self.sums["cpu"])

    def after(self, vm, source_id, target_id):
        """max(Ic_mem, Ic_cpu) once `vm` moved from source to target (whatif.apply_move's accounting)."""
        (_, mem, cpu), = self.after_many(vm, source_id, [target_id])
        return max(mem, cpu)

    def after_many(self, vm, source_id, target_ids):
        """[(target id, Ic_mem, Ic_cpu)] once `vm` moved from source to each target: the
        source's terms once, then two terms per target (the unit's inner loop, some
        thousands of times a call: the arithmetic of _plus and _ic is written out here,
        which keeps a call on 1,000 hosts to a few milliseconds)."""
        source, memory = self.hosts[source_id], vm.memory or 0
        load = 0.0 if vm.cpu_usage is None else vm.cpu_usage * (vm.vcpus or 1) / 100
        (nm, sm, qm), (nc, sc, qc) = self.sums["mem"], self.sums["cpu"]
        sm, qm = _replace(sm, qm, self.mem.get(source_id), lambda u: u - memory / source.memory)
        sc, qc = _replace(sc, qc, self.cpu.get(source_id),
                          lambda c: max(0.0, c - (load / source.cpu_threads if source.cpu_threads else 0.0)))
        hosts, mem, cpu, sqrt = self.hosts, self.mem, self.cpu, math.sqrt
        out = []
        for target_id in target_ids:
            target = hosts[target_id]
            s1, q1 = sm, qm
            u = mem.get(target_id)
            if u is not None:
                d = memory / target.memory
                new = u + d
                s1, q1 = sm + d, qm - u * u + new * new
            s2, q2 = sc, qc
            c = cpu.get(target_id)
            if c is not None and target.cpu_threads:
                d = load / target.cpu_threads
                new = c + d
                s2, q2 = sc + d, qc - c * c + new * new
            ic_mem = ic_cpu = 0.0
            if nm and s1 > 0:  # _ic's arithmetic, in its order (the tests compare them exactly)
                mean = s1 / nm
                ic_mem = sqrt(max(0.0, q1 / nm - mean * mean)) / mean
            if nc and s2 > 0:
                mean = s2 / nc
                ic_cpu = sqrt(max(0.0, q2 / nc - mean * mean)) / mean
            out.append((target_id, ic_mem, ic_cpu))
        return out


def _replace(s, q, old, change):
    """The sum and sum of squares with `old` replaced by change(old) (unchanged when unknown)."""
    if old is None:
        return s, q
    new = change(old)
    return s - old + new, q - old * old + new * new


def _plus(s, q, old, delta):
    new = old + delta
    return s + delta, q - old * old + new * new


def _sums(values):
    values = list(values)
    return len(values), math.fsum(values), math.fsum(v * v for v in values)


def _ic(n, s, q):
    if not n or s <= 0:
        return 0.0
    mean = s / n
    return math.sqrt(max(0.0, q / n - mean * mean)) / mean


def sustained_hot(host_ids, history, now, minutes):
    """The hosts above the mean CPU in every reading of the last `minutes`, the readings
    reaching back that far; all of them for 0 minutes (the current snapshot is the caller's)."""
    if minutes <= 0:
        return set(host_ids)
    since = now - minutes * 60
    window = [r for r in history if r.read_at >= since - _SLACK_SECONDS]
    if not window or min(r.read_at for r in window) > since + _SLACK_SECONDS:
        return set()  # the history does not cover the duration: nothing is sustained yet
    hot = set(host_ids)
    for reading in window:
        known = [v for v in reading.cpu_usage.values() if v is not None]
        mean = sum(known) / len(known) if known else 0.0
        hot = {h for h in hot if (reading.cpu_usage.get(h) or 0.0) > mean}
    return hot


def pick_hosts(loads):
    """(sources, targets): the most loaded hosts in memory and CPU, the least loaded in
    memory, CPU and both; ids in a fixed order."""
    def ranked(values, reverse):
        return [h for h, _ in sorted(values.items(), key=lambda kv: (kv[1], kv[0]), reverse=reverse)]
    both = {h: loads.mem.get(h, 0.0) + loads.cpu.get(h, 0.0) for h in loads.hosts}
    sources = _common.unique(ranked(loads.mem, True)[:SOURCES_PER_DIMENSION]
                             + ranked(loads.cpu, True)[:SOURCES_PER_DIMENSION])
    targets = _common.unique(ranked(loads.mem, False)[:TARGETS_PER_ORDER]
                             + ranked(loads.cpu, False)[:TARGETS_PER_ORDER]
                             + ranked(both, False)[:TARGETS_PER_ORDER])
    return sources, targets


def gain_on_both(loads):
    """gain(Ic_mem after, Ic_cpu after): hosts × (max(Ic_mem, Ic_cpu)² before − after)."""
    n, before = len(loads.hosts), loads.imbalance()
    return lambda mem, cpu: n * (before * before - max(mem, cpu) ** 2)


def gain_on_memory(loads):
    """gain(Ic_mem after, Ic_cpu after) on Ic_mem alone, for a move that does not raise
    max(Ic_mem, Ic_cpu) (None otherwise): what the unit does while CPU hot spots have not held."""
    n, (ic_mem, _), before = len(loads.hosts), loads.ics(), loads.imbalance()
    return lambda mem, cpu: n * (ic_mem * ic_mem - mem * mem) if max(mem, cpu) <= before else None


def scored_moves(snap, loads, sources, targets, blocked, gain_of):
    """[(gain, vm, target id)] of every feasible move from `sources` to `targets` whose
    gain_of(Ic_mem after, Ic_cpu after) is positive; `blocked(vm, target_id)` is True for a
    move the memory of moves forbids."""
    moves = []
    for source_id in sources:
        for vm in snap.vms_on(source_id):
            if not _common.is_up(vm) or not vm.memory:
                continue
            fits = [t for t in targets if t != source_id and (loads.hosts[t].max_scheduling_memory or 0) >= vm.memory
                    and not blocked(vm, t)]
            for target_id, mem, cpu in loads.after_many(vm, source_id, fits):
                gain = gain_of(mem, cpu)
                if gain is not None and gain > 0:
                    moves.append((gain, vm, target_id))
    return moves


def choose_move(snap, moves, minimum_gain, allowed=affinity.allowed):
    """(gain, vm, target id, best gain) of the cheapest move among those that fix the same
    problem, or None: the best allowed gain sets the bar (SAME_PROBLEM of it, and at least
    minimum_gain); above it, the most gain per GiB moved wins (ties: more gain, then VM id)."""
    checked = {}

    def ok(vm, target_id):
        key = (vm.id, target_id)
        if key not in checked:
            checked[key] = allowed(snap, vm, target_id)
        return checked[key]

    # Under the floor a move can neither win nor set the bar: leave it out before sorting.
    by_gain = sorted((m for m in moves if m[0] >= minimum_gain), key=lambda m: (-m[0], m[1].id, m[2]))
    best = next((m[0] for m in by_gain if ok(m[1], m[2])), None)
    if best is None or best < minimum_gain:
        return None
    bar = max(minimum_gain, best * SAME_PROBLEM)
    cheap = sorted((m for m in by_gain if m[0] >= bar), key=lambda m: (-m[0] / m[1].memory, -m[0], m[1].id))
    return next(((g, vm, t, best) for g, vm, t in cheap if ok(vm, t)), None)


def blocker(limits, recent):
    """blocked(vm, target_id): a cooling VM, or a VM going back to a host it recently left."""
    cooling = limits.cooling if limits.applies else frozenset()
    left = {}
    for move in recent:
        if move.source_id:
            left.setdefault(move.vm_id, set()).add(move.source_id)
    return lambda vm, target_id: vm.id in cooling or target_id in left.get(vm.id, ())


def decide(snap, host_ids, minimum_gain, hot_minutes, limits, recent, history):
    """(vm id, [target id]) or None, and the reason: the whole decision over plain inputs."""
    hosts = _common.up_hosts(snap, host_ids)
    if len(hosts) < 2:
        return None, "fewer than two Up hosts: nothing to even out"
    if limits.applies and limits.budget_left == 0:
        return None, (f"the migration budget is spent ({limits.max_migrations_per_hour} an hour, "
                      "balancing.max_migrations_per_hour)")
    loads = Loads(hosts)
    ic_mem, ic_cpu = loads.ics()
    sources, targets = pick_hosts(loads)
    blocked, floor, note = blocker(limits, recent), minimum_gain / 1000, ""
    if ic_cpu > ic_mem:
        # CPU is the larger imbalance: every move must act on CPU, so every source must hold.
        hot = sustained_hot(sources, history, snap.read_at, hot_minutes)
        n, total, _ = loads.sums["cpu"]
        held = [h for h in sources if h in hot and loads.cpu.get(h, 0.0) > total / n]
        chosen = choose_move(snap, scored_moves(snap, loads, held, targets, blocked, gain_on_both(loads)), floor)
        if chosen is None and len(held) < len(sources):
            note = (f"; {len(sources) - len(held)} source(s) not above the mean CPU now and through {hot_minutes} "
                    "min of load history (cpu_hot_minutes): evening memory only, without raising the CPU imbalance")
            chosen = choose_move(snap, scored_moves(snap, loads, sources, targets, blocked,
                                                    gain_on_memory(loads)), floor)
    else:
        chosen = choose_move(snap, scored_moves(snap, loads, sources, targets, blocked, gain_on_both(loads)), floor)
    figures = f"Ic_mem {ic_mem:.4f}, Ic_cpu {ic_cpu:.4f}"
    if chosen is None:
        return None, (f"{figures}: no allowed move gains {minimum_gain / 1000:.3f} (minimum_gain "
                      f"{minimum_gain} thousandths of hosts × Ic²) or more{note}")
    gain, vm, target_id, best = chosen
    source = snap.hosts[vm.host_id]
    return (vm.id, [target_id]), (
        f"{figures}: move {vm.name} ({vm.memory / GIB:.2f} GiB) from {source.name} to "
        f"{snap.hosts[target_id].name}, gain {gain:.3f} (best {best:.3f}): the best gain per GiB moved "
        f"among moves gaining at least {SAME_PROBLEM:.0%} of the best{note}")


class even_load:
    properties_validation = PARAMS.validation
    reuse_worker = True  # no state kept between calls: a worker may serve the next one

    def do_balance(self, hosts, args):
        """Evens out memory and CPU across the hosts: the migration that most reduces
        max(Ic_mem, Ic_cpu) per GiB moved, once it gains minimum_gain (20) thousandths;
        CPU hot spots must hold for cpu_hot_minutes (2); affinity, cooldown and budget kept."""
        params = PARAMS.parse(args)
        snap = engine.snapshot()
        decision, why = decide(snap, hosts or [], params.minimum_gain, params.cpu_hot_minutes,
                               balancing.limits(), balancing.recent_moves(), balancing.load_history())
        if decision:
            explain.reason(decision[1][0], "the target: the cheapest move among the best")
            explain.reason(snap.vms[decision[0]].host_id, "the source")
        explain.because(why)
        return decision
