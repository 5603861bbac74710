"""VM-count filter: only hosts running fewer VMs than a limit may take another one."""

from balancers import _common
from proxy import engine, properties

PARAMS = properties.Parameters(maximum_vm_count=_common.MAXIMUM_VM_COUNT)


def passing(host_ids, counts, maximum):
    """The given hosts (in order, without repeats) whose VM count is below `maximum`.

    counts: host id -> running VM count (None or missing when unknown).  A host the
    engine no longer knows, or whose count is unknown, does not pass: it cannot be shown
    to have room.
    """
    return [h for h in _common.unique(host_ids)
            if counts.get(h) is not None and counts[h] < maximum]


class max_vms:
    properties_validation = PARAMS.validation
    reuse_worker = True  # no state kept between calls: a worker may serve the next one

    def do_filter(self, hosts, vm, args):
        """Lets through only hosts running fewer than maximum_vm_count (default 100) VMs."""
        maximum = PARAMS.parse(args).maximum_vm_count
        if not hosts:
            return []
        found = _common.hosts_of(engine.snapshot(), hosts)
        return passing(hosts, {h.id: h.active_vms for h in found}, maximum)
