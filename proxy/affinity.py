"""Affinity rules over a Snapshot: where a VM may go without breaking an enforcing rule.

Interface only for now (being implemented): groups and labels as the snapshot carries them
(proxy/state.py AffinityGroup, AffinityLabel), the engine's semantics in docs/ENGINE_API.md.
"""


def allowed(snap, vm, host_id):
    """True when moving `vm` (a state.Vm) to `host_id` breaks no enforcing VM↔VM or VM→host
    rule (groups and the labels they name)."""
    return True


def allowed_targets(snap, vm, hosts):
    """The hosts among `hosts` (state.Host records) `vm` may move to, in their order."""
    return [h for h in hosts if allowed(snap, vm, h.id)]


def violations(snap, vm_id, host_id):
    """The names of the enforcing affinity groups that moving VM `vm_id` to `host_id` would break."""
    return []
