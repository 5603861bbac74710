"""XML documents of the simulated engine, in the REST API v4 form ovirtsdk4 4.6 reads.

Every function takes the simulator's plain dicts (the snapshot format of `proxy.snapshot`)
and returns text.  The pieces are split so the simulator can cache them per entity: an
entity's *body* (the opening tag and every child except `<statistics>`) and its
*statistics* (the `<statistic>` elements) are rendered once and joined per request.

v4, not v3 (docs/ENGINE_API.md §3): enums are lower-case element text, only `id`/`href`
are attributes, integers are plain digits, and statistic ids are the engine's name-based
UUIDs.
"""

import functools
import hashlib
import uuid
from decimal import ROUND_HALF_UP, Context, Decimal
from xml.sax.saxutils import escape

API = "/ovirt-engine/api"
MIB = 1024 * 1024
BOOT_TIME = 1_700_000_000  # a fixed epoch second, so documents are reproducible
SWAP_MB = 8192

_TWO_DIGITS = Context(prec=2, rounding=ROUND_HALF_UP)


def stat_id(name):
    """The engine's statistic id: Java's UUID.nameUUIDFromBytes(name), an MD5 v3 UUID."""
    h = bytearray(hashlib.md5(name.encode()).digest())
    h[6] = h[6] & 0x0F | 0x30
    h[8] = h[8] & 0x3F | 0x80
    return str(uuid.UUID(bytes=bytes(h)))


@functools.lru_cache(maxsize=65536)  # snapshot figures repeat; Decimal arithmetic is slow
def decimal(x):
    """A decimal statistic as the engine rounds it: two significant digits, half up.

    Written in plain notation ("100", not Java's "1.0E+2"); the SDK's float() reads either.
    """
    return format(_TWO_DIGITS.plus(Decimal(repr(float(x)))), "f")


def ref(kind, entity_id):
    """A reference element such as `<cluster href=".." id=".."/>`."""
    return f'<{kind} href="{API}/{kind}s/{entity_id}" id="{entity_id}"/>'


def fault(detail, reason="Operation Failed"):
    return (f"<fault><detail>{escape(detail)}</detail>"
            f"<reason>{escape(reason)}</reason></fault>")


def api_root():
    links = "".join(f'<link href="{API}/{c}" rel="{c}"/>'
                    for c in ("affinitylabels", "clusters", "events", "hosts", "vms"))
    return (f"<api>{links}<product_info><name>oVirt Engine (simulated)</name>"
            "<vendor>ovirt.org</vendor><version><build>0</build><full_version>4.5-sim</full_version>"
            "<major>4</major><minor>5</minor><revision>0</revision></version></product_info></api>")


# --- statistics ---------------------------------------------------------------------------

# name -> (description, type, unit); kind is gauge for all of them (docs/ENGINE_API.md §4).
_STAT_META = {
    "memory.total": ("Total memory", "integer", "bytes"),
    "memory.used": ("Used memory", "integer", "bytes"),
    "memory.free": ("Free memory", "integer", "bytes"),
    "memory.shared": ("Shared memory", "integer", "bytes"),
    "swap.total": ("Total swap", "integer", "bytes"),
    "swap.free": ("Free swap", "integer", "bytes"),
    "swap.used": ("Used swap", "integer", "bytes"),
    "ksm.cpu.current": ("KSM CPU usage", "decimal", "percent"),
    "cpu.current.user": ("User CPU usage", "decimal", "percent"),
    "cpu.current.system": ("System CPU usage", "decimal", "percent"),
    "cpu.current.idle": ("Idle CPU usage", "decimal", "percent"),
    "cpu.load.avg.5m": ("CPU 5 minute load average", "decimal", "percent"),
    "boot.time": ("Boot time", "integer", "none"),
    "memory.installed": ("Total memory configured", "integer", "bytes"),
    "cpu.current.guest": ("CPU used by guest", "decimal", "percent"),
    "cpu.current.hypervisor": ("CPU overhead", "decimal", "percent"),
    "cpu.current.total": ("Total CPU usage", "decimal", "percent"),
    "migration.progress": ("Migration progress", "decimal", "percent"),
}
# The text before and after the owner's id, per statistic: only ids and the datum vary.
_STAT_PARTS = {
    name: (stat_id(name),
           f"<name>{name}</name><description>{desc}</description><kind>gauge</kind>"
           f"<type>{vtype}</type><unit>{unit}</unit><values><value><datum>")
    for name, (desc, vtype, unit) in _STAT_META.items()
}


def host_stat_values(h):
    """[(name, datum text)] of a host, in the engine's order; no memory.used/free when unknown."""
    total = h["memory_mb"] * MIB
    load = h["cpu_load"]
    values = [("memory.total", str(total))]
    if h["free_memory_mb"] is not None:
        free = h["free_memory_mb"] * MIB
        values += [("memory.used", str(total - free)), ("memory.free", str(free))]
    values += [
        ("memory.shared", "0"),
        ("swap.total", str(SWAP_MB * MIB)), ("swap.free", str(SWAP_MB * MIB)), ("swap.used", "0"),
        ("ksm.cpu.current", "0"),
        ("cpu.current.user", decimal(load * 0.8)),
        ("cpu.current.system", decimal(load * 0.2)),
        ("cpu.current.idle", decimal(100 - load)),
        # VDSM reports the run-queue length, not a percentage: load × logical CPUs.
        ("cpu.load.avg.5m", decimal(load / 100 * h["cpu_threads"])),
        ("boot.time", str(BOOT_TIME)),
    ]
    return values


def vm_stat_values(v):
    total = v["memory_mb"] * MIB
    usage = v["cpu_usage"]
    return [
        ("memory.installed", str(total)),
        ("memory.used", str(total * v["memory_usage"] // 100)),
        ("cpu.current.guest", decimal(usage * 0.9)),
        ("cpu.current.hypervisor", decimal(usage * 0.1)),
        ("cpu.current.total", decimal(usage)),
        ("migration.progress", "0"),
    ]


def statistics(kind, owner_id, values):
    """The `<statistic>` elements (no wrapper) for `values` of the `kind` ("host"/"vm") entity."""
    back = ref(kind, owner_id)
    base = f"{API}/{kind}s/{owner_id}/statistics/"
    out = []
    for name, datum in values:
        sid, head = _STAT_PARTS[name]
        out.append(f'<statistic href="{base}{sid}" id="{sid}">{head}{datum}'
                   f"</datum></value></values>{back}</statistic>")
    return "".join(out)


def statistic_named(kind, owner_id, values, wanted_id):
    """One `<statistic>` document by its id, or None."""
    for name, datum in values:
        if _STAT_PARTS[name][0] == wanted_id:
            return statistics(kind, owner_id, [(name, datum)])
    return None


# --- entities -----------------------------------------------------------------------------

def host_body(h, summary):
    """`<host ...>` and its children, without `<statistics>` and without `</host>`.

    summary: (active, migrating, total) VM counts on the host.
    """
    hid = h["id"]
    sockets = h["cpu_sockets"]
    cores = h["cpu_cores"] // sockets
    threads = h["cpu_threads"] // h["cpu_cores"]
    active, migrating, total = summary
    return (f'<host href="{API}/hosts/{hid}" id="{hid}"><name>{escape(h["name"])}</name>'
            f'<link href="{API}/hosts/{hid}/statistics" rel="statistics"/>'
            f'<address>{escape(h["address"])}</address>'
            f"<cpu><name>Intel Xeon (simulated)</name><speed>2900</speed><topology>"
            f"<cores>{cores}</cores><sockets>{sockets}</sockets><threads>{threads}</threads>"
            f"</topology></cpu>"
            f'<max_scheduling_memory>{h["max_scheduling_memory_mb"] * MIB}</max_scheduling_memory>'
            f'<memory>{h["memory_mb"] * MIB}</memory><status>{h["status"]}</status>'
            f"<summary><active>{active}</active><migrating>{migrating}</migrating>"
            f"<total>{total}</total></summary><type>rhel</type>{ref('cluster', h['cluster'])}")


def vm_body(v, host_ref):
    """`<vm ...>` and its children, without `<statistics>` and without `</vm>`."""
    vid = v["id"]
    memory = v["memory_mb"] * MIB
    return (f'<vm href="{API}/vms/{vid}" id="{vid}"><name>{escape(v["name"])}</name>'
            f'<link href="{API}/vms/{vid}/statistics" rel="statistics"/>'
            f"<cpu><architecture>x86_64</architecture><topology><cores>1</cores>"
            f'<sockets>{v["vcpus"]}</sockets><threads>1</threads></topology></cpu>'
            f"<memory>{memory}</memory><memory_policy>"
            f'<guaranteed>{v["guaranteed_memory_mb"] * MIB}</guaranteed><max>{memory * 4}</max>'
            f'</memory_policy><os><type>{escape(v["os_type"])}</type></os>'
            f'<status>{v["status"]}</status><type>server</type>{ref("cluster", v["cluster"])}'
            f"{host_ref}")


def cluster_xml(c):
    cid = c["id"]
    return (f'<cluster href="{API}/clusters/{cid}" id="{cid}"><name>{escape(c["name"])}</name>'
            f'<link href="{API}/clusters/{cid}/affinitygroups" rel="affinitygroups"/>'
            f"<cpu><architecture>x86_64</architecture><type>Intel Nehalem Family</type></cpu>"
            f'<memory_policy><over_commit><percent>{c["memory_overcommit"]}</percent></over_commit>'
            f"</memory_policy><version><major>4</major><minor>7</minor></version></cluster>")
