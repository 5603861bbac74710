"""CPU and memory balancer that can stand beside the engine's OptimalForEvenDistribution.

It takes the engine unit's parameter names, regexes and defaults (docs/ENGINE_PROTOCOL.md §6), so
one set of cluster properties drives both, and follows its rules on one snapshot:

* CPU sources: hosts at or above HighUtilization % CPU that run at least one VM, most
  loaded first.  CPU destinations: hosts below the low mark min(80 % of High, High − 10),
  least loaded first.
* Memory sources (tried only when no CPU move is possible): hosts whose max scheduling
  memory is below MaxFreeMemoryForOverUtilized MB and that run more than one VM, least free
  first.  Memory destinations: hosts with more than MinFreeMemoryForUnderUtilized MB, most
  free first.  With neither key set (the engine's defaults of 0) there are no memory sources.
* From each source, in order, its running VMs by CPU load (usage % × vCPUs), least loaded
  first; a destination is valid for a VM when its CPU plus the VM's predicted load
  (usage % × vCPUs / host threads) stays at or below HighUtilization and its max scheduling
  memory minus the VM's memory stays above MaxFreeMemoryForOverUtilized.
* The first VM with a valid destination is the answer, with the source host appended to
  the candidates as the engine's own balancers do, so "stay" can win the engine's scoring.

Where a snapshot differs from the engine's own view:
* CpuOverCommitDurationMinutes is accepted and validated, but there is no CPU history in a
  snapshot: a reading over the threshold counts as sustained.
* The SPM's CPU allowance and VCpuToPhysicalCpuRatio are not applied (the REST data used
  here says neither which host is SPM nor how vCPUs are pinned).
* The engine skips VMs that cannot migrate; a VM's migration settings are not fetched here,
  so the engine's own validation rejects such a VM and the pass moves nothing.
* A host with unknown CPU usage is neither a source nor a destination; a VM with unknown
  CPU usage counts as idle (it ranks first and adds no predicted load).
"""

from balancers import _common
from proxy import engine, explain, properties

DEFAULT_HIGH = 80
DEFAULT_DURATION_MINUTES = 2
# The engine's defaults for these keys are 0: no memory sources, every host a memory target.
DEFAULT_MAX_FREE_MB = 0
DEFAULT_MIN_FREE_MB = 0
# Engine configuration defaults behind its low mark (UtilizationThresholdInPercent,
# VcpuConsumptionPercentage).
_UTILIZATION_THRESHOLD_PERCENT = 80
_VCPU_CONSUMPTION_PERCENT = 10

PARAMS = properties.Parameters(
    HighUtilization=properties.Whole(DEFAULT_HIGH, unit="%", minimum=50, maximum=99),
    # Validated so a typo is reported, but unused: see the module docstring.
    CpuOverCommitDurationMinutes=properties.Whole(DEFAULT_DURATION_MINUTES, unit="minutes", minimum=1),
    MaxFreeMemoryForOverUtilized=properties.Whole(DEFAULT_MAX_FREE_MB, unit="MB", minimum=1),
    MinFreeMemoryForUnderUtilized=properties.Whole(DEFAULT_MIN_FREE_MB, unit="MB", minimum=1),
)


def low_mark(high):
    return min(_UTILIZATION_THRESHOLD_PERCENT * high / 100, high - _VCPU_CONSUMPTION_PERCENT)


def vm_load(vm):
    """The VM's CPU use in percent of one host CPU: usage % × vCPUs (unknown counts as idle)."""
    return (vm.cpu_usage or 0) * (vm.vcpus or 1)


def _cpu_known(h):
    return h.cpu_usage is not None


def _fits(vm, dest, high, max_free):
    if dest.cpu_usage is None or dest.max_scheduling_memory is None or vm.memory is None:
        return False
    predicted = vm_load(vm) / max(dest.cpu_threads or 1, 1)
    return (dest.cpu_usage + predicted <= high
            and dest.max_scheduling_memory - vm.memory > max_free)


def _first_move(sources, destinations, vms_by_host, high, max_free):
    for source in sources:
        for vm in sorted(vms_by_host.get(source.id, []), key=lambda v: (vm_load(v), v.id)):
            valid = [d.id for d in destinations if d.id != source.id and _fits(vm, d, high, max_free)]
            if valid:
                return vm.id, valid + [source.id]
    return None


def sources(hosts, high=DEFAULT_HIGH, max_free=0):
    """(CPU sources, memory sources) among `hosts`, each in the order they are tried."""
    cpu = sorted((h for h in hosts
                  if _cpu_known(h) and h.cpu_usage >= high and (h.active_vms or 0) >= 1),
                 key=lambda h: -h.cpu_usage)
    memory = sorted((h for h in hosts if h.max_scheduling_memory is not None
                     and h.max_scheduling_memory < max_free and (h.active_vms or 0) > 1),
                    key=lambda h: h.max_scheduling_memory)
    return cpu, memory


def choose(hosts, vms, high=DEFAULT_HIGH, max_free=0, min_free=0):
    """`(vm_id, [host ids, …, source id])` or None.

    hosts: objects with id, cpu_usage (% or None), cpu_threads, max_scheduling_memory
    (bytes), active_vms; vms: id, host_id, status, memory (bytes), cpu_usage (%), vcpus.
    high in percent; max_free and min_free in bytes.  Ties keep the order hosts were given.
    """
    hosts = _common.unique(hosts, key=lambda h: h.id)
    if len(hosts) < 2:
        return None
    by_host = _common.running_vms_by_host(vms)
    cpu_sources, mem_sources = sources(hosts, high, max_free)
    cpu_targets = sorted((h for h in hosts if _cpu_known(h) and h.cpu_usage < low_mark(high)),
                         key=lambda h: h.cpu_usage)
    move = _first_move(cpu_sources, cpu_targets, by_host, high, max_free)
    if move:
        return move
    mem_targets = sorted((h for h in hosts if h.max_scheduling_memory is not None
                          and h.max_scheduling_memory > min_free),
                         key=lambda h: -h.max_scheduling_memory)
    return _first_move(mem_sources, mem_targets, by_host, high, max_free)


class cpu_memory_even_distribution:
    properties_validation = PARAMS.validation

    def do_balance(self, hosts, args):
        """Evens out CPU load (HighUtilization %), then memory (MaxFreeMemoryForOverUtilized,
        MinFreeMemoryForUnderUtilized MB) like OptimalForEvenDistribution: moves the least
        CPU-loaded VM off the busiest host, keeping that host a candidate."""
        params = PARAMS.parse(args)
        high = params.HighUtilization
        max_free = params.MaxFreeMemoryForOverUtilized * _common.MIB
        min_free = params.MinFreeMemoryForUnderUtilized * _common.MIB
        if len(set(hosts or ())) < 2:
            return None
        snap = engine.snapshot()
        found = [h for h in _common.hosts_of(snap, hosts) if _common.is_up(h)]
        cpu_sources, mem_sources = sources(found, high, max_free)
        for h in found:
            explain.reason(h.id, f"CPU {h.cpu_usage}%" + (" (CPU source)" if h in cpu_sources else "")
                           + (" (memory source)" if h in mem_sources else ""))
        if not cpu_sources and not mem_sources:
            explain.because(f"no host at or above {high}% CPU (HighUtilization) running a VM, nor short "
                            "of memory (MaxFreeMemoryForOverUtilized)")
            return None
        # Only the sources' VMs can move: looking at every VM would grow with the engine.
        move = choose(found, _common.running_on(snap, cpu_sources + mem_sources), high, max_free, min_free)
        explain.because(f"{len(cpu_sources)} CPU and {len(mem_sources)} memory source(s); " +
                        (f"the least loaded VM with a destination moves, {move[1][-1]} stays a candidate"
                         if move else "no VM of theirs fits on a destination"))
        return move
