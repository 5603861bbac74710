"""The what-if model: how the engine applies a balance answer, and how even a cluster is.

Pure functions over Snapshots (proxy/state.py); `simulate UNIT` (proxy/whatif_cli.py) runs
the unit and uses these to move the VM and measure the result.

The engine-application rule (docs/ENGINE_PROTOCOL.md §4): the answer's candidates are only
a whitelist; the engine's own scheduler picks the destination among the Up hosts of the
cluster on it (an empty list: every Up host of the cluster).  Its filters and weights are
not in a snapshot, so `pick_target` stands in for them: of the candidates the VM fits on
(its memory at most the host's max scheduling memory, the engine's memory filter) and may go
to without breaking an enforcing affinity rule (the engine drops such hosts before it picks:
proxy.affinity.allowed), the one with the most free memory after the move; ties go to the
candidate listed first.  If that is the VM's own host, or no candidate is left, the engine
migrates nothing (`BalanceVm` does nothing).

The move (`apply_move`): the VM's memory leaves the source's used memory and joins the
target's (free and max scheduling memory both); CPU moves as the VM's cpu_usage × vcpus /
the host's threads percentage points, taken off the source and added to the target, each
with its own thread count.
"""

import dataclasses
import statistics

from . import affinity
from .state import MIB

GIB = 1024 * MIB
DEFAULT_MINIMUM_MB = 500  # host_memory_balance's default threshold
DEFAULT_HIGH_CPU = 80  # cpu_memory_even_distribution's HighUtilization default


def up_hosts(snap, cluster_id=None):
    return [h for h in snap.hosts.values()
            if h.status == "up" and (cluster_id is None or h.cluster_id == cluster_id)]


def pick_target(snap, vm, candidates, cluster_id=None):
    """The host the engine would migrate `vm` to, or None when none of them takes it."""
    eligible = {h.id: h for h in up_hosts(snap, cluster_id)}
    ids = [c for c in candidates if c in eligible] if candidates else list(eligible)
    best, best_free = None, None
    for host_id in ids:
        h = eligible[host_id]
        if host_id != vm.host_id and (h.max_scheduling_memory or 0) < (vm.memory or 0):
            continue  # the engine's memory filter: it would not schedule the VM there
        if host_id != vm.host_id and not affinity.allowed(snap, vm, host_id):
            continue  # an enforcing affinity rule: the engine drops the host before picking
        free = (h.free_memory or 0) - (0 if host_id == vm.host_id else (vm.memory or 0))
        if best_free is None or free > best_free:
            best, best_free = host_id, free
    return best


def _cpu_share(vm, host):
    """Percentage points of `host`'s CPU the VM takes (0 when a figure is unknown)."""
    if vm.cpu_usage is None or not host.cpu_threads:
        return 0.0
    return vm.cpu_usage * (vm.vcpus or 1) / host.cpu_threads


def _shifted(host, memory, cpu, vms):
    def plus(value, delta):
        return None if value is None else value + delta
    return dataclasses.replace(host, free_memory=plus(host.free_memory, -memory),
                               max_scheduling_memory=plus(host.max_scheduling_memory, -memory),
                               cpu_usage=None if host.cpu_usage is None else max(0.0, host.cpu_usage + cpu),
                               active_vms=plus(host.active_vms, vms))


def apply_move(snap, vm_id, target_id, version=None):
    """The Snapshot after the engine migrated `vm_id` to `target_id` (a new object; `snap`
    is unchanged)."""
    vm = snap.vms[vm_id]
    source, target = snap.hosts[vm.host_id], snap.hosts[target_id]
    if source.id == target.id:
        return snap
    memory = vm.memory or 0
    running = 1 if vm.status == "up" else 0
    hosts = dict(snap.hosts)
    hosts[source.id] = _shifted(source, -memory, -_cpu_share(vm, source), -running)
    hosts[target.id] = _shifted(target, memory, _cpu_share(vm, target), running)
    vms = dict(snap.vms)
    vms[vm_id] = dataclasses.replace(vm, host_id=target.id)
    return dataclasses.replace(snap, hosts=hosts, vms=vms,
                               version=snap.version + 1 if version is None else version)


# --- imbalance -----------------------------------------------------------------------------

def used_memory_fractions(hosts):
    return [(h.memory - h.free_memory) / h.memory for h in hosts
            if h.memory and h.free_memory is not None]


def cpu_fractions(hosts):
    return [h.cpu_usage / 100 for h in hosts if h.cpu_usage is not None]


def spread(values):
    """(coefficient of variation, population standard deviation); Ic is 0 for no values or
    a mean of 0 (nothing to balance)."""
    if not values:
        return 0.0, 0.0
    sd = statistics.pstdev(values)
    mean = statistics.fmean(values)
    return (sd / mean if mean > 0 else 0.0), sd


def under_threshold(unit, hosts, props):
    """The hosts the unit would call over its threshold (docs: README, `simulate UNIT`):
    host_memory_balance (and any other unit): free memory ≤ minimum_host_memoryMB (500);
    cpu_memory_even_distribution: CPU ≥ HighUtilization (80); vm_balance: more VMs than
    maximum_vm_count (100)."""
    def number(key, default):
        try:
            return float(props.get(key, default))
        except ValueError:
            return float(default)
    if unit == "cpu_memory_even_distribution":
        high = number("HighUtilization", DEFAULT_HIGH_CPU)
        return [h for h in hosts if h.cpu_usage is not None and h.cpu_usage >= high]
    if unit == "vm_balance":
        maximum = number("maximum_vm_count", 100)
        return [h for h in hosts if h.active_vms is not None and h.active_vms > maximum]
    threshold = number("minimum_host_memoryMB", DEFAULT_MINIMUM_MB) * MIB
    return [h for h in hosts if h.free_memory is not None and h.free_memory <= threshold]


def figures(snap, unit, props, cluster_id=None):
    """{"ic_mem", "ic_cpu", "sd_mem", "sd_cpu", "hosts_under_threshold"} of the Up hosts."""
    hosts = up_hosts(snap, cluster_id)
    ic_mem, sd_mem = spread(used_memory_fractions(hosts))
    ic_cpu, sd_cpu = spread(cpu_fractions(hosts))
    return {"ic_mem": round(ic_mem, 6), "ic_cpu": round(ic_cpu, 6), "sd_mem": round(sd_mem, 6),
            "sd_cpu": round(sd_cpu, 6), "hosts_under_threshold": len(under_threshold(unit, hosts, props))}
