"""Shared by the shipped policy units: a shared parameter, and looking at engine data.

Not a plugin (the leading underscore keeps the registry from scanning it).
"""

from proxy import engine, properties


MIB = 1024 * 1024

# max_vms and vm_balance read the same key, and a policy holding both sends one value for
# it: one declaration keeps their regex and default the same.
MAXIMUM_VM_COUNT = properties.Whole(100)


def unique(items, key=lambda item: item):
    """Items in their first-seen order, without repeats (the engine could send a host twice)."""
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


def running_on(snap, hosts):
    """The VMs up on the given hosts, from the snapshot's per-host index (never every VM)."""
    return [vm for h in hosts for vm in snap.vms_on(h.id) if is_up(vm)]


def hosts_and_source_vms(host_ids, find_source):
    """(the Up hosts among host_ids, the source find_source picks of them, the VMs up on it).

    From the engine state the proxy shares: no request; only the source's VMs are looked at.
    Hosts that left Up since the engine listed them are neither sources nor targets.
    """
    snap = engine.snapshot()
    found = [h for h in hosts_of(snap, host_ids) if is_up(h)]
    source = find_source(found)
    return found, source, running_on(snap, [source]) if source is not None else []
