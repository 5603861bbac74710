"""Even-load balancer: make the cluster even, one cheap migration at a time.

Why a new unit rather than changing cpu_memory_even_distribution: that unit stays faithful
to the engine's OptimalForEvenDistribution (the same keys, the same thresholds), so a policy
that moves from the engine's balancer to it behaves the same.  Admins who want an *even*
cluster, not merely no host over a threshold, need a different rule, and that is this unit.

The rule, on the shared snapshot:

* The imbalance is max(Ic_mem, Ic_cpu): Ic is the population standard deviation over the
  mean of the Up hosts' used-memory fraction and CPU fraction (proxy/whatif.py's figures);
  a move is scored with the same accounting as whatif.apply_move, from running sums (no
  pass over every host per move).
* Sources are the most loaded hosts in memory and in CPU, targets the least loaded ones (a
  bounded set: only the sources' VMs are read, through snap.vms_on).  A VM fits a target
  when its memory is at most the target's max scheduling memory.
* Not every (VM, target) pair is scored (on 1,000 hosts that took 30 ms a call): each VM
  gets a bound on what any target could gain with it (`_bounds` says how), VMs are scored
  from the highest bound down, and the search stops at the first whose bound is under
  SAME_PROBLEM of the best allowed gain found.  The bar only rises, so a move skipped could
  neither have won nor set the bar: the choice is the one scoring every pair would make.
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

import bisect
import math
import operator

from balancers import _common
from proxy import affinity, balancing, engine, explain, properties

DEFAULT_MINIMUM_GAIN = 20  # thousandths of hosts × Ic² (see the module docstring)
DEFAULT_HOT_MINUTES = 2  # the engine's CpuOverCommitDurationMinutes default
SOURCES_PER_DIMENSION = 8
TARGETS_PER_ORDER = 16
SAME_PROBLEM = 0.7  # moves within this share of the best gain are compared per GiB
GIB = 1024 * _common.MIB
_SLACK_SECONDS = 1.0  # readings a round apart are not exactly a minute apart
# Rounding must not decide a comparison that is a tie in exact arithmetic: a move gaining
# exactly 70 % of the best is compared per GiB, a move leaving CPU as it was (an idle VM)
# does not raise the imbalance, and a bound is trusted only up to its last bits.  A sum of
# fractions under _TINY counts as 0 (Ic 0): its square would underflow (1e-306 % CPU).
_SHARE, _NO_RAISE, _BOUND_SLACK, _TINY = SAME_PROBLEM * (1 - 1e-9), 1e-12, 1e-9, 1e-150

PARAMS = properties.Parameters(
    minimum_gain=properties.Whole(DEFAULT_MINIMUM_GAIN, unit="thousandths"),
    cpu_hot_minutes=properties.Whole(DEFAULT_HOT_MINUTES, unit="minutes"),
)


class Loads:
    """The Up hosts' memory and CPU fractions (and their sum, which targets are also ranked
    by) and the fractions' running sums: the imbalance now, and (best_move) after a move."""

    def __init__(self, hosts):
        # One pass: on 1,000 hosts, a comprehension per figure cost as much as the search.
        self.hosts, self.mem, self.cpu, self.both = by_id, mem, cpu, both = {}, {}, {}, {}
        for h in hosts:
            host_id, memory, free, usage = h.id, h.memory, h.free_memory, h.cpu_usage
            by_id[host_id] = h
            m = c = 0.0
            if memory and free is not None:
                mem[host_id] = m = (memory - free) / memory
            if usage is not None:
                cpu[host_id] = c = usage / 100
            both[host_id] = m + c  # an unknown figure counts as 0
        self.sums = {"mem": _sums(mem.values()), "cpu": _sums(cpu.values())}

    def imbalance(self):
        return max(self.ics())

    def ics(self):
        return _ic(*self.sums["mem"]), _ic(*self.sums["cpu"])


def _sums(values):
    values = list(values)
    return len(values), math.fsum(values), math.fsum(map(operator.mul, values, values))


def _ic(n, s, q):
    if not n or s <= 0:
        return 0.0
    mean = s / n
    return math.sqrt(max(0.0, q / n - mean * mean)) / mean


def _spread(n, s, q):
    """Ic² + 1 = n·Q/S² from the sums (at least 1; Ic is 0 for no values or a sum of 0)."""
    if not n or s <= _TINY:
        return 1.0
    x = n * q / (s * s)
    return x if x > 1.0 else 1.0


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
    memory, CPU and both; ids in a fixed order (by load, then id)."""
    (mem_low, mem_high), (cpu_low, cpu_high) = (_ends(values, TARGETS_PER_ORDER, SOURCES_PER_DIMENSION)
                                                for values in (loads.mem, loads.cpu))
    sources = _common.unique(mem_high + cpu_high)
    targets = _common.unique(mem_low + cpu_low + _ends(loads.both, TARGETS_PER_ORDER, 0)[0])
    return sources, targets


def _ends(values, low, high):
    """(the ids of the `low` lowest, the ids of the `high` highest) of {id: value}, each
    ranked by (value, id), lowest or highest first."""
    if not values:
        return [], []
    # The cut at each end from a sort of plain floats, then one pass collecting the (value,
    # id) pairs up to it: ranking all 1,000 hosts' pairs cost a millisecond a call.
    ordered = sorted(values.values())
    at_most = ordered[min(low, len(ordered)) - 1] if low else -math.inf
    at_least = ordered[max(0, len(ordered) - high)] if high else math.inf
    lowest, highest = [], []
    for h, v in values.items():
        if v <= at_most:
            lowest.append((v, h))
        if v >= at_least:
            highest.append((v, h))
    lowest.sort()
    highest.sort(reverse=True)
    return [h for _, h in lowest[:low]], [h for _, h in highest[:high]]


class Blocked:
    """What the memory of moves forbids: a cooling VM (`cooling`, VM ids), or a VM going back
    to a host it recently left (`left`, {VM id: host ids})."""

    def __init__(self, cooling, left):
        self.cooling, self.left = cooling, left


def blocker(limits, recent):
    """The Blocked of this call's limits and recent moves."""
    left = {}
    for move in recent:
        if move.source_id:
            left.setdefault(move.vm_id, set()).add(move.source_id)
    return Blocked(limits.cooling if limits.applies else frozenset(), left)


class _Figures:
    """One dimension's running sums: n, S = Σx and Q = Σx² over the hosts' fractions, and the
    figures the targets' lines are drawn at (`_bounds`): ρ = Q/S and F = Q/S²."""

    def __init__(self, n, s, q):
        self.n, self.s, self.q = n, s, q
        self.rho, self.f = (q / s, q / (s * s)) if s > _TINY else (0.0, 0.0)

    def line(self, w, x):
        """(slope, intercept) of a target at fraction x taking w per unit moved."""
        return (1 - self.f) * w * w, 2 * w * (x - self.rho)


def _envelope(lines):
    """(lines, breakpoints): the lines (slope, intercept) that are the lowest somewhere, by
    falling slope; line i is the lowest for a in [breakpoints[i - 1], breakpoints[i])."""
    hull = []
    for q, p in sorted(set(lines), key=lambda line: (-line[0], line[1])):
        if hull and hull[-1][0] == q:
            continue  # the same slope and a higher intercept: never the lowest
        while len(hull) >= 2:
            (q1, p1), (q2, p2) = hull[-2], hull[-1]
            if (p - p1) * (q1 - q2) > (p2 - p1) * (q1 - q):
                break
            hull.pop()  # the new line is lower wherever the last one was the lowest
        hull.append((q, p))
    return hull, [(p2 - p1) / (q1 - q2) for (q1, p1), (q2, p2) in zip(hull, hull[1:])]


def _targets(loads, target_ids, mem, cpu):
    """(rows, memory envelope, CPU envelope): per target the floats the scoring loop reads
    (id, max scheduling memory, 1/memory, 2 × memory fraction, 1/threads, 2 × CPU fraction;
    0 for an unknown figure, which a move then leaves as it is), and each dimension's
    envelope of lines with the largest w among the targets."""
    rows, lines_m, lines_c, wide_m, wide_c = [], [], [], 0.0, 0.0
    for target_id in target_ids:
        target = loads.hosts[target_id]
        u, c = loads.mem.get(target_id), loads.cpu.get(target_id)
        w = 1 / target.memory if u is not None else 0.0
        k = 1 / target.cpu_threads if c is not None and target.cpu_threads else 0.0
        u, c = u or 0.0, c or 0.0
        rows.append((target_id, target.max_scheduling_memory or 0, w, 2 * u, k, 2 * c))
        lines_m.append(mem.line(w, u))
        lines_c.append(cpu.line(k, c))
        wide_m, wide_c = max(wide_m, w), max(wide_c, k)
    return rows, (*_envelope(lines_m), wide_m), (*_envelope(lines_c), wide_c)


def _leaving(snap, loads, source_ids, cooling):
    """[(vm, memory, CPU load, source id, S_mem, Q_mem, S_cpu, Q_cpu)]: the sources' VMs a
    move may take, with each dimension's sums once the VM left its source (whatif's
    accounting: CPU goes as usage × vCPUs over the source's threads, at most all it has)."""
    (_, sm, qm), (_, sc, qc) = loads.sums["mem"], loads.sums["cpu"]
    out, up = [], _common.is_up
    for source_id in source_ids:
        source = loads.hosts[source_id]
        u, c = loads.mem.get(source_id), loads.cpu.get(source_id)
        ws = 1 / source.memory if u is not None else 0.0
        ks = 1 / source.cpu_threads if c is not None and source.cpu_threads else 0.0
        for vm in snap.vms_on(source_id):
            memory, usage = vm.memory, vm.cpu_usage
            if not memory or vm.status != "up" and not up(vm) or cooling and vm.id in cooling:
                continue
            load = 0.0 if usage is None else usage * (vm.vcpus or 1) / 100
            s1, q1, s2, q2 = sm, qm, sc, qc
            if u is not None:
                a = memory * ws
                s1, q1 = sm - a, qm + a * (a - 2 * u)
            if c is not None:
                rest = c - load * ks
                a = c - rest if rest > 0.0 else c
                if a:  # an idle VM leaves the sums as they are, to the last bit
                    s2, q2 = sc - a, qc + a * (a - 2 * c)
            out.append((vm, memory, load, source_id, s1, q1, s2, q2))
    return out


def _bounds(leaving, mem, cpu, envelopes, top, n, on_memory):
    """[(bound, index into leaving)], highest first: no move of the VM gains more.

    Per dimension, x = Ic² + 1 = n·Q/S².  A VM that left its source (sums S, Q) and adds
    β = a·w to a target at fraction f (a its memory or CPU load, w one over the target's
    memory or threads) makes
        Q'/S'² − Q/S² = β·(2·(f − Q/S) + β·(1 − Q/S²)) / (S + β)²
                      ≥ min(0, a·(2w·(f − ρ) + a·w²·(1 − F))) / S²   for ρ ≥ Q/S, F ≥ Q/S².
    At the cluster's ρ and F before any move the bracket is one line in a per target
    (_Figures.line); where the VM's leaving raised Q/S or Q/S², the lowest line at a, less
    2·W·(that rise of ρ) + a·W²·(that rise of F) (W: the targets' largest w), is under every
    target's bracket.  So it bounds the targets' x in that dimension, the larger dimension's
    bound bounds the figure after the move, and n·(top − it) bounds the gain.
    """
    envelope_m, envelope_c = envelopes
    out = []
    for i, (_, memory, load, _, s1, q1, s2, q2) in enumerate(leaving):
        lower = 1.0
        if s1 > _TINY:
            lower = max(lower, _lowest(envelope_m, mem, memory, s1, q1))
        # CPU bounds nothing when it cannot be the larger figure after the move.
        if s2 > _TINY and not on_memory and load >= 0 and cpu.n * q2 / (s2 * s2) > lower:
            lower = max(lower, _lowest(envelope_c, cpu, load, s2, q2))
        bound = n * (top - lower)
        out.append((bound + abs(bound) * _BOUND_SLACK + _BOUND_SLACK, i))
    out.sort(reverse=True)
    return out


def _lowest(envelope, figures, a, s, q):
    """The lowest n·x one dimension can reach when the VM (a: its memory or load there) has
    left its source (sums s, q) and joined any target (_bounds says why)."""
    hull, breaks, wide = envelope
    f = q / (s * s)
    slope, cut = hull[bisect.bisect_right(breaks, a)]
    low = cut + slope * a
    if f > figures.f:
        low -= wide * wide * a * (f - figures.f)
    if q > figures.rho * s:
        low -= 2 * wide * (q / s - figures.rho)
    return figures.n * (f + a * low / (s * s) if low < 0 else f)


def best_move(snap, loads, sources, targets, blocked, on_memory, floor, allowed=affinity.allowed):
    """(gain, vm, target id, best gain) of the cheapest move among those that fix the same
    problem, or None: the best allowed gain sets the bar (SAME_PROBLEM of it, and at least
    `floor`); above it, the most gain per GiB moved wins (ties: more gain, then VM id, then
    target id).  A move's gain is hosts × (max(Ic_mem, Ic_cpu)² before − after); on_memory:
    hosts × (Ic_mem² before − after), for a move that does not raise max(Ic_mem, Ic_cpu)."""
    if not sources or not targets:
        return None
    mem, cpu = _Figures(*loads.sums["mem"]), _Figures(*loads.sums["cpu"])
    xm, xc = _spread(mem.n, mem.s, mem.q), _spread(cpu.n, cpu.s, cpu.q)
    top, n = xm if on_memory else max(xm, xc), len(loads.hosts)
    rows, *envelopes = _targets(loads, targets, mem, cpu)
    leaving = _leaving(snap, loads, sources, blocked.cooling)
    checked = {}

    def ok(vm, target_id):
        key = (vm.id, target_id)
        if key not in checked:
            checked[key] = allowed(snap, vm, target_id)
        return checked[key]

    found, best = _scored(leaving, _bounds(leaving, mem, cpu, envelopes, top, n, on_memory), rows, blocked.left,
                          (mem.n, cpu.n, n, top, max(xm, xc) * (1 + _NO_RAISE), on_memory), floor, ok)
    if best is None:
        return None
    bar = max(floor, best * _SHARE)
    cheap = [m for m in found if -m[1] >= bar]
    while True:
        move = min(cheap)  # the most gain per byte; ties: more gain, the lower VM id, target id
        if ok(move[4], move[3]):
            return -move[1], move[4], move[3], best
        cheap.remove(move)


def _scored(leaving, bounds, rows, left, figures, floor, ok):
    """(moves, the best allowed gain or None): the VMs scored from the highest bound down,
    as long as a bound reaches the bar; moves (-gain per byte, -gain, VM id, target id, VM)
    that reached the bar when scored, which include every one that reaches the final bar."""
    nm, nc, n, top, limit, on_memory = figures
    found, best, bar, tiny = [], None, floor, _TINY
    for bound, i in bounds:
        if bound < bar or bound <= 0:
            break  # neither this VM nor any after it has a move that could win or set the bar
        vm, memory, load, source_id, s1, q1, s2, q2 = leaving[i]
        back = left.get(vm.id)
        for target_id, room, w, u2, k, c2 in rows:
            if room < memory or target_id == source_id or back and target_id in back:
                continue
            d = memory * w
            s = s1 + d
            xm = nm * (q1 + d * (u2 + d)) / (s * s) if s > tiny else 1.0
            d = load * k
            s = s2 + d
            xc = nc * (q2 + d * (c2 + d)) / (s * s) if s > tiny else 1.0
            if on_memory:
                if xm > limit or xc > limit:
                    continue  # it would raise max(Ic_mem, Ic_cpu)
                x = xm
            else:
                x = xm if xm > xc else xc
            gain = n * (top - (x if x > 1.0 else 1.0))
            if gain >= bar and gain > 0:
                found.append((-gain / memory, -gain, vm.id, target_id, vm))
                if (best is None or gain > best) and ok(vm, target_id):
                    best = gain
                    bar = max(floor, best * _SHARE)
    return found, best


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
        chosen = best_move(snap, loads, held, targets, blocked, False, floor)
        if chosen is None and len(held) < len(sources):
            note = (f"; {len(sources) - len(held)} source(s) not above the mean CPU now and through {hot_minutes} "
                    "min of load history (cpu_hot_minutes): evening memory only, without raising the CPU imbalance")
            chosen = best_move(snap, loads, sources, targets, blocked, True, floor)
    else:
        chosen = best_move(snap, loads, sources, targets, blocked, False, floor)
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
