"""Affinity rules over a Snapshot: where a VM may go without breaking an enforcing rule.

The engine's semantics (docs/ENGINE_API.md §8.4, §8.5) as the units apply them; a group's members
are its own VMs and hosts plus those of the labels it names (vm_labels add VMs, host_labels
add hosts).  Only an enabled *and* enforcing rule forbids a host; a soft one never does.

* VM→host, positive: a member VM may only run on the group's hosts (no hosts: no limit).
* VM→host, negative: a member VM never runs on the group's hosts.
* VM↔VM, positive: a member may only go to a host running another member, when any other
  member runs; members split over several hosts may move to any of those hosts.
* VM↔VM, negative: a member never goes to a host running another member.

A VM counts as running where the snapshot places it (a host id), whatever its status.
The per-snapshot index is built once and kept on the snapshot (`index(snap)`); the fork
server builds it before forking (state.Snapshot.warm), so a call pays nothing for it.
"""

import dataclasses

__all__ = ["allowed", "allowed_targets", "violations", "fixes", "broken_now", "index", "Index"]


@dataclasses.dataclass(frozen=True, slots=True)
class _Hard:
    """One enforcing rule of one group, with the group's members expanded."""
    name: str
    kind: str  # "vm-host" or "vm-vm"
    positive: bool
    vm_ids: frozenset
    host_ids: frozenset


class Index:
    """The enforcing rules of one snapshot by VM, and where each VM↔VM group's members run."""

    def __init__(self, snap):
        labels = {label.id: label for label in snap.affinity_labels}
        self.by_vm = {}
        self.placed = {}  # rule -> {host id: running members on it}
        for group in snap.affinity_groups:
            vm_ids = frozenset(group.vm_ids).union(*(labels[i].vm_ids for i in group.vm_label_ids
                                                     if i in labels))
            host_ids = frozenset(group.host_ids).union(*(labels[i].host_ids for i in group.host_label_ids
                                                         if i in labels))
            for kind, rule in (("vm-host", group.hosts_rule), ("vm-vm", group.vms_rule)):
                if not (rule.enabled and rule.enforcing) or (kind == "vm-host" and not host_ids):
                    continue
                hard = _Hard(group.name, kind, rule.positive, vm_ids, host_ids)
                for vm_id in vm_ids:
                    self.by_vm.setdefault(vm_id, []).append(hard)
                if kind == "vm-vm":
                    self.placed[hard] = _placement(snap, vm_ids)

    def rules(self, vm_id):
        return self.by_vm.get(vm_id, ())

    def others_on(self, rule, vm, host_id):
        """Running members of a VM↔VM rule on host_id, `vm` itself not counted."""
        count = self.placed[rule].get(host_id, 0)
        return count - 1 if host_id == vm.host_id and host_id is not None else count

    def hosts_of_others(self, rule, vm):
        return [h for h in self.placed[rule] if self.others_on(rule, vm, h) > 0]

    def breaks(self, rule, vm, host_id):
        """True when `vm` on host_id would break `rule`."""
        if rule.kind == "vm-host":
            return (host_id in rule.host_ids) != rule.positive
        if not rule.positive:
            return self.others_on(rule, vm, host_id) > 0
        return self.others_on(rule, vm, host_id) == 0 and bool(self.hosts_of_others(rule, vm))


def _placement(snap, vm_ids):
    placed = {}
    for vm_id in vm_ids:
        vm = snap.vms.get(vm_id)
        if vm is not None and vm.host_id is not None:
            placed[vm.host_id] = placed.get(vm.host_id, 0) + 1
    return placed


_KEY = "_affinity_index"


def index(snap):
    """The snapshot's Index, built on first use and kept on the (immutable) snapshot."""
    found = snap.__dict__.get(_KEY)
    if found is None:
        found = Index(snap)
        object.__setattr__(snap, _KEY, found)  # a frozen dataclass: a cache, not a field
    return found


def _as_vm(snap, vm):
    return snap.vms.get(vm) if isinstance(vm, str) else vm


def violations(snap, vm_id, host_id):
    """The names of the enforcing affinity groups that moving VM `vm_id` to `host_id` would break."""
    idx = index(snap)
    vm = _as_vm(snap, vm_id)
    if vm is None:
        return []
    return [rule.name for rule in idx.rules(vm.id) if idx.breaks(rule, vm, host_id)]


def allowed(snap, vm, host_id):
    """True when moving `vm` (a state.Vm) to `host_id` breaks no enforcing VM↔VM or VM→host
    rule (groups and the labels they name)."""
    idx = index(snap)
    return not any(idx.breaks(rule, vm, host_id) for rule in idx.rules(vm.id))


def allowed_targets(snap, vm, hosts):
    """The hosts among `hosts` (state.Host records) `vm` may move to, in their order."""
    idx = index(snap)
    rules = idx.rules(vm.id)
    if not rules:
        return list(hosts)
    return [h for h in hosts if not any(idx.breaks(rule, vm, h.id) for rule in rules)]


def fixes(snap, vm, host_id):
    """The names of the enforcing groups `vm` breaks where it runs now and would not break on
    host_id: the moves a rule asks for (for VM↔VM positive: a member alone on its host joins
    the others)."""
    idx = index(snap)
    if vm.host_id is None or host_id == vm.host_id:
        return []
    return [rule.name for rule in idx.rules(vm.id)
            if idx.breaks(rule, vm, vm.host_id) and not idx.breaks(rule, vm, host_id)]


def broken_now(snap, vm):
    """True when `vm` breaks an enforcing rule where it runs: only then can a move mend one."""
    idx = index(snap)
    return vm.host_id is not None and any(idx.breaks(rule, vm, vm.host_id) for rule in idx.rules(vm.id))


def rule_text(snap, vm, host_id):
    """'breaks enforcing affinity group(s) X, Y' for a host ruled out, else ''."""
    names = violations(snap, vm, host_id)
    return f"breaks enforcing affinity group(s) {', '.join(names)}" if names else ""
