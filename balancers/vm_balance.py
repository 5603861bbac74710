"""VM-count balancer: move one VM off the host running the most VMs, once past a limit.

`choose()` decides over plain data; `do_balance` picks it out of the shared engine state
(the hosts, then the source hosts' VMs, only when a host is over the limit).  A VM goes only
where enforcing affinity allows and not back to a host it left within the cooldown; VMs
cooling down stay; with the hour's migration budget used up nothing moves
(proxy/balancing.py).
"""

from balancers import _common
from proxy import explain, properties

PARAMS = properties.Parameters(maximum_vm_count=_common.MAXIMUM_VM_COUNT)


def busiest(hosts, maximum):
    """The host running the most VMs, if that is more than `maximum` (ties: listed first)."""
    return next(iter(over_limit(hosts, maximum)), None)


def over_limit(hosts, maximum):
    """The hosts running more than `maximum` VMs, the most first (ties: listed first)."""
    return sorted((h for h in hosts if h.active_vms is not None and h.active_vms > maximum),
                  key=lambda h: -h.active_vms)


def choose(hosts, vms, maximum, moves=None):
    """`(vm_id, [host ids])` or None.

    hosts: objects with id and active_vms (None when unknown); vms: id, host_id, status,
    memory, cpu_usage, vcpus; moves: a _common.Moves (affinity, cooldown), None for no limits.
    The sources are the hosts with more than `maximum` VMs, the most first; the candidates
    the hosts with fewer than `maximum` that affinity and the cooldown allow for the VM.  The
    VM moved is the source's VM whose move mends an enforcing affinity rule, else its
    cheapest (least memory, then least CPU load, then lowest id) that may go somewhere.
    """
    found = decide(hosts, vms, maximum, moves)
    return (found[1].id, [h.id for h in found[2]]) if found else None


def decide(hosts, vms, maximum, moves=None):
    """(source, VM, destinations, why) or None."""
    counted = [h for h in _common.unique(hosts, key=lambda h: h.id) if h.active_vms is not None]
    # An empty candidate list would mean "any host" to the engine (docs/ENGINE_PROTOCOL.md §4).
    targets = [h for h in counted if h.active_vms < maximum]
    if not targets:
        return None
    moves = moves or _common.Moves(None)
    on = _common.by_host(vms)

    def destinations(vm):
        ok = moves.targets(vm, targets)
        if not ok:
            moves.note_no_target(vm, targets)
        return ok
    destinations = _common.cached(destinations)
    for source in over_limit(counted, maximum):
        movable = [vm for vm in sorted(on.get(source.id, []), key=_common.cost_key) if moves.may_move(vm)]
        found = moves.mending(movable, destinations) or _common.first_with(
            movable, destinations, "its cheapest VM to move (least memory, then CPU load)")
        if found:
            return (source, *found)
    return None


class vm_balance:
    properties_validation = PARAMS.validation
    reuse_worker = True  # no state kept between calls: a worker may serve the next one

    def do_balance(self, hosts, args):
        """Migrates the cheapest VM off the host running the most VMs when it runs more than
        maximum_vm_count (default 100), to hosts running fewer; affinity and cooldown honoured."""
        maximum = PARAMS.parse(args).maximum_vm_count
        if not hosts:
            return None
        snap, found, moves = _common.balance_inputs(hosts)
        sources = over_limit(found, maximum)
        if sources and moves.budget_spent():
            return None
        decision = decide(found, _common.RunningOn(snap), maximum, moves) if sources else None
        source_ids = {h.id for h in sources}
        for h in found:
            moves.reason(h.id, f"runs {h.active_vms} VMs" + (" (a source)" if h.id in source_ids else ""))
        if not sources:
            explain.because(f"no host runs more than {maximum} VMs (maximum_vm_count)")
        elif not any(h.active_vms is not None and h.active_vms < maximum for h in found):
            explain.because(f"{len(sources)} host(s) run more than {maximum} VMs, but no host runs fewer "
                            f"than {maximum}")
        elif decision is None:
            explain.because(f"{len(sources)} host(s) run more than {maximum} VMs, but none of their VMs may go "
                            f"to a host running fewer than {maximum}" + moves.summary())
        else:
            source, vm, targets, why = decision
            explain.because(f"{source.name} runs {source.active_vms} VMs, over {maximum}: move {vm.name}, "
                            f"{why}, to the {len(targets)} host(s) running fewer than {maximum}"
                            + moves.summary())
        return (decision[1].id, [h.id for h in decision[2]]) if decision else None
