"""Random cluster snapshots of any size, for load tests and benchmarks of the simulated engine.

The snapshots are in the format of `proxy.snapshot` and already validated; the same
arguments give the same snapshot.
"""

import random
import uuid

from ..snapshot import validate_snapshot

_HOST_MEMORY_MB = (131072, 262144, 393216, 524288, 786432)
_HOST_CORES = (16, 24, 32, 48, 64)
_VM_MEMORY_MB = ((1024, 10), (2048, 25), (4096, 30), (8192, 20), (16384, 10), (32768, 5))
# skewed_sizes: mostly small VMs and a few very large ones (same number of draws per VM as
# the default table, so the rest of the snapshot is drawn the same way).
_SKEWED_VM_MEMORY_MB = ((1024, 40), (2048, 25), (4096, 12), (8192, 8), (16384, 6), (32768, 5), (65536, 4))
_OS_TYPES = ("rhel_9x64", "rhel_8x64", "windows_2019x64", "ubuntu_22_04", "other_linux")
_HOST_RESERVED_MB = 4096  # memory the host itself uses (VDSM, the kernel...)


def generate_snapshot(hosts, vms, *, seed=0, clusters=1, pressure_hosts=1, affinity_groups=0,
                      hot_hosts=0, skewed_sizes=False):
    """A valid snapshot of `hosts` hosts and `vms` VMs, the same for the same arguments.

    `pressure_hosts` hosts (up, at least three VMs each when there are enough) have less
    than 500 MiB free, so a memory balancer finds work; every other up host keeps at least
    10 % of its memory free.  About 8 % of the VMs are down, and so are VMs that fit nowhere.
    `affinity_groups` groups of a few running VMs each (VM-to-VM positive or negative, or
    VM-to-host), enforcing or not, are all satisfied by the placement: none is broken.
    `hot_hosts` up hosts running VMs are CPU hot spots: 85-98 % CPU, their VMs busy (60-100 %).
    `skewed_sizes` draws VM memory from a table with more 1 GiB VMs and some of 64 GiB.
    The defaults (0, False) give exactly the snapshots of before these arguments existed.
    """
    if (hosts < 1 or vms < 0 or clusters < 1 or not 0 <= pressure_hosts <= hosts
            or affinity_groups < 0 or not 0 <= hot_hosts <= hosts):
        raise ValueError("need hosts >= 1, vms >= 0, clusters >= 1, 0 <= pressure_hosts <= hosts, "
                         "0 <= hot_hosts <= hosts and affinity_groups >= 0")
    rng = random.Random(seed)
    cluster_list = [{"id": _new_id(rng), "name": "Default" if i == 0 else f"cluster{i + 1}"}
                    for i in range(clusters)]
    pressured = set(rng.sample(range(hosts), pressure_hosts))
    host_list, room = _make_hosts(rng, hosts, cluster_list, pressured)
    table = _SKEWED_VM_MEMORY_MB if skewed_sizes else _VM_MEMORY_MB
    vm_list, committed = _make_vms(rng, vms, host_list, room, pressured, cluster_list, table)
    for i, h in enumerate(host_list):
        spare = h["memory_mb"] - _HOST_RESERVED_MB - committed[i]
        h["max_scheduling_memory_mb"] = max(0, spare)
        h["free_memory_mb"] = rng.randint(64, 480) if i in pressured else spare
    # Drawn last, so snapshots without groups are what they were before groups existed.
    groups = _make_groups(rng, affinity_groups, host_list, vm_list)
    _make_hot(rng, hot_hosts, host_list, vm_list)
    return validate_snapshot({"clusters": cluster_list, "hosts": host_list, "vms": vm_list,
                              "affinity_groups": groups})


# The helpers draw from `rng` in a fixed order: changing it changes every generated snapshot.

def _new_id(rng):
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _make_hosts(rng, count, cluster_list, pressured):
    """The hosts, still without memory figures, and the memory each may commit to VMs."""
    host_list, room = [], []
    for i in range(count):
        cores = rng.choice(_HOST_CORES)
        memory = rng.choice(_HOST_MEMORY_MB)
        down = i not in pressured and count >= 10 and rng.random() < 0.03
        host_list.append({
            "id": _new_id(rng), "name": f"host{i + 1:0{len(str(count))}d}",
            "status": "maintenance" if down else "up",
            "cluster": cluster_list[i % len(cluster_list)]["id"], "memory_mb": memory,
            "cpu_load": round(rng.uniform(3, 70), 1), "cpu_sockets": 2, "cpu_cores": cores,
            "cpu_threads": cores * 2})
        room.append(0 if down else int(memory * 0.9) - _HOST_RESERVED_MB)
    return host_list, room


def _make_vms(rng, count, host_list, room, pressured, cluster_list, table=_VM_MEMORY_MB):
    """The VMs, each up on a host with room or else down, and the memory committed per host."""
    up_hosts = [i for i, h in enumerate(host_list) if h["status"] == "up"]
    committed = [0] * len(host_list)
    sizes, weights = zip(*table)
    # The first VMs go to the pressured hosts, so each has something to move away.
    forced = [i for i in sorted(pressured) for _ in range(3)]
    vm_list = []
    for n in range(count):
        memory = rng.choices(sizes, weights)[0]
        vm = {"id": _new_id(rng), "name": f"vm{n + 1:0{len(str(count))}d}", "status": "down",
              "memory_mb": memory, "guaranteed_memory_mb": memory // 2, "host": None,
              "os_type": rng.choice(_OS_TYPES), "cpu_usage": round(rng.uniform(0, 60), 1),
              "vcpus": max(1, min(16, memory // 2048)), "memory_usage": rng.randint(20, 90)}
        if rng.random() >= 0.08 and up_hosts:
            tries = [forced[n]] if n < len(forced) else [rng.choice(up_hosts) for _ in range(8)]
            for i in tries:
                if committed[i] + memory <= room[i]:
                    committed[i] += memory
                    vm.update(status="up", host=host_list[i]["id"])
                    break
        if vm["host"] is None:
            vm["cluster"] = rng.choice(cluster_list)["id"]
        vm_list.append(vm)
    return vm_list, committed


def _make_hot(rng, count, host_list, vm_list):
    """`count` CPU hot spots among the up hosts running VMs (fewer if fewer run any)."""
    if not count:
        return
    running = {}
    for v in vm_list:
        if v["host"]:
            running.setdefault(v["host"], []).append(v)
    busy = [h for h in host_list if h["status"] == "up" and h["id"] in running]
    for h in rng.sample(busy, min(count, len(busy))):
        h["cpu_load"] = round(rng.uniform(85, 98), 1)
        for v in running[h["id"]]:
            v["cpu_usage"] = round(rng.uniform(60, 100), 1)


_OFF = {"enabled": False, "positive": False, "enforcing": False}


class _Placement:
    """Where the generated VMs run, per host and per cluster, for choosing group members."""

    def __init__(self, host_list, vm_list):
        self.running = {h["id"]: [] for h in host_list}  # host id -> ids of VMs running there
        for v in vm_list:
            if v["host"]:
                self.running[v["host"]].append(v["id"])
        self.cluster_of = {h["id"]: h["cluster"] for h in host_list}
        self.hosts_of = {}  # cluster id -> its host ids, and those running VMs
        self.busy_of = {}
        for h in host_list:
            self.hosts_of.setdefault(h["cluster"], []).append(h["id"])
            self.busy_of.setdefault(h["cluster"], [])
            if self.running[h["id"]]:
                self.busy_of[h["cluster"]].append(h["id"])

    def some_vms(self, rng, host, low, high):
        return _some(rng, self.running[host], low, high)

    def peers(self, host):
        return [h for h in self.hosts_of[self.cluster_of[host]] if h != host]


def _make_groups(rng, count, host_list, vm_list):
    """`count` affinity groups that the placement satisfies (no VM moves for them)."""
    if not count:
        return []
    placement = _Placement(host_list, vm_list)
    makers = (_together, _apart, _on_hosts, _off_hosts)
    groups = []
    for n in range(count):
        start, enforcing = rng.randrange(len(makers)), rng.random() < 0.5
        # The first kind the placement allows, from a random one on.
        for make in makers[start:] + makers[:start]:
            made = make(rng, placement)
            if made:
                break
        else:  # nothing runs: an empty group breaks nothing
            made = (host_list[0]["cluster"], True, True, [], [])
        cluster, on_vms, positive, members, hosts = made
        rule = {"enabled": True, "positive": positive, "enforcing": enforcing}
        groups.append({"id": _new_id(rng), "name": f"affinity{n + 1}", "cluster": cluster,
                       "vms_rule": rule if on_vms else _OFF, "hosts_rule": _OFF if on_vms else rule,
                       "vms": members, "hosts": hosts})
    return groups


def _some(rng, items, low, high):
    """Between `low` and `high` of `items` (all of them when there are fewer), in random order."""
    return rng.sample(items, min(len(items), rng.randint(low, high)))


# Each maker returns (cluster id, whether the rule is VM-to-VM, positive, VM ids, host ids),
# or None when the placement offers no such group.

def _together(rng, p):
    """VMs running on one host: a positive VM-to-VM group."""
    crowded = [h for h, ids in p.running.items() if len(ids) >= 2]
    if not crowded:
        return None
    host = rng.choice(crowded)
    return p.cluster_of[host], True, True, p.some_vms(rng, host, 2, 4), []


def _apart(rng, p):
    """One VM from each of a few hosts of a cluster: a negative VM-to-VM group."""
    spread = [c for c, busy in p.busy_of.items() if len(busy) >= 2]
    if not spread:
        return None
    cluster = rng.choice(spread)
    hosts = _some(rng, p.busy_of[cluster], 2, 4)
    return cluster, True, False, [rng.choice(p.running[h]) for h in hosts], []


def _on_hosts(rng, p):
    """VMs of one host, kept on it (and maybe on a peer): a positive VM-to-host group."""
    busy = [h for h, ids in p.running.items() if ids]
    if not busy:
        return None
    host = rng.choice(busy)
    peers = p.peers(host)
    hosts = [host] + ([rng.choice(peers)] if peers and rng.random() < 0.5 else [])
    return p.cluster_of[host], False, True, p.some_vms(rng, host, 1, 3), hosts


def _off_hosts(rng, p):
    """VMs of one host, kept off some of its peers: a negative VM-to-host group."""
    busy = [h for h, ids in p.running.items() if ids and len(p.hosts_of[p.cluster_of[h]]) > 1]
    if not busy:
        return None
    host = rng.choice(busy)
    peers = p.peers(host)
    return (p.cluster_of[host], False, False, p.some_vms(rng, host, 1, 3),
            _some(rng, peers, 1, 2))
