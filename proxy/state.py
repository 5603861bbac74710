"""The engine state units decide on: one immutable, versioned snapshot.

A Snapshot holds what a unit reads of the engine — clusters, hosts, VMs, affinity groups
and labels — as plain frozen records, with a version (monotonic within one proxy run) and
the time the read finished.  The proxy reads it (proxy/readers.py, through ovirtsdk4) or
loads it from a snapshot file (proxy/snapshot.py describes the JSON format; `from_document`
turns a validated document into a Snapshot), and units get it through `engine.snapshot()`.

Sizes are bytes; CPU figures are percent; statuses are the API's lower-case values.
"""

import dataclasses
import functools
import sys
import time

from . import affinity

MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class Cluster:
    id: str
    name: str
    memory_overcommit: int | None = None  # percent


@dataclasses.dataclass(frozen=True, slots=True)
class Host:
    id: str
    name: str
    status: str | None  # the API's lower-case value, e.g. "up"
    cluster_id: str | None
    memory: int | None  # bytes
    max_scheduling_memory: int | None  # bytes
    free_memory: int | None  # bytes; None when the engine has no memory statistics
    cpu_usage: float | None  # percent of the whole host
    cpu_cores: int | None  # all sockets
    cpu_threads: int | None  # logical CPUs
    active_vms: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class Vm:
    id: str
    name: str
    status: str | None
    host_id: str | None  # None when the VM is not running
    memory: int | None  # bytes
    guaranteed_memory: int | None  # bytes
    os_type: str | None
    cpu_usage: float | None  # percent; None when read without statistics
    vcpus: int | None
    cluster_id: str | None = None
    memory_usage: float | None = None  # percent of its memory the guest uses, when known


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """One side of an affinity group: VM↔VM (vms_rule) or VM→host (hosts_rule)."""
    enabled: bool = False
    positive: bool = False
    enforcing: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class AffinityGroup:
    id: str
    name: str
    cluster_id: str
    vms_rule: Rule
    hosts_rule: Rule
    priority: float = 1.0
    vm_ids: tuple = ()
    host_ids: tuple = ()
    vm_label_ids: tuple = ()
    host_label_ids: tuple = ()


@dataclasses.dataclass(frozen=True, slots=True)
class AffinityLabel:
    id: str
    name: str
    vm_ids: tuple = ()
    host_ids: tuple = ()


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The engine's state at one moment.  Mappings are keyed by id, in the engine's order."""
    version: int
    read_at: float  # time.time() when the read finished
    read_seconds: float  # how long the read took: the data is at most this much older
    source: str  # where it came from: the engine's URL, or a snapshot file
    clusters: dict
    hosts: dict
    vms: dict
    affinity_groups: tuple = ()
    affinity_labels: tuple = ()

    def age(self, now=None):
        return (time.time() if now is None else now) - self.read_at

    def vms_on(self, host_id):
        """The VMs placed on a host (any status), in the engine's order."""
        return self._by_host.get(host_id, ())

    def running_by_os(self, host_id):
        """{OS type: VMs up on the host}; what a same-OS (KSM) score needs, without the VMs."""
        return self._os_by_host.get(host_id, {})

    def groups_of(self, vm_id):
        """The affinity groups a VM is a direct member of."""
        return self._groups_by_vm.get(vm_id, ())

    @functools.cached_property
    def _by_host(self):
        by_host = {}
        for vm in self.vms.values():
            if vm.host_id is not None:
                by_host.setdefault(vm.host_id, []).append(vm)
        return {h: tuple(v) for h, v in by_host.items()}

    @functools.cached_property
    def _os_by_host(self):
        counts = {}
        for host_id, vms in self._by_host.items():
            for vm in vms:
                if vm.status == "up":
                    per_host = counts.setdefault(host_id, {})
                    per_host[vm.os_type] = per_host.get(vm.os_type, 0) + 1
        return counts

    def warm(self):
        """Build every index now: in the fork server, once, not in each worker."""
        self.vms_on(None), self.running_by_os(None), self.groups_of(None)
        affinity.index(self)
        return self

    @functools.cached_property
    def _groups_by_vm(self):
        by_vm = {}
        for group in self.affinity_groups:
            for vm_id in group.vm_ids:
                by_vm.setdefault(vm_id, []).append(group)
        return {v: tuple(g) for v, g in by_vm.items()}

    def summary(self):
        return (f"version {self.version}: {len(self.hosts)} hosts, {len(self.vms)} VMs, "
                f"{len(self.affinity_groups)} affinity groups, read in {self.read_seconds:.2f} s")


def index(records):
    """{id: record} in the given order."""
    return {r.id: r for r in records}


# --- the snapshot file's document (proxy/snapshot.py validates it) ---------------------------

def from_document(doc, *, version, source, read_at=None):
    """A Snapshot from a validated snapshot document (sizes in MiB there, bytes here)."""
    up_on = {}
    for v in doc["vms"]:
        if v["host"] is not None and v["status"] == "up":
            up_on[v["host"]] = up_on.get(v["host"], 0) + 1
    hosts = [Host(id=h["id"], name=h["name"], status=h["status"], cluster_id=h["cluster"],
                  memory=_bytes(h["memory_mb"]), max_scheduling_memory=_bytes(h["max_scheduling_memory_mb"]),
                  free_memory=_bytes(h["free_memory_mb"]),
                  cpu_usage=_float(h["cpu_load"]), cpu_cores=h["cpu_cores"], cpu_threads=h["cpu_threads"],
                  active_vms=up_on.get(h["id"], 0))
             for h in doc["hosts"]]
    shared = sys.intern  # values many VMs repeat: one string object each
    vms = [Vm(id=v["id"], name=v["name"], status=shared(v["status"]),
              host_id=v["host"] and shared(v["host"]),
              memory=_bytes(v["memory_mb"]), guaranteed_memory=_bytes(v["guaranteed_memory_mb"]),
              os_type=v["os_type"] and shared(v["os_type"]), cpu_usage=_float(v["cpu_usage"]),
              vcpus=v["vcpus"], cluster_id=v.get("cluster") and shared(v["cluster"]),
              memory_usage=_float(v.get("memory_usage", 50)))
           for v in doc["vms"]]
    return Snapshot(
        version=version, read_at=time.time() if read_at is None else read_at, read_seconds=0.0,
        source=source, clusters=index(Cluster(c["id"], c["name"], c.get("memory_overcommit"))
                                      for c in doc["clusters"]),
        hosts=index(hosts), vms=index(vms),
        affinity_groups=tuple(_group(g) for g in doc.get("affinity_groups", ())),
        affinity_labels=tuple(AffinityLabel(l["id"], l["name"], tuple(l.get("vms", ())),
                                            tuple(l.get("hosts", ())))
                              for l in doc.get("affinity_labels", ())))


def _group(g):
    def rule(r):
        r = r or {}
        return Rule(bool(r.get("enabled")), bool(r.get("positive")), bool(r.get("enforcing")))
    return AffinityGroup(
        id=g["id"], name=g["name"], cluster_id=g["cluster"], vms_rule=rule(g.get("vms_rule")),
        hosts_rule=rule(g.get("hosts_rule")), priority=float(g.get("priority", 1.0)),
        vm_ids=tuple(g.get("vms", ())), host_ids=tuple(g.get("hosts", ())),
        vm_label_ids=tuple(g.get("vm_labels", ())), host_label_ids=tuple(g.get("host_labels", ())))


# A snapshot read from an engine may lack figures (None) that a snapshot file must have:
# to_document keeps them None, and from_document takes them back as None.
def _bytes(mib):
    return None if mib is None else mib * MIB


def _float(value):
    return None if value is None else float(value)


def _mib(size):
    return None if size is None else size // MIB


def _num(value):
    """Whole figures as ints, as a snapshot file has them (its validator wants whole numbers)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def to_document(snap):
    """The snapshot document of a Snapshot: from_document(to_document(s)) holds the same state
    (sizes are whole MiB there; the journal stores snapshots this way)."""
    def rule(r):
        return {"enabled": r.enabled, "positive": r.positive, "enforcing": r.enforcing}
    return {
        "clusters": [{"id": c.id, "name": c.name, **({"memory_overcommit": c.memory_overcommit}
                                                     if c.memory_overcommit is not None else {})}
                     for c in snap.clusters.values()],
        "hosts": [{"id": h.id, "name": h.name, "status": h.status, "cluster": h.cluster_id,
                   "memory_mb": _mib(h.memory), "max_scheduling_memory_mb": _mib(h.max_scheduling_memory),
                   "free_memory_mb": _mib(h.free_memory), "cpu_load": _num(h.cpu_usage),
                   "cpu_cores": h.cpu_cores, "cpu_threads": h.cpu_threads} for h in snap.hosts.values()],
        "vms": [{"id": v.id, "name": v.name, "status": v.status, "memory_mb": _mib(v.memory),
                 "guaranteed_memory_mb": _mib(v.guaranteed_memory), "host": v.host_id,
                 "os_type": v.os_type, "cpu_usage": _num(v.cpu_usage), "vcpus": v.vcpus,
                 "cluster": v.cluster_id,
                 "memory_usage": None if v.memory_usage is None else round(v.memory_usage)} for v in snap.vms.values()],
        "affinity_groups": [{"id": g.id, "name": g.name, "cluster": g.cluster_id,
                             "vms_rule": rule(g.vms_rule), "hosts_rule": rule(g.hosts_rule),
                             "priority": g.priority, "vms": list(g.vm_ids), "hosts": list(g.host_ids),
                             "vm_labels": list(g.vm_label_ids), "host_labels": list(g.host_label_ids)}
                            for g in snap.affinity_groups],
        "affinity_labels": [{"id": l.id, "name": l.name, "vms": list(l.vm_ids), "hosts": list(l.host_ids)}
                            for l in snap.affinity_labels]}
