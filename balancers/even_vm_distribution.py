"""VM-count score: hosts running fewer VMs score better (lower)."""

from balancers import _common
from proxy import engine, properties

PARAMS = properties.Parameters()  # none: args is not read


def scores(host_ids, counts):
    """`[(host_id, score)]` for every given host (in order, without repeats).

    The score is the host's running VM count.  A host whose count is unknown scores one
    worse than the worst known host: leaving it out would score it 0, the best
    (docs/ENGINE_PROTOCOL.md §2.4).
    """
    host_ids = _common.unique(host_ids)
    known = [counts[h] for h in host_ids if counts.get(h) is not None]
    unknown_score = max(known, default=0) + 1
    return [(h, counts[h] if counts.get(h) is not None else unknown_score) for h in host_ids]


class even_vm_distribution:
    properties_validation = PARAMS.validation
    reuse_worker = True  # no state kept between calls: a worker may serve the next one

    def do_score(self, hosts, vm, args):
        """Scores hosts by the number of VMs they run: the fewer, the better."""
        if not hosts:
            return []
        found = _common.hosts_of(engine.snapshot(), hosts)
        return scores(hosts, {h.id: h.active_vms for h in found})
