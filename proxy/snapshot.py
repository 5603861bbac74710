"""Cluster snapshots: the JSON form of an engine's state (clusters, hosts, VMs, affinity, events).

The simulated engine serves a snapshot; `proxy.sim.generate` makes large random ones.

Format (sizes in MiB, CPU figures in percent, ids lower-case UUIDs; "?" marks optional keys)::

    {"clusters": [{"id", "name", "memory_overcommit"?: 100}],
     "hosts": [{"id", "name", "status", "cluster": <cluster id>, "memory_mb",
                "max_scheduling_memory_mb", "free_memory_mb": <int, or null when unknown>,
                "cpu_load", "cpu_cores", "cpu_threads", "cpu_sockets"?: 1, "address"?: <name>}],
     "vms": [{"id", "name", "status", "memory_mb", "guaranteed_memory_mb",
              "host": <host id, or null when not running>, "os_type", "cpu_usage", "vcpus",
              "cluster"?: <its host's cluster>, "memory_usage"?: 50}],
     "affinity_groups"?: [{"id", "name", "cluster": <cluster id>, "vms_rule": <rule>,
                           "hosts_rule": <rule>, "priority"?: 1.0, "vms": [<VM ids>],
                           "hosts": [<host ids>], "vm_labels"?: [<label ids>],
                           "host_labels"?: [<label ids>]}],
     "affinity_labels"?: [{"id", "name", "vms": [<VM ids>], "hosts": [<host ids>]}],
     "events"?: [{"id": <int>, "code": <int>, "time": <ISO-8601 text>, "description",
                  "vm"?: <VM id>, "host"?: <host id>, "severity"?: "normal"}]}

`cpu_cores`/`cpu_threads` count the whole host (all sockets); `cpu_load` is the host's CPU
use and `cpu_usage` a VM's.  A null `free_memory_mb` means the engine has no memory figures
(no memory.used/memory.free statistics are served).  Keys starting with "_" are comments.
Statuses are the API's lower-case enum values.

Affinity (docs/ENGINE_API.md §8): a <rule> is {"enabled"?: false, "positive"?: false,
"enforcing"?: false}, the engine's defaults; `vms_rule` is VM-to-VM affinity, `hosts_rule`
VM-to-host.  A disabled rule cannot be positive (the engine keeps no polarity for it), and
enforcing means hard (a scheduling filter) rather than soft (a weight).  A group's VMs and
hosts belong to its cluster; its labels add their VMs and hosts as members.  Group names
are unique per cluster, label names overall.  `priority` weighs soft rules.

Events are the engine's audit log (docs/ENGINE_API.md §9), oldest first with increasing
ids; `code` is the AuditLogType (62, 67 migration started, 63 done, 65 failed...), `host` a
migration's source host, `severity` one of normal, warning, error, alert.  `time` is
ISO-8601 text with a UTC offset ("2024-05-01T10:00:00Z"), normalised to the form the
engine writes, with milliseconds ("2024-05-01T10:00:00.000+00:00").

The new sections default to empty; `compact` leaves empty ones out again, so that files
written before they existed keep their exact text.
"""

import datetime
import json
import math
import re

__all__ = ["HOST_STATUSES", "SEVERITIES", "VM_STATUSES", "SnapshotError", "compact",
           "load_snapshot", "validate_affinity_groups", "validate_affinity_labels",
           "validate_cluster", "validate_events", "validate_host", "validate_snapshot",
           "validate_vm"]

HOST_STATUSES = frozenset((
    "connecting", "down", "error", "initializing", "install_failed", "installing",
    "installing_os", "kdumping", "maintenance", "non_operational", "non_responsive",
    "pending_approval", "preparing_for_maintenance", "reboot", "unassigned", "up"))
VM_STATUSES = frozenset((
    "down", "image_locked", "migrating", "not_responding", "paused", "powering_down",
    "powering_up", "reboot_in_progress", "restoring_state", "saving_state", "suspended",
    "unassigned", "unknown", "up", "wait_for_launch"))
# A VM in these states has no host (the engine clears run_on_vds); in these it must have one.
_NOT_RUNNING = frozenset(("down", "suspended", "image_locked"))
_RUNNING = frozenset(("up", "migrating", "powering_up", "powering_down", "paused",
                      "reboot_in_progress", "not_responding"))
SEVERITIES = frozenset(("normal", "warning", "error", "alert"))  # the API's LogSeverity
_SECTIONS = ("clusters", "hosts", "vms", "affinity_groups", "affinity_labels", "events")
_OPTIONAL_SECTIONS = _SECTIONS[3:]

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class SnapshotError(ValueError):
    """A snapshot is not in the format; the message names the entry and the field."""


def _a(noun):
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


class _Entry:
    """Reads the fields of one snapshot entry, raising SnapshotError that names it."""

    def __init__(self, raw, where, known):
        if not isinstance(raw, dict):
            raise SnapshotError(f"{where}: must be an object, got {type(raw).__name__}")
        name = raw.get("name")
        self.where = f"{where} ({name})" if isinstance(name, str) and name not in where else where
        unknown = sorted(k for k in raw if k not in known and not str(k).startswith("_"))
        if unknown:
            self.fail(unknown[0], f"unknown field (known: {', '.join(known)})")
        self.raw = raw

    def fail(self, key, message):
        raise SnapshotError(f"{self.where}: {key}: {message}")

    def get(self, key, default=KeyError):
        if key not in self.raw:
            if default is KeyError:
                self.fail(key, "missing")
            return default
        return self.raw[key]

    def text(self, key, default=KeyError):
        value = self.get(key, default)
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"must be a non-empty string, got {value!r}")
        return value

    def uuid(self, key):
        value = self.get(key)
        if not isinstance(value, str) or not _UUID.fullmatch(value):
            self.fail(key, f"must be a lower-case UUID such as "
                           f"0f1e2d3c-4b5a-4697-8899-aabbccddeeff, got {value!r}")
        return value

    def number(self, key, low, high, *, integer=True, default=KeyError, nullable=False):
        value = self.get(key, default)
        if value is None and nullable:
            return None
        ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if (not ok_type or isinstance(value, bool) or not math.isfinite(value)
                or value < low or (high is not None and value > high)):
            what = "a whole number" if integer else "a number"
            upper = f" and {high}" if high is not None else ""
            span = f"between {low}{upper}" if high is not None else f"of at least {low}"
            self.fail(key, f"must be {what} {span}{', or null' if nullable else ''}, got {value!r}")
        return value

    def choice(self, key, allowed, default=KeyError):
        value = self.get(key, default)
        if not isinstance(value, str) or value not in allowed:
            self.fail(key, f"must be one of {', '.join(sorted(allowed))}, got {value!r}")
        return value

    def flag(self, key, default=KeyError):
        value = self.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, got {value!r}")
        return value

    def ids(self, key, known, what, *, optional=False):
        """A list of distinct ids, each a key of `known`; `what` names one ("VM")."""
        value = self.get(key, [] if optional else KeyError)
        if not isinstance(value, list):
            self.fail(key, f"must be a list of {what} ids, got {value!r}")
        seen = set()
        for i, item in enumerate(value):
            if not isinstance(item, str) or item not in known:
                self.fail(f"{key}[{i}]", f"must be the id of {_a(what)} in the snapshot, got {item!r}")
            if item in seen:
                self.fail(f"{key}[{i}]", f"{item} is listed twice")
            seen.add(item)
        return list(value)


_CLUSTER_KEYS = ("id", "name", "memory_overcommit")
_HOST_KEYS = ("id", "name", "status", "cluster", "memory_mb", "max_scheduling_memory_mb",
              "free_memory_mb", "cpu_load", "cpu_cores", "cpu_threads", "cpu_sockets", "address")
_VM_KEYS = ("id", "name", "status", "memory_mb", "guaranteed_memory_mb", "host", "os_type",
            "cpu_usage", "vcpus", "cluster", "memory_usage")
_GROUP_KEYS = ("id", "name", "cluster", "vms_rule", "hosts_rule", "priority", "vms", "hosts",
               "vm_labels", "host_labels")
_RULE_KEYS = ("enabled", "positive", "enforcing")
_LABEL_KEYS = ("id", "name", "vms", "hosts")
_EVENT_KEYS = ("id", "code", "time", "description", "vm", "host", "severity")


def validate_cluster(raw, where):
    e = _Entry(raw, where, _CLUSTER_KEYS)
    return {"id": e.uuid("id"), "name": e.text("name"),
            "memory_overcommit": e.number("memory_overcommit", 1, 10000, default=100)}


def validate_host(raw, where, clusters):
    """A host entry with defaults filled in; `clusters` maps cluster id -> cluster."""
    e = _Entry(raw, where, _HOST_KEYS)
    h = {"id": e.uuid("id"), "name": e.text("name"), "status": e.choice("status", HOST_STATUSES),
         "cluster": e.choice("cluster", clusters)}
    h["memory_mb"] = e.number("memory_mb", 1, None)
    h["max_scheduling_memory_mb"] = e.number("max_scheduling_memory_mb", 0, None)
    h["free_memory_mb"] = e.number("free_memory_mb", 0, h["memory_mb"], nullable=True)
    h["cpu_load"] = e.number("cpu_load", 0, 100, integer=False)
    h["cpu_sockets"] = e.number("cpu_sockets", 1, 64, default=1)
    h["cpu_cores"] = e.number("cpu_cores", 1, None)
    h["cpu_threads"] = e.number("cpu_threads", h["cpu_cores"], None)
    if h["cpu_cores"] % h["cpu_sockets"]:
        e.fail("cpu_cores", f"{h['cpu_cores']} cores do not split over {h['cpu_sockets']} sockets")
    if h["cpu_threads"] % h["cpu_cores"]:
        e.fail("cpu_threads", f"must be a multiple of cpu_cores ({h['cpu_cores']}), "
                              f"got {h['cpu_threads']}")
    h["address"] = e.text("address", default=h["name"])
    return h


def validate_vm(raw, where, clusters, hosts):
    """A VM entry with defaults filled in; `hosts` maps host id -> validated host."""
    e = _Entry(raw, where, _VM_KEYS)
    v = {"id": e.uuid("id"), "name": e.text("name"), "status": e.choice("status", VM_STATUSES)}
    v["memory_mb"] = e.number("memory_mb", 1, None)
    v["guaranteed_memory_mb"] = e.number("guaranteed_memory_mb", 0, v["memory_mb"])
    host = e.get("host")
    if host is not None and host not in hosts:
        e.fail("host", f"must be the id of a host in the snapshot, or null; got {host!r}")
    if host is not None and v["status"] in _NOT_RUNNING:
        e.fail("host", f"a {v['status']} VM runs nowhere: host must be null")
    if host is None and v["status"] in _RUNNING:
        e.fail("host", f"a VM that is {v['status']} must name the host it runs on")
    v["host"] = host
    v["os_type"] = e.text("os_type")
    v["cpu_usage"] = e.number("cpu_usage", 0, 100, integer=False)
    v["vcpus"] = e.number("vcpus", 1, 4096)
    if "cluster" in e.raw:
        v["cluster"] = e.choice("cluster", clusters)
    elif host is not None:
        v["cluster"] = hosts[host]["cluster"]
    elif len(clusters) == 1:
        v["cluster"] = next(iter(clusters))
    else:
        e.fail("cluster", "missing (needed for a VM without a host when there are several clusters)")
    v["memory_usage"] = e.number("memory_usage", 0, 100, default=50)
    return v


def _rule(e, key):
    r = _Entry(e.get(key), f"{e.where}: {key}", _RULE_KEYS)
    rule = {k: r.flag(k, default=False) for k in _RULE_KEYS}
    if rule["positive"] and not rule["enabled"]:
        r.fail("positive", 'a disabled rule has no polarity (enabled defaults to false): '
                           'add "enabled": true, or drop "positive"')
    return rule


def _group(raw, where, clusters, hosts, vms, labels):
    e = _Entry(raw, where, _GROUP_KEYS)
    g = {"id": e.uuid("id"), "name": e.text("name"), "cluster": e.choice("cluster", clusters),
         "vms_rule": _rule(e, "vms_rule"), "hosts_rule": _rule(e, "hosts_rule"),
         "priority": float(e.number("priority", 0, None, integer=False, default=1.0)),
         "vms": e.ids("vms", vms, "VM"), "hosts": e.ids("hosts", hosts, "host")}
    for key, members, what in (("vms", vms, "VM"), ("hosts", hosts, "host")):
        for i, member in enumerate(g[key]):
            if members[member]["cluster"] != g["cluster"]:
                e.fail(f"{key}[{i}]", f"{what} {members[member]['name']} is not in the group's "
                                      f"cluster {clusters[g['cluster']]['name']}")
    g["vm_labels"] = e.ids("vm_labels", labels, "affinity label", optional=True)
    g["host_labels"] = e.ids("host_labels", labels, "affinity label", optional=True)
    return g


def validate_affinity_groups(groups, clusters, hosts, vms, labels):
    """id -> group for the list `groups`, each checked against the snapshot's entities
    (id -> entity maps; `labels` the validated affinity labels)."""
    entries = [_group(g, f"affinity_groups[{i}]", clusters, hosts, vms, labels)
               for i, g in enumerate(_section("affinity_groups", groups))]
    return _unique("affinity_groups", entries, scope="cluster")


def validate_affinity_labels(labels, hosts, vms):
    """id -> label for the list `labels`; members must be hosts and VMs of the snapshot."""
    entries = []
    for i, raw in enumerate(_section("affinity_labels", labels)):
        e = _Entry(raw, f"affinity_labels[{i}]", _LABEL_KEYS)
        entries.append({"id": e.uuid("id"), "name": e.text("name"),
                        "vms": e.ids("vms", vms, "VM"), "hosts": e.ids("hosts", hosts, "host")})
    return _unique("affinity_labels", entries)


def validate_events(events, hosts, vms):
    """The list `events`, oldest first, checked and normalised (see the module docstring)."""
    checked = []
    for i, raw in enumerate(_section("events", events)):
        e = _Entry(raw, f"events[{i}]", _EVENT_KEYS)
        event = {"id": e.number("id", 1, None)}
        if checked and event["id"] <= checked[-1]["id"]:
            e.fail("id", f"must be greater than the id before it ({checked[-1]['id']}): "
                         "events are listed oldest first")
        event.update(code=e.number("code", 0, None), time=_event_time(e, "time"),
                     description=e.text("description"),
                     vm=_optional_ref(e, "vm", vms, "VM"),
                     host=_optional_ref(e, "host", hosts, "host"),
                     severity=e.choice("severity", SEVERITIES, default="normal"))
        checked.append(event)
    return checked


def _event_time(e, key):
    value = e.get(key)
    try:
        when = datetime.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    # The SDK reads offsets in whole minutes only; a time without one is ambiguous.
    if when is None or when.utcoffset() is None or when.utcoffset().seconds % 60:
        e.fail(key, "must be ISO-8601 text with a UTC offset, such as 2024-05-01T10:00:00Z "
                    f"or 2024-05-01T12:00:00+02:00; got {value!r}")
    return when.isoformat(timespec="milliseconds")


def _optional_ref(e, key, known, what):
    value = e.get(key, None)
    if value is not None and (not isinstance(value, str) or value not in known):
        e.fail(key, f"must be the id of {_a(what)} in the snapshot, or null; got {value!r}")
    return value


def _section(key, value):
    if not isinstance(value, list):
        raise SnapshotError(f"{key} must be a list, got {type(value).__name__}")
    return value


def validate_snapshot(snapshot):
    """A checked copy of `snapshot` with defaults filled in; raises SnapshotError."""
    if not isinstance(snapshot, dict):
        raise SnapshotError(f"a snapshot must be a JSON object, got {type(snapshot).__name__}")
    unknown = sorted(k for k in snapshot if k not in _SECTIONS and not str(k).startswith("_"))
    if unknown:
        raise SnapshotError(f"unknown top-level key {unknown[0]!r} (known: {', '.join(_SECTIONS)})")
    lists = {key: _section(key, snapshot.get(key, [])) for key in _SECTIONS}
    if not lists["clusters"]:
        raise SnapshotError("clusters: at least one cluster is needed")
    clusters = _unique("clusters", [validate_cluster(c, f"clusters[{i}]")
                                    for i, c in enumerate(lists["clusters"])])
    hosts = _unique("hosts", [validate_host(h, f"hosts[{i}]", clusters)
                              for i, h in enumerate(lists["hosts"])])
    vms = _unique("vms", [validate_vm(v, f"vms[{i}]", clusters, hosts)
                          for i, v in enumerate(lists["vms"])])
    labels = validate_affinity_labels(lists["affinity_labels"], hosts, vms)
    groups = validate_affinity_groups(lists["affinity_groups"], clusters, hosts, vms, labels)
    return {"clusters": list(clusters.values()), "hosts": list(hosts.values()),
            "vms": list(vms.values()), "affinity_groups": list(groups.values()),
            "affinity_labels": list(labels.values()),
            "events": validate_events(lists["events"], hosts, vms)}


def compact(snapshot):
    """`snapshot` without its empty optional sections, for writing files."""
    return {k: v for k, v in snapshot.items() if v or k not in _OPTIONAL_SECTIONS}


def _unique(key, entries, scope=None):
    """id -> entry, refusing a repeated id or name (the search language finds hosts by name).

    With `scope`, names need only be unique among entries with the same value of that field
    (affinity group names are unique per cluster).
    """
    by_id, names = {}, {}
    for i, entry in enumerate(entries):
        if entry["id"] in by_id:
            raise SnapshotError(f"{key}[{i}] ({entry['name']}): id {entry['id']} is used twice")
        name = (entry[scope] if scope else None, entry["name"])
        if name in names:
            raise SnapshotError(f"{key}[{i}]: name {entry['name']!r} is already used by "
                                f"{key}[{names[name]}]{' in the same ' + scope if scope else ''}")
        by_id[entry["id"]] = entry
        names[name] = i
    return by_id


def load_snapshot(path):
    """The validated snapshot in the JSON file at `path`; SnapshotError when it is wrong."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise SnapshotError(f"{path}: not valid JSON: {e}") from None
    except OSError as e:
        raise SnapshotError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        return validate_snapshot(data)
    except SnapshotError as e:
        raise SnapshotError(f"{path}: {e}") from None

