"""CPU and memory balancer that can stand beside the engine's OptimalForEvenDistribution.

It takes the engine unit's parameter names, regexes and defaults (docs/ENGINE_PROTOCOL.md §6), so
one set of cluster properties drives both, and follows its rules on one snapshot, with
hysteresis, a minimum gain, affinity and the proxy's cooldown and budget on top:

* CPU sources: hosts at or above HighUtilization % CPU that run at least one VM, most
  loaded first, whose load is *sustained*: at or above HighUtilization in the current
  snapshot and in every earlier reading of the last CpuOverCommitDurationMinutes
  (balancing.load_history(); the reading taken at or just before the start of that span
  included).  With no reading that old yet, the load is not sustained: the engine counts
  one reading as sustained, which moves VMs on a spike.  CPU destinations: hosts below the
  low mark min(80 % of High, High − 10), least loaded first.
* Memory sources (tried only when no CPU move is possible): hosts whose max scheduling
  memory is below MaxFreeMemoryForOverUtilized MB and that run more than one VM, least free
  first.  Memory destinations: hosts with more than MinFreeMemoryForUnderUtilized MB, most
  free first.  With neither key set (the engine's defaults of 0) there are no memory sources.
* A destination is valid for a VM when its CPU plus the VM's predicted load
  (usage % × vCPUs / host threads) stays at or below HighUtilization, its max scheduling
  memory minus the VM's memory stays above MaxFreeMemoryForOverUtilized, no enforcing
  affinity rule forbids it (proxy/affinity.py) and the VM did not leave it within the
  cooldown.  A CPU move must also gain: it lowers the CPU difference between source and
  destination by at least MinimumCpuGain percentage points (default 5; 0 lets any move
  that does not widen it through, the engine's way), so idle VMs are not moved for CPU.
  A memory move must lower Ic_mem, the spread of used memory (σ/μ, proxy/whatif.py).
* Which VM of a source (cost-aware: the least migrated for the problem solved): one whose
  move mends an enforcing affinity rule it breaks now; else the cheapest VM (least memory,
  then least CPU load, then lowest id) whose move alone takes the source under
  HighUtilization (CPU) or over MaxFreeMemoryForOverUtilized (memory); else, for CPU, the
  best CPU gain per GiB moved, for memory the cheapest VM.  VMs cooling down
  (balancing.cooldown_minutes) are not moved; with the hour's budget used up nothing is.
* The answer lists the VM's valid destinations, then the source host, as the engine's own
  balancers do, so "stay" can win the engine's scoring.

Where a snapshot differs from the engine's own view:
* The SPM's CPU allowance and VCpuToPhysicalCpuRatio are not applied (the REST data used
  here says neither which host is SPM nor how vCPUs are pinned).
* The engine skips VMs that cannot migrate; a VM's migration settings are not fetched here,
  so the engine's own validation rejects such a VM and the pass moves nothing.
* A host with unknown CPU usage is neither a source nor a destination; a VM with unknown
  CPU usage counts as idle (it adds no predicted load and gains nothing).
"""

from balancers import _common
from proxy import balancing, explain, properties

DEFAULT_HIGH = 80
DEFAULT_DURATION_MINUTES = 2
DEFAULT_GAIN = 5  # percentage points of source−destination CPU difference a move must remove
# The engine's defaults for these keys are 0: no memory sources, every host a memory target.
DEFAULT_MAX_FREE_MB = 0
DEFAULT_MIN_FREE_MB = 0
# Engine configuration defaults behind its low mark (UtilizationThresholdInPercent,
# VcpuConsumptionPercentage).
_UTILIZATION_THRESHOLD_PERCENT = 80
_VCPU_CONSUMPTION_PERCENT = 10

PARAMS = properties.Parameters(
    HighUtilization=properties.Whole(DEFAULT_HIGH, unit="%", minimum=50, maximum=99),
    CpuOverCommitDurationMinutes=properties.Whole(DEFAULT_DURATION_MINUTES, unit="minutes", minimum=1),
    MaxFreeMemoryForOverUtilized=properties.Whole(DEFAULT_MAX_FREE_MB, unit="MB", minimum=1),
    MinFreeMemoryForUnderUtilized=properties.Whole(DEFAULT_MIN_FREE_MB, unit="MB", minimum=1),
    MinimumCpuGain=properties.Whole(DEFAULT_GAIN, unit="percentage points", minimum=0, maximum=99),
)

vm_load = _common.vm_load


def low_mark(high):
    return min(_UTILIZATION_THRESHOLD_PERCENT * high / 100, high - _VCPU_CONSUMPTION_PERCENT)


def _cpu_known(h):
    return h.cpu_usage is not None


def _share(vm, host):
    return vm_load(vm) / max(host.cpu_threads or 1, 1)


def _fits(vm, dest, high, max_free):
    if dest.cpu_usage is None or dest.max_scheduling_memory is None or vm.memory is None:
        return False
    return (dest.cpu_usage + _share(vm, dest) <= high
            and dest.max_scheduling_memory - vm.memory > max_free)


def cpu_gain(vm, source, dest):
    """Percentage points by which moving `vm` narrows the CPU gap between source and dest."""
    before = source.cpu_usage - dest.cpu_usage
    after = abs((source.cpu_usage - _share(vm, source)) - (dest.cpu_usage + _share(vm, dest)))
    return before - after


def sources(hosts, high=DEFAULT_HIGH, max_free=0, sustained=None):
    """(CPU sources, memory sources) among `hosts`, each in the order they are tried.
    sustained: the ids of hosts whose load held (None: the current reading alone counts)."""
    cpu = sorted((h for h in hosts
                  if _cpu_known(h) and h.cpu_usage >= high and (h.active_vms or 0) >= 1
                  and (sustained is None or h.id in sustained)),
                 key=lambda h: -h.cpu_usage)
    memory = sorted((h for h in hosts if h.max_scheduling_memory is not None
                     and h.max_scheduling_memory < max_free and (h.active_vms or 0) > 1),
                    key=lambda h: h.max_scheduling_memory)
    return cpu, memory


def choose(hosts, vms, high=DEFAULT_HIGH, max_free=0, min_free=0, *, gain=DEFAULT_GAIN,
           sustained=None, moves=None):
    """`(vm_id, [host ids, …, source id])` or None.

    hosts: objects with id, cpu_usage (% or None), cpu_threads, max_scheduling_memory,
    memory and free_memory (bytes), active_vms; vms: id, host_id, status, memory (bytes),
    cpu_usage (%), vcpus.  high and gain in percent; max_free and min_free in bytes;
    sustained and moves as for `decide`.  Ties keep the order hosts were given.
    """
    found = decide(hosts, vms, high, max_free, min_free, gain=gain, sustained=sustained, moves=moves)
    return (found[1].id, [h.id for h in found[2]] + [found[0].id]) if found else None


def decide(hosts, vms, high=DEFAULT_HIGH, max_free=0, min_free=0, *, gain=DEFAULT_GAIN,
           sustained=None, moves=None):
    """(source, VM, destinations, why) or None.  sustained: ids of hosts whose CPU load held
    (None: every host's current reading counts); moves: a _common.Moves (None: no limits)."""
    hosts = _common.unique(hosts, key=lambda h: h.id)
    if len(hosts) < 2:
        return None
    moves = moves or _common.Moves(None)
    by_host = _common.by_host(vms)
    cpu_sources, mem_sources = sources(hosts, high, max_free, sustained)
    cpu_targets = sorted((h for h in hosts if _cpu_known(h) and h.cpu_usage < low_mark(high)),
                         key=lambda h: h.cpu_usage)
    for source in cpu_sources:
        def valid(vm, d, source=source):
            return _fits(vm, d, high, max_free) and cpu_gain(vm, source, d) >= gain
        found = _pick_cpu(source, _movable(source, by_host, moves), _destinations(cpu_targets, valid, moves),
                          high, moves)
        if found:
            return (source, *found)
    mem_targets = sorted((h for h in hosts if h.max_scheduling_memory is not None
                          and h.max_scheduling_memory > min_free),
                         key=lambda h: -h.max_scheduling_memory)
    spread = _common.MemorySpread(hosts)
    for source in mem_sources:
        def valid(vm, d, source=source):
            return _fits(vm, d, high, max_free) and spread.lowers(source, d, vm.memory)
        found = _pick_memory(source, _movable(source, by_host, moves), _destinations(mem_targets, valid, moves),
                             max_free, moves)
        if found:
            return (source, *found)
    return None


def _movable(source, by_host, moves):
    """The source's running VMs that may move now, cheapest first."""
    return [vm for vm in sorted(by_host.get(source.id, []), key=_common.cost_key) if moves.may_move(vm)]


def _destinations(targets, valid, moves):
    """destinations(vm): the targets valid for it that affinity and the cooldown allow (once per VM)."""
    def destinations(vm):
        fit = [d for d in targets if d.id != vm.host_id and valid(vm, d)]
        ok = moves.targets(vm, fit)
        if not ok:
            moves.note_no_target(vm, fit)
        return ok
    return _common.cached(destinations)


def _pick_cpu(source, vms, destinations, high, moves):
    found = moves.mending(vms, destinations) or _common.first_with(
        [vm for vm in vms if source.cpu_usage - _share(vm, source) < high], destinations,
        f"the cheapest VM whose move alone takes the host under {high}% CPU")
    if found:
        return found
    options = [(vm, destinations(vm)) for vm in vms]
    options = [(vm, ok) for vm, ok in options if ok]
    if not options:
        return None
    vm, ok = max(options, key=lambda o: cpu_gain(o[0], source, o[1][0]) / _gib(o[0]))
    return vm, ok, "no single VM takes the host under the mark: the best CPU gain per GiB moved"


def _pick_memory(source, vms, destinations, max_free, moves):
    return (moves.mending(vms, destinations)
            or _common.first_with([vm for vm in vms if source.max_scheduling_memory + vm.memory >= max_free],
                                  destinations, "the cheapest VM whose move alone lifts the host's free "
                                  "memory over the mark")
            or _common.first_with(vms, destinations, "no single VM lifts the host: the cheapest VM that fits"))


def _gib(vm):
    return max(vm.memory or 0, _common.MIB) / (1024 * _common.MIB)


def sustained_hosts(hosts, high, minutes, now, readings):
    """(ids of the hosts whose CPU stayed at or above `high` over the last `minutes`, a note
    when the history is too short).  The current figures count as one more reading."""
    start = now - minutes * 60
    readings = sorted((r for r in readings if r.read_at <= now), key=lambda r: r.read_at)
    before = [r for r in readings if r.read_at <= start]
    if not before:
        span = now - readings[0].read_at if readings else 0
        return set(), (f"the load history covers {span:.0f} s, less than CpuOverCommitDurationMinutes "
                       f"({minutes} min): no load counts as sustained yet")
    window = [before[-1]] + [r for r in readings if r.read_at > start]
    held = {h.id for h in hosts if _cpu_known(h) and h.cpu_usage >= high and all(
        r.cpu_usage.get(h.id) is not None and r.cpu_usage[h.id] >= high for r in window)}
    return held, ""


class cpu_memory_even_distribution:
    properties_validation = PARAMS.validation
    reuse_worker = True  # no state kept between calls: a worker may serve the next one

    def do_balance(self, hosts, args):
        """Evens out CPU load sustained over HighUtilization % for CpuOverCommitDurationMinutes,
        then memory (MaxFreeMemoryForOverUtilized, MinFreeMemoryForUnderUtilized MB): moves the
        cheapest VM that gains at least MinimumCpuGain points, keeping the source a candidate."""
        params = PARAMS.parse(args)
        high, gain = params.HighUtilization, params.MinimumCpuGain
        max_free = params.MaxFreeMemoryForOverUtilized * _common.MIB
        min_free = params.MinFreeMemoryForUnderUtilized * _common.MIB
        if len(set(hosts or ())) < 2:
            return None
        snap, found, moves = _common.balance_inputs(hosts)
        held, short = sustained_hosts(found, high, params.CpuOverCommitDurationMinutes, snap.read_at,
                                      balancing.load_history())
        cpu_sources, mem_sources = sources(found, high, max_free, held)
        if (cpu_sources or mem_sources) and moves.budget_spent():
            return None
        # Only the sources' VMs can move: looking at every VM would grow with the engine.
        decision = decide(found, _common.RunningOn(snap), high, max_free,
                          min_free, gain=gain, sustained=held, moves=moves) if cpu_sources or mem_sources else None
        _explain(found, (cpu_sources, mem_sources), held, decision, (high, short), moves)
        return (decision[1].id, [h.id for h in decision[2]] + [decision[0].id]) if decision else None


def _explain(hosts, found_sources, held, decision, marks, moves):
    cpu_sources, mem_sources = found_sources
    cpu_ids, mem_ids = {h.id for h in cpu_sources}, {h.id for h in mem_sources}
    high, short = marks
    for h in hosts:
        role = (" (CPU source)" if h.id in cpu_ids else
                f" (at or over {high}% but not sustained)" if _cpu_known(h) and h.cpu_usage >= high
                and h.id not in held else "")
        moves.reason(h.id, f"CPU {h.cpu_usage}%{role}" + (" (memory source)" if h.id in mem_ids else ""))
    if not cpu_sources and not mem_sources:
        explain.because(f"no host at or above {high}% CPU (HighUtilization) for CpuOverCommitDurationMinutes "
                        "running a VM, nor short of memory (MaxFreeMemoryForOverUtilized)"
                        + (f"; {short}" if short else ""))
    elif decision is None:
        explain.because(f"{len(cpu_sources)} CPU and {len(mem_sources)} memory source(s); no VM of theirs "
                        "fits a destination with enough gain and allowed by affinity" + moves.summary())
    else:
        source, vm, targets, why = decision
        explain.because(f"{len(cpu_sources)} CPU and {len(mem_sources)} memory source(s): move {vm.name} "
                        f"off {source.name}, {why}, to {len(targets)} host(s); {source.name} stays a "
                        "candidate" + moves.summary())
