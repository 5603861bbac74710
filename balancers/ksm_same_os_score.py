"""KSM score: prefer hosts already running VMs with the scheduled VM's OS type.

Guests of the same OS share many identical memory pages, which KSM can merge.
"""

from balancers import _common
from proxy import engine, properties

PARAMS = properties.Parameters()  # none: args is not read


def scores(host_ids, vm, vms):
    """`[(host_id, score)]` for every given host (in order, without repeats); lower is better.

    The score is how many fewer same-OS VMs a host runs than the best of the given hosts,
    so the best host scores 0 and no score is negative.  `vm` itself is not counted (during
    a migration it still runs on its source).  A VM with no known OS type gives every host 0.
    """
    host_ids = _common.unique(host_ids)
    same = dict.fromkeys(host_ids, 0)
    if vm.os_type is not None:
        for other in vms:
            if (other.host_id in same and other.id != vm.id and _common.is_up(other)
                    and other.os_type == vm.os_type):
                same[other.host_id] += 1
    return ranked(host_ids, same)


def ranked(host_ids, same):
    """Scores from {host id: same-OS VM count}: the best host 0, the others how many fewer."""
    host_ids = _common.unique(host_ids)
    best = max((same.get(h, 0) for h in host_ids), default=0)
    return [(h, best - same.get(h, 0)) for h in host_ids]


def same_os_counts(snap, host_ids, vm):
    """{host id: up VMs of vm's OS on it, vm itself not counted}, from the snapshot's per-host
    OS counts: the cost is the hosts given, not the VMs they run."""
    if vm.os_type is None:
        return {}
    counts = {h: snap.running_by_os(h).get(vm.os_type, 0) for h in host_ids}
    if vm.host_id in counts and _common.is_up(vm):
        counts[vm.host_id] -= 1
    return counts


class ksm_same_os_score:
    properties_validation = PARAMS.validation
    reuse_worker = True  # no state kept between calls: a worker may serve the next one

    def do_score(self, hosts, vm, args):
        """Scores hosts by how many running VMs share the VM's OS type (for KSM memory
        sharing): the more, the better."""
        if not vm:
            raise ValueError("no VM id given: a score needs the VM being scheduled")
        if not hosts:
            return []
        snap = engine.snapshot()
        target = snap.vms.get(vm)
        if target is None:
            raise LookupError(f"VM {vm} is not known to the engine")
        return ranked(hosts, same_os_counts(snap, hosts, target))
