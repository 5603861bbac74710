"""Reading the engine's state in bulk: hosts, VMs, clusters, affinity groups and labels.

Each list is one request through the SDK's own request path (token, 401 renewal, faults,
deadlines; see sdk_internals.RawList).  Hosts and VMs are read from the XML with
ElementTree and the SDK's value parsers, which gives the same records as the SDK's readers
(tests/test_readers.py compares them) in about a quarter of the time: a 1,000-host,
20,000-VM engine is too big for an object per statistic.  `read_snapshot` is the one
full read the proxy makes per refresh (proxy/refresh.py decides when).
"""

import re
import sys
import time
import xml.etree.ElementTree as ET

import ovirtsdk4 as sdk
from ovirtsdk4.reader import Reader as _read

from . import sdk_internals
from .state import AffinityGroup, AffinityLabel, Cluster, Host, Rule, Snapshot, Vm, index


def value(enum):
    return None if enum is None else getattr(enum, "value", str(enum))


def stats_of(entity):
    out = {}
    for stat in entity.statistics or ():
        if stat.name and stat.values and stat.values[0].datum is not None:
            out[stat.name] = stat.values[0].datum  # always a float, even for integer stats
    return out


def _topology(cpu):
    t = cpu.topology if cpu is not None else None
    if t is None or t.sockets is None or t.cores is None:
        return None, None
    cores = t.sockets * t.cores
    return cores, cores * (t.threads or 1)


def host_record(*, stats, cpu, status, **fields):
    free = stats.get("memory.free")
    if free is None and "memory.used" in stats and "memory.total" in stats:
        free = stats["memory.total"] - stats["memory.used"]
    if "cpu.current.idle" in stats:
        cpu_usage = 100.0 - stats["cpu.current.idle"]
    elif "cpu.current.user" in stats and "cpu.current.system" in stats:
        cpu_usage = stats["cpu.current.user"] + stats["cpu.current.system"]
    else:
        cpu_usage = None
    cores, threads = _topology(cpu)
    return Host(status=value(status), free_memory=None if free is None else int(free),
                cpu_usage=cpu_usage, cpu_cores=cores, cpu_threads=threads, **fields)


def vm_record(v):
    """A Vm from the SDK's Vm object (the live path: one VM, or a search)."""
    stats = stats_of(v)
    cpu = stats.get("cpu.current.total")
    if cpu is None and "cpu.current.guest" in stats:
        cpu = stats["cpu.current.guest"] + stats.get("cpu.current.hypervisor", 0.0)
    t = v.cpu.topology if v.cpu is not None else None
    vcpus = None
    if t is not None and t.sockets is not None:
        vcpus = t.sockets * (t.cores or 1) * (t.threads or 1)
    policy = v.memory_policy
    return Vm(id=v.id, name=v.name, status=value(v.status), cluster_id=v.cluster.id if v.cluster else None,
              host_id=v.host.id if v.host is not None else None, memory=v.memory,
              guaranteed_memory=policy.guaranteed if policy is not None else None,
              os_type=v.os.type if v.os is not None else None, cpu_usage=cpu, vcpus=vcpus)


def hosts_from_xml(body):
    """The Host records of a /hosts?follow=statistics body (bytes)."""
    return _each(body, _host_from_xml)


def _each(body, read):
    root, blocks = _parse(body)
    return [read(e, blocks) for e in root]


def _host_from_xml(e, blocks):
    """One <host> element; a single pass over its children (ElementPath lookups cost ~2×)."""
    integer, fields, stats, cpu = _read.parse_integer, {}, {}, None
    for child in e:
        tag = child.tag
        if tag == "statistics":
            stats = _statistics(child, blocks)
        elif tag in ("name", "memory", "max_scheduling_memory", "status"):
            fields[tag] = child.text
        elif tag == "cluster":
            fields["cluster_id"] = child.get("id")
        elif tag == "summary":
            fields["active_vms"] = integer(child.findtext("active"))
        elif tag == "cpu":
            topology = child.find("topology")
            if topology is not None:
                cpu = sdk.types.Cpu(topology=sdk.types.CpuTopology(
                    sockets=integer(topology.findtext("sockets")), cores=integer(topology.findtext("cores")),
                    threads=integer(topology.findtext("threads"))))
    return host_record(
        id=e.get("id"), name=fields.get("name"),
        status=_read.parse_enum(sdk.types.HostStatus, fields.get("status")),
        cluster_id=fields.get("cluster_id"), memory=integer(fields.get("memory")),
        max_scheduling_memory=integer(fields.get("max_scheduling_memory")),
        active_vms=fields.get("active_vms"), stats=stats, cpu=cpu)


# Statistics are most of a big answer (a VM has ~6-15, each ~10 elements): ElementTree
# would build ~2 million elements for 20,000 VMs.  Each <statistics> block is cut out
# first (bytes.find) and read with two C regexes; the rest, a fifth of the size, goes to
# ElementTree.  tests/test_readers.py checks the records equal the SDK readers' ones.
_OPEN, _CLOSE = b"<statistics>", b"</statistics>"
# One statistic's name and its first datum (values[0].datum, as the SDK reads it).
_STAT = re.compile(rb"<name>\s*([^<]*?)\s*</name>.*?<datum>\s*([^<]*?)\s*</datum>", re.S)


def _parse(body):
    """(root element, [(start, end) of each statistics block in body]): each block is
    replaced by <statistics n="index"/> for ElementTree, and read from body in place."""
    parts, spans, pos = [], [], 0
    while (start := body.find(_OPEN, pos)) >= 0 and (end := body.find(_CLOSE, start)) >= 0:
        parts += (body[pos:start], b'<statistics n="%d"/>' % len(spans))
        spans.append((start + len(_OPEN), end))
        pos = end + len(_CLOSE)
    parts.append(body[pos:])
    return ET.fromstring(b"".join(parts)), (body, spans)


def _statistics(element, blocks):
    """{name: first datum} of a cut-out <statistics> block; a statistic without a value is left out."""
    body, spans = blocks
    pos, end = spans[int(element.get("n"))]
    parse, stats = _read.parse_decimal, {}
    while pos < end:
        stop = body.find(b"</statistic>", pos, end)
        stop = end if stop < 0 else stop
        match = _STAT.search(body, pos, stop)  # one statistic at a time: a missing datum shifts nothing
        if match:
            stats[match.group(1).decode()] = parse(match.group(2).decode())
        pos = stop + len(b"</statistic>")
    return stats


def _shared(text):
    """One string object for a value many VMs repeat (status, OS, host, cluster): less memory,
    and fewer pages a worker copies when it reads them (docs/EXECUTION.md §10)."""
    return None if text is None else sys.intern(text)


def vms_from_xml(body):
    """The Vm records of a /vms?follow=statistics body (bytes)."""
    return _each(body, _vm_from_xml)


def _vm_from_xml(e, blocks):
    """One <vm> element, read like _host_from_xml: one pass over its children."""
    integer, fields, stats, vcpus = _read.parse_integer, {}, {}, None
    for child in e:
        tag = child.tag
        if tag == "statistics":
            stats = _statistics(child, blocks)
        elif tag in ("name", "memory", "status"):
            fields[tag] = child.text
        elif tag in ("host", "cluster"):
            fields[tag] = child.get("id")
        elif tag == "memory_policy":
            fields["guaranteed"] = child.findtext("guaranteed")
        elif tag == "os":
            fields["os"] = child.findtext("type")
        elif tag == "cpu":
            t = child.find("topology")
            sockets = integer(t.findtext("sockets")) if t is not None else None
            if sockets is not None:
                vcpus = sockets * (integer(t.findtext("cores")) or 1) * (integer(t.findtext("threads")) or 1)
    cpu = stats.get("cpu.current.total")
    if cpu is None and "cpu.current.guest" in stats:
        cpu = stats["cpu.current.guest"] + stats.get("cpu.current.hypervisor", 0.0)
    installed, used = stats.get("memory.installed"), stats.get("memory.used")
    return Vm(id=e.get("id"), name=fields.get("name"),
              status=_shared(value(_read.parse_enum(sdk.types.VmStatus, fields.get("status")))),
              host_id=_shared(fields.get("host")), memory=integer(fields.get("memory")),
              guaranteed_memory=integer(fields.get("guaranteed")), os_type=_shared(fields.get("os")),
              cpu_usage=cpu, vcpus=vcpus, cluster_id=_shared(fields.get("cluster")),
              memory_usage=100.0 * used / installed if installed and used is not None else None)


def _rule(r):
    return Rule(bool(r.enabled), bool(r.positive), bool(r.enforcing)) if r is not None else Rule()


def _ids(members):
    return tuple(m.id for m in members or ())


def _group(cluster_id, g):
    vms_rule = _rule(g.vms_rule)
    if g.vms_rule is None and g.positive is not None:  # an engine before 4.1: the legacy fields
        vms_rule = Rule(True, bool(g.positive), bool(g.enforcing))
    return AffinityGroup(id=g.id, name=g.name, cluster_id=cluster_id, vms_rule=vms_rule,
                         hosts_rule=_rule(g.hosts_rule),
                         priority=float(g.priority) if g.priority is not None else 1.0,
                         vm_ids=_ids(g.vms), host_ids=_ids(g.hosts),
                         vm_label_ids=_ids(g.vm_labels), host_label_ids=_ids(g.host_labels))


def read_snapshot(conn, *, version, source):
    """The whole state in 3 + (number of clusters) requests; raises the SDK's errors."""
    started = time.monotonic()
    system = conn.system_service()
    hosts = sdk_internals.RawList(conn, "/hosts", {"follow": "statistics"}, hosts_from_xml).list()
    vms = sdk_internals.RawList(conn, "/vms", {"follow": "statistics"}, vms_from_xml).list()
    clusters = [Cluster(c.id, c.name, _overcommit(c)) for c in system.clusters_service().list()]
    groups, labels = _affinity(system, clusters)
    return Snapshot(version=version, read_at=time.time(), read_seconds=time.monotonic() - started,
                    source=source, clusters=index(clusters), hosts=index(hosts), vms=index(vms),
                    affinity_groups=tuple(groups), affinity_labels=tuple(labels))


def _affinity(system, clusters):
    """(affinity groups, affinity labels); none where the engine has no such API (404)."""
    groups = []
    try:
        for c in clusters:  # member ids come inline since engine 4.1: no follow needed
            service = system.clusters_service().cluster_service(c.id).affinity_groups_service()
            groups += [_group(c.id, g) for g in service.list()]
        # Labels are listed without members unless followed (one request either way).
        labels = [AffinityLabel(l.id, l.name, _ids(l.vms), _ids(l.hosts))
                  for l in system.affinity_labels_service().list(follow="vms,hosts")]
    except sdk.NotFoundError:
        return (), ()
    return tuple(groups), tuple(labels)


def _overcommit(cluster):
    policy = cluster.memory_policy
    over = policy.over_commit if policy is not None else None
    return over.percent if over is not None else None
