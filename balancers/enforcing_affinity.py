"""Affinity filter: only hosts where the VM breaks no enforcing affinity group (or label).

The engine's own affinity filters run before external ones (docs/ENGINE_API.md §8.4); this
unit gives a policy built from external units the same hard rules, over the shared snapshot
(proxy/affinity.py: VM→host positive/negative, VM↔VM positive/negative, labels expanded).
A VM the snapshot does not hold yet (just created, or newer than the last read) has no
known groups: every host passes, and the reason says so.
"""

from balancers import _common
from proxy import affinity, engine, explain, properties

PARAMS = properties.Parameters()  # none: args is not read


def passing(snap, host_ids, vm):
    """The given hosts (in order, without repeats) `vm` (a state.Vm) may run on."""
    return [h for h in _common.unique(host_ids) if affinity.allowed(snap, vm, h)]


class enforcing_affinity:
    properties_validation = PARAMS.validation
    reuse_worker = True  # no state kept between calls: a worker may serve the next one

    def do_filter(self, hosts, vm, args):
        """Lets through only hosts where the VM breaks no enforcing affinity group or label."""
        PARAMS.parse(args)
        if not hosts:
            return []
        snap = engine.snapshot()
        record = snap.vms.get(vm)
        if record is None:
            explain.because(f"VM {vm} is not in the engine state read at version {snap.version}: its "
                            "affinity groups are unknown, so every host passes")
            return _common.unique(hosts)
        passed = passing(snap, hosts, record)
        for h in _common.unique(hosts):
            if h not in passed:
                explain.reason(h, affinity.rule_text(snap, record, h))
        explain.because(f"{len(passed)} of {len(_common.unique(hosts))} host(s) break no enforcing "
                        f"affinity rule for {record.name}")
        return passed
