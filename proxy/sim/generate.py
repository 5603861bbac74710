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
_OS_TYPES = ("rhel_9x64", "rhel_8x64", "windows_2019x64", "ubuntu_22_04", "other_linux")
_HOST_RESERVED_MB = 4096  # memory the host itself uses (VDSM, the kernel...)


def generate_snapshot(hosts, vms, *, seed=0, clusters=1, pressure_hosts=1):
    """A valid snapshot of `hosts` hosts and `vms` VMs, the same for the same arguments.

    `pressure_hosts` hosts (up, at least three VMs each when there are enough) have less
    than 500 MiB free, so a memory balancer finds work; every other up host keeps at least
    10 % of its memory free.  About 8 % of the VMs are down, and so are VMs that fit nowhere.
    """
    if hosts < 1 or vms < 0 or clusters < 1 or not 0 <= pressure_hosts <= hosts:
        raise ValueError("need hosts >= 1, vms >= 0, clusters >= 1 and 0 <= pressure_hosts <= hosts")
    rng = random.Random(seed)
    cluster_list = [{"id": _new_id(rng), "name": "Default" if i == 0 else f"cluster{i + 1}"}
                    for i in range(clusters)]
    pressured = set(rng.sample(range(hosts), pressure_hosts))
    host_list, room = _make_hosts(rng, hosts, cluster_list, pressured)
    vm_list, committed = _make_vms(rng, vms, host_list, room, pressured, cluster_list)
    for i, h in enumerate(host_list):
        spare = h["memory_mb"] - _HOST_RESERVED_MB - committed[i]
        h["max_scheduling_memory_mb"] = max(0, spare)
        h["free_memory_mb"] = rng.randint(64, 480) if i in pressured else spare
    return validate_snapshot({"clusters": cluster_list, "hosts": host_list, "vms": vm_list})


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


def _make_vms(rng, count, host_list, room, pressured, cluster_list):
    """The VMs, each up on a host with room or else down, and the memory committed per host."""
    up_hosts = [i for i, h in enumerate(host_list) if h["status"] == "up"]
    committed = [0] * len(host_list)
    sizes, weights = zip(*_VM_MEMORY_MB)
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
