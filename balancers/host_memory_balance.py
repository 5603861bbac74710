"""Memory balancer: move one VM off the host that has the least free memory.

The decision is `choose()`, a pure function over engine data; `do_balance` only picks
that data out of the engine state the proxy shares (the hosts it was given, then the VMs
on the most over-utilized host: no request, and never every VM) and calls it.

What "fits" means: a VM fits a destination host when its memory is at most the host's
*room*, min(free memory − threshold, max scheduling memory), i.e. moving it neither takes
the destination under the threshold nor past what the engine would schedule there.  The
answer lists only the destinations the chosen VM fits, so the engine's own scheduler never
gets a host we already know would be pushed over the threshold.
"""

from balancers import _common
from proxy import explain, properties

DEFAULT_MINIMUM_MB = 500
DEFAULT_SAFE = True

PARAMS = properties.Parameters(
    minimum_host_memoryMB=properties.Whole(DEFAULT_MINIMUM_MB, unit="MB"),
    safe_selection=properties.Flag(DEFAULT_SAFE),
)


def room(host, threshold):
    """Bytes `host` can take without going under `threshold`; 0 when unknown or none."""
    if host.free_memory is None or host.max_scheduling_memory is None:
        return 0  # unknown capacity: never a place to send memory to
    return max(0, min(host.free_memory - threshold, host.max_scheduling_memory))


def most_over_utilized(hosts, threshold):
    """The host with the least free memory among those at or under `threshold`, or None.

    Hosts whose free memory is unknown are skipped; ties go to the host listed first.
    """
    over = [h for h in hosts if h.free_memory is not None and h.free_memory <= threshold]
    return min(over, key=lambda h: h.free_memory, default=None)


def choose(hosts, vms, threshold, safe=DEFAULT_SAFE):
    """The VM to migrate and the hosts it may go to: `(vm_id, [host ids])`, or None.

    hosts: objects with id, free_memory (bytes or None), max_scheduling_memory (bytes);
    vms: objects with id, host_id, status, memory (bytes); threshold in bytes.
    safe=True picks the smallest VM that fits somewhere; safe=False the smallest VM larger
    than what the source is missing (threshold − free), else the largest that fits.
    Ties between VMs of equal memory go to the lowest VM id, so the answer does not depend
    on the order the engine lists VMs in.
    """
    hosts = _common.unique(hosts, key=lambda h: h.id)
    source = most_over_utilized(hosts, threshold)
    if source is None:
        return None
    targets = [h for h in hosts
               if h.id != source.id and h.free_memory is not None and h.free_memory > threshold]
    largest = max((room(h, threshold) for h in targets), default=0)
    movable = sorted((vm for vm in vms
                      if vm.host_id == source.id and _common.is_up(vm)
                      and vm.memory is not None and vm.memory <= largest),
                     key=lambda vm: (vm.memory, vm.id))
    if not movable:
        return None
    if safe:
        vm = movable[0]
    else:
        missing = threshold - source.free_memory
        vm = next((v for v in movable if v.memory > missing), movable[-1])
    candidates = [h.id for h in targets if vm.memory <= room(h, threshold)]
    return (vm.id, candidates) if candidates else None


class host_memory_balance:
    properties_validation = PARAMS.validation

    def do_balance(self, hosts, args):
        """Migrates a VM off the host with the least free memory once it has
        minimum_host_memoryMB (default 500) or less free: the smallest VM that fits elsewhere,
        or with safe_selection=False the smallest VM that frees enough memory."""
        params = PARAMS.parse(args)
        threshold, safe = params.minimum_host_memoryMB * _common.MIB, params.safe_selection
        if not hosts:
            return None
        found, source, vms = _common.hosts_and_source_vms(
            hosts, lambda up: most_over_utilized(up, threshold))
        decision = choose(found, vms, threshold, safe) if source is not None else None
        _explain(found, source, vms, decision, threshold)
        return decision


def _explain(hosts, source, vms, decision, threshold):
    """Reasons per host and for the decision (proxy/explain.py)."""
    mib = _common.MIB
    for h in hosts:
        free = "unknown" if h.free_memory is None else f"{h.free_memory // mib} MiB"
        role = ("source: least free memory at or under the threshold" if source is not None and h.id == source.id
                else f"can take {room(h, threshold) // mib} MiB")
        explain.reason(h.id, f"free {free}; {role}")
    if source is None:
        explain.because(f"no host has {threshold // mib} MiB free or less (minimum_host_memoryMB)")
    elif decision is None:
        explain.because(f"{source.name} is short of memory, but none of its {len(vms)} running VMs fits "
                        "on another host without taking it under the threshold")
    else:
        vm = next(v for v in vms if v.id == decision[0])
        explain.because(f"{source.name} has {source.free_memory // mib} MiB free, at or under "
                        f"{threshold // mib} MiB: move {vm.name} ({vm.memory // mib} MiB) to the "
                        f"{len(decision[1])} host(s) it fits on")
