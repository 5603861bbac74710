"""Shared by the shipped policy units: a shared parameter, and looking at engine data.

Not a plugin (the leading underscore keeps the registry from scanning it).
"""

import time

from proxy import affinity, balancing, engine, explain, properties


MIB = 1024 * 1024

# max_vms and vm_balance read the same key, and a policy holding both sends one value for
# it: one declaration keeps their regex and default the same.
MAXIMUM_VM_COUNT = properties.Whole(100)


def _itself(item):
    return item


def unique(items, key=_itself):
    """Items in their first-seen order, without repeats (the engine could send a host twice)."""
    if key is _itself:
        return list(dict.fromkeys(items))  # the same, in C (a balancer sends 1,000 host ids)
    seen, out = set(), []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            out.append(item)
    return out


def is_up(entity):
    """True when a host or VM status reads 'up' (an SDK enum or a plain string)."""
    status = getattr(entity, "status", None)
    return str(getattr(status, "value", status)).lower() == "up"


def running_vms_by_host(vms):
    """host id -> the VMs that are up on it, in the order the engine listed them."""
    by_host = {}
    for vm in vms:
        if vm.host_id is not None and is_up(vm):
            by_host.setdefault(vm.host_id, []).append(vm)
    return by_host


def hosts_of(snap, host_ids):
    """The snapshot's hosts among host_ids, in that order, without repeats; unknown ids left out."""
    return [snap.hosts[h] for h in unique(host_ids) if h in snap.hosts]


def up_hosts(snap, host_ids):
    """The Up hosts among host_ids (hosts that left Up since the engine listed them are
    neither sources nor targets)."""
    # Snapshot records hold the status as a plain string: is_up only for anything else.
    return [h for h in hosts_of(snap, host_ids) if h.status == "up" or is_up(h)]


def balance_inputs(host_ids):
    """(the shared snapshot, the Up hosts among host_ids, this call's Moves): what a
    balancer starts from."""
    snap = engine.snapshot()
    return snap, up_hosts(snap, host_ids), Moves(snap)


class RunningOn:
    """{host id: VMs up on it} read from the snapshot's per-host index only for the hosts asked
    about: a balancer with hundreds of sources looks at the VMs of the few it tries."""

    def __init__(self, snap):
        self.snap = snap

    def get(self, host_id, default=()):
        return [vm for vm in self.snap.vms_on(host_id) if is_up(vm)] or default


def by_host(vms):
    """`vms` as {host id: VMs up on it}: a RunningOn as it is, a list of VM records indexed."""
    return vms if isinstance(vms, RunningOn) else running_vms_by_host(vms)


def vm_load(vm):
    """The VM's CPU use in percent of one host CPU: usage % × vCPUs (unknown counts as idle)."""
    return (vm.cpu_usage or 0) * (vm.vcpus or 1)


def cost_key(vm):
    """Cheapest to migrate first: less memory (GiB in flight), then less CPU load, then id."""
    return (vm.memory if vm.memory is not None else 0, vm_load(vm), vm.id)


class Moves:
    """What this call may move where: enforcing affinity (proxy/affinity.py), the cooldown
    (no cooling VM; no VM back to the host it left within the cooldown) and the budget, all
    from proxy/balancing.py.  Counts what it ruled out, for the reason."""

    def __init__(self, snap, now=None):
        self.snap = snap
        limits = balancing.limits()
        self.applies = limits.applies
        self.cooling = limits.cooling if limits.applies else frozenset()
        self.budget_left = limits.budget_left if limits.applies else None
        self.cooldown_minutes = limits.cooldown_minutes
        self.left = _left_within(limits, time.time() if now is None else now)
        self.skipped = {"cooling": 0, "affinity": 0}
        self.notes = {}  # host id -> why a VM was not let go there (the last one looked at)

    def budget_spent(self):
        """True, with the reason given, when the hour's migration budget is used up."""
        if self.budget_left is None or self.budget_left > 0:
            return False
        explain.because("no migration: the last hour's budget is used up "
                        f"(balancing.max_migrations_per_hour = {balancing.limits().max_migrations_per_hour})")
        return True

    def may_move(self, vm):
        if vm.id in self.cooling:
            self.skipped["cooling"] += 1
            return False
        return True

    def targets(self, vm, hosts):
        """The hosts among `hosts` (records) `vm` may go to: not its own, not one it left within
        the cooldown, none breaking an enforcing affinity rule.  Notes each host ruled out."""
        back = self.left.get(vm.id, ())
        if not back and (self.snap is None or not affinity.index(self.snap).rules(vm.id)):
            # in no enforcing group and not moved lately (most VMs): no per-host check needed
            return [h for h in hosts if h.id != vm.host_id]
        found = []
        for h in hosts:
            if h.id == vm.host_id:
                continue
            if h.id in back:
                self.notes[h.id] = f"{_name(vm)} left it within the cooldown ({self.cooldown_minutes:g} min)"
                continue
            broken = affinity.violations(self.snap, vm, h.id) if self.snap is not None else ()
            if broken:
                self.notes[h.id] = (f"{_name(vm)} may not go here: enforcing affinity group(s) "
                                    f"{', '.join(broken)}")
                continue
            found.append(h)
        return found

    def reason(self, host_id, text):
        """explain.reason with what ruled the host out for a VM, if anything did."""
        note = self.notes.get(host_id)
        explain.reason(host_id, f"{text}; {note}" if note else text)

    def fixing(self, vm, hosts):
        """The hosts among `hosts` moving `vm` to which mends an enforcing rule it breaks now."""
        if self.snap is None or not affinity.broken_now(self.snap, vm):
            return []
        return [h for h in hosts if affinity.fixes(self.snap, vm, h.id)]

    def mending(self, vms, destinations):
        """(VM, the hosts that mend a rule it breaks, why) for the first of `vms` that has one;
        destinations(vm) gives a VM's allowed hosts."""
        for vm in vms:
            if self.snap is not None and affinity.broken_now(self.snap, vm):
                hosts = self.fixing(vm, destinations(vm))
                if hosts:
                    return vm, hosts, "its move mends an enforcing affinity rule it breaks now"
        return None

    def note_no_target(self, vm, hosts):
        """Counts `vm` as held back by affinity when every host it fits breaks a rule."""
        if self.snap is not None and hosts and not any(
                affinity.allowed(self.snap, vm, h.id) for h in hosts if h.id != vm.host_id):
            self.skipped["affinity"] += 1

    def summary(self):
        """'; 2 VM(s) cooling down, 1 held by affinity' or ''."""
        parts = [f"{self.skipped['cooling']} VM(s) cooling down (balancing.cooldown_minutes)"
                 if self.skipped["cooling"] else "",
                 f"{self.skipped['affinity']} VM(s) with no host allowed by enforcing affinity"
                 if self.skipped["affinity"] else ""]
        parts = [p for p in parts if p]
        return "; " + ", ".join(parts) if parts else ""


def _name(vm):
    return getattr(vm, "name", None) or vm.id


def _left_within(limits, now):
    """{VM id: hosts it was moved off within the cooldown}: moving it back there is ping-pong."""
    if not limits.applies or limits.cooldown_minutes <= 0:
        return {}
    since = now - limits.cooldown_minutes * 60
    left = {}
    for move in balancing.recent_moves():
        if move.at >= since and move.source_id is not None:
            left.setdefault(move.vm_id, set()).add(move.source_id)
    return left


def first_with(vms, destinations, why):
    """(VM, destinations, why) for the first of `vms` with a destination, or None."""
    for vm in vms:
        hosts = destinations(vm)
        if hosts:
            return vm, hosts, why
    return None


def cached(destinations):
    """destinations(vm) worked out once per VM in a call (a VM may be looked at twice)."""
    seen = {}

    def get(vm):
        if vm.id not in seen:
            seen[vm.id] = destinations(vm)
        return seen[vm.id]
    return get


class MemorySpread:
    """Ic_mem of a set of hosts, σ/μ of their used memory fractions as proxy/whatif.py has it,
    and whether moving memory between two of them lowers it: O(1) per move, not O(hosts)."""

    def __init__(self, hosts):
        self.fraction = {h.id: (h.memory - h.free_memory) / h.memory for h in hosts
                         if h.memory and h.free_memory is not None}
        self.n = len(self.fraction)
        self.total = sum(self.fraction.values())
        self.squares = sum(f * f for f in self.fraction.values())

    def lowers(self, source, target, memory):
        """True when `memory` bytes going from source to target lowers Ic_mem (by a margin
        floating point cannot fake), or leaves it as it is because neither host's share of
        used memory is known."""
        if source.id not in self.fraction and target.id not in self.fraction:
            return True
        total, squares = self.total, self.squares
        for host, delta in ((source, -memory), (target, memory)):
            f = self.fraction.get(host.id)
            if f is not None:
                g = f + delta / host.memory
                total, squares = total + g - f, squares + g * g - f * f
        if self.total <= 0:
            return False  # Ic is 0 for a mean of 0 or less: nothing to lower
        if total <= 0:  # whatif counts Ic as 0 then: lower if it was not 0 already
            return self.n * self.squares > self.total ** 2 * (1 + 1e-12)
        # Ic² + 1 = n·Σf²/(Σf)², so compare Σf²/(Σf)² cross-multiplied: no subtraction of
        # nearly equal numbers, and a relative margin that holds for an Ic of 1e-5 too
        return squares * self.total ** 2 < self.squares * total ** 2 * (1 - 1e-12)
