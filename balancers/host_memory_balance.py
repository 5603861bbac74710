"""Memory balancer: move one VM off a host that is short of free memory.

The decision is `choose()`, a pure function over engine data; `do_balance` only picks
that data out of the engine state the proxy shares (the hosts it was given, then the VMs
on the hosts at or under the threshold: no request, and never every VM) and calls it.

Sources: the hosts with free memory at or under minimum_host_memoryMB, least free first.
When a source has no VM that can move, the next one is tried, so over several passes no
host stays under the threshold while some move can still lift it.

What "fits" means: a VM fits a destination host when its memory is at most the host's
*room*, min(free memory − threshold, max scheduling memory), i.e. moving it neither takes
the destination under the threshold nor past what the engine would schedule there.  A
destination must also be allowed by every enforcing affinity rule (proxy/affinity.py), not
be a host the VM left within the cooldown (balancing.cooldown_minutes), and the move must
lower Ic_mem, the spread of used memory over the hosts (σ/μ, proxy/whatif.py): a small host
that is short of memory does not unload onto a big host that is fuller in proportion.
The answer lists only such destinations.  VMs cooling down are not moved; with the hour's
budget used up nothing is.

Which VM (the cheapest that solves the problem: gain per GiB moved):
1. one whose move mends an enforcing affinity rule it breaks now, to the hosts that mend it;
2. else the smallest VM that alone lifts the source over the threshold;
3. else, when no single VM does, safe_selection decides: True (the default) moves the
   smallest VM that fits (the least memory in flight; the next pass goes on), False the
   largest (the most freed per pass, so fewer passes).
Ties go to the VM with less CPU load, then the lowest VM id, so the answer does not depend
on the order the engine lists VMs in.
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


def over_utilized(hosts, threshold):
    """The hosts at or under `threshold` free memory, least free first (ties: listed first);
    hosts whose free memory is unknown are skipped."""
    return sorted((h for h in hosts if h.free_memory is not None and h.free_memory <= threshold),
                  key=lambda h: h.free_memory)


def most_over_utilized(hosts, threshold):
    """The host with the least free memory among those at or under `threshold`, or None."""
    return next(iter(over_utilized(hosts, threshold)), None)


def choose(hosts, vms, threshold, safe=DEFAULT_SAFE, moves=None):
    """The VM to migrate and the hosts it may go to: `(vm_id, [host ids])`, or None.

    hosts: objects with id, free_memory (bytes or None), max_scheduling_memory and memory
    (bytes); vms: objects with id, host_id, status, memory (bytes), cpu_usage, vcpus;
    threshold in bytes; moves: a _common.Moves (affinity, cooldown), None for no limits.
    """
    found = decide(hosts, vms, threshold, safe, moves)
    return (found[1].id, [h.id for h in found[2]]) if found else None


def decide(hosts, vms, threshold, safe=DEFAULT_SAFE, moves=None):
    """(source, VM, destinations, why) of the move, or None; see the module docstring.
    A VM's destinations are worked out only when its turn comes (cheapest first)."""
    hosts = _common.unique(hosts, key=lambda h: h.id)
    moves = moves or _common.Moves(None)
    spread = _common.MemorySpread(hosts)
    targets = [h for h in hosts if h.free_memory is not None and h.free_memory > threshold]
    on = _common.by_host(vms)
    for source in over_utilized(hosts, threshold):
        def destinations(vm, source=source):
            fit = [h for h in targets if vm.memory <= room(h, threshold)]
            ok = [h for h in moves.targets(vm, fit) if spread.lowers(source, h, vm.memory)]
            if not ok:
                moves.note_no_target(vm, fit)
            return ok
        candidates = sorted((v for v in on.get(source.id, ()) if v.memory is not None), key=_common.cost_key)
        found = _pick([v for v in candidates if moves.may_move(v)], _common.cached(destinations),
                      threshold - source.free_memory, safe, moves)
        if found:
            return (source, *found)
    return None


def _pick(vms, destinations, missing, safe, moves):
    """(VM, destinations, why) among `vms` in cost order, or None."""
    found = moves.mending(vms, destinations)
    if found:
        return found
    lifting = [vm for vm in vms if vm.memory > missing]
    found = _common.first_with(lifting, destinations, "the smallest VM that alone lifts the host over the threshold")
    if found:
        return found
    if safe:
        return _common.first_with(vms, destinations,
                                  "no single VM lifts the host: the smallest that fits (safe_selection)")
    largest = sorted(vms, key=lambda vm: (-vm.memory, _common.vm_load(vm), vm.id))
    return _common.first_with(largest, destinations,
                              "no single VM lifts the host: the largest that fits (safe_selection=False)")


class host_memory_balance:
    properties_validation = PARAMS.validation
    reuse_worker = True  # no state kept between calls: a worker may serve the next one

    def do_balance(self, hosts, args):
        """Migrates a VM off a host with minimum_host_memoryMB (default 500) or less free: the
        smallest VM that lifts it over alone, else with safe_selection (default True) the
        smallest that fits elsewhere, without it the largest; affinity and cooldown honoured."""
        params = PARAMS.parse(args)
        threshold, safe = params.minimum_host_memoryMB * _common.MIB, params.safe_selection
        if not hosts:
            return None
        snap, found, moves = _common.balance_inputs(hosts)
        sources = over_utilized(found, threshold)
        if sources and moves.budget_spent():
            return None
        decision = decide(found, _common.RunningOn(snap), threshold, safe, moves) if sources else None
        _explain(found, sources, decision, threshold, moves)
        return (decision[1].id, [h.id for h in decision[2]]) if decision else None


def _explain(hosts, sources, decision, threshold, moves):
    """Reasons per host and for the decision (proxy/explain.py)."""
    mib = _common.MIB
    source_ids = {h.id for h in sources}
    for h in hosts:
        free = "unknown" if h.free_memory is None else f"{h.free_memory // mib} MiB"
        role = ("source: at or under the threshold" if h.id in source_ids
                else f"can take {room(h, threshold) // mib} MiB")
        moves.reason(h.id, f"free {free}; {role}")
    if not sources:
        explain.because(f"no host has {threshold // mib} MiB free or less (minimum_host_memoryMB)")
    elif decision is None:
        explain.because(f"{len(sources)} host(s) short of memory, but none of their running VMs can go to "
                        "another host without taking it under the threshold, raising the memory spread "
                        "or breaking a rule" + moves.summary())
    else:
        source, vm, targets, why = decision
        explain.because(f"{source.name} has {source.free_memory // mib} MiB free, at or under "
                        f"{threshold // mib} MiB: move {vm.name} ({vm.memory // mib} MiB), {why}, to the "
                        f"{len(targets)} host(s) it fits on" + moves.summary())
