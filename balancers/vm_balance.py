"""VM-count balancer: move one VM off the host running the most VMs, once past a limit.

`choose()` decides over plain data; `do_balance` picks it out of the shared engine state
(the hosts, then the source host's VMs, only when a host is over the limit).
"""

from balancers import _common
from proxy import explain, properties

PARAMS = properties.Parameters(maximum_vm_count=_common.MAXIMUM_VM_COUNT)


def busiest(hosts, maximum):
    """The host running the most VMs, if that is more than `maximum` (ties: listed first)."""
    over = [h for h in hosts if h.active_vms is not None and h.active_vms > maximum]
    return max(over, key=lambda h: h.active_vms, default=None)


def choose(hosts, vms, maximum):
    """`(vm_id, [host ids])` or None.

    hosts: objects with id and active_vms (None when unknown); vms: id, host_id, status, memory.
    The source is the host with the most VMs above `maximum` (ties: listed first); the
    candidates are the hosts with fewer than `maximum`.  The VM moved is the source's
    smallest running VM (cheapest to migrate; ties: lowest id).
    """
    counted = [h for h in _common.unique(hosts, key=lambda h: h.id) if h.active_vms is not None]
    source = busiest(counted, maximum)
    if source is None:
        return None
    candidates = [h.id for h in counted if h.active_vms < maximum]
    if not candidates:
        return None  # an empty list would mean "any host" to the engine (docs/ENGINE_PROTOCOL.md §4)
    movable = _common.running_vms_by_host(vms).get(source.id, [])
    if not movable:
        return None
    vm = min(movable, key=lambda v: (v.memory if v.memory is not None else 0, v.id))
    return vm.id, candidates


class vm_balance:
    properties_validation = PARAMS.validation

    def do_balance(self, hosts, args):
        """Migrates the smallest VM off the host running the most VMs when it runs more than
        maximum_vm_count (default 100), to hosts running fewer."""
        maximum = PARAMS.parse(args).maximum_vm_count
        if not hosts:
            return None
        found, source, vms = _common.hosts_and_source_vms(hosts, lambda up: busiest(up, maximum))
        decision = choose(found, vms, maximum) if source is not None else None
        for h in found:
            explain.reason(h.id, f"runs {h.active_vms} VMs" + (" (the source)" if h is source else ""))
        if source is None:
            explain.because(f"no host runs more than {maximum} VMs (maximum_vm_count)")
        elif decision is None:
            explain.because(f"{source.name} runs {source.active_vms} VMs, but no host runs fewer than {maximum}")
        else:
            explain.because(f"{source.name} runs {source.active_vms} VMs, over {maximum}: move its smallest "
                            f"VM to the {len(decision[1])} host(s) running fewer than {maximum}")
        return decision
