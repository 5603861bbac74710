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
    best = max(same.values(), default=0)
    return [(h, best - same[h]) for h in host_ids]


class ksm_same_os_score:
    properties_validation = PARAMS.validation

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
        # Only the VMs on the candidate hosts: every VM of a big engine would cost per call.
        return scores(hosts, target, _common.running_on(snap, _common.hosts_of(snap, hosts)))
