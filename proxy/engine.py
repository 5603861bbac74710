"""Engine access for policy units: a bound ovirtsdk4 connection and a few bulk readers.

Units run in a forked worker.  Before each call the worker binds the engine settings, the
SSO token carried over from earlier calls, and the call's deadline; a unit then does

    with engine.connect() as conn:
        hosts = engine.hosts(conn, host_ids)   # one request, whatever the host count
        vms = engine.vms(conn)                 # one request

and never sees a URL or a password.  Every request is bounded by the deadline, and every
failure (unreachable engine, refused login, HTTP 5xx, timeout, unreadable reply) becomes an
EngineError whose message names the engine, what failed and what to check.
"""

import socket
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlencode

import ovirtsdk4 as sdk
import pycurl
from ovirtsdk4.reader import Reader as _read

from . import sdk_internals

NO_URL = "no engine URL configured: set url in the [engine] section of the config file"

_TLS_CURL_CODES = {35, 51, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91}


@dataclass(frozen=True)
class EngineSettings:
    url: str = ""
    user: str = "admin@internal"
    password: str = ""
    ca_file: str = ""
    insecure: bool = False


class EngineError(Exception):
    """The engine could not be used; the message says which engine, what failed, what to check."""


@dataclass
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


@dataclass
class Vm:
    id: str
    name: str
    status: str | None
    host_id: str | None  # None when the VM is not running
    memory: int | None  # bytes
    guaranteed_memory: int | None  # bytes
    os_type: str | None
    cpu_usage: float | None  # percent; None unless read with statistics
    vcpus: int | None


class _Binding:
    settings = None
    token = None  # the newest SSO token this process holds
    deadline = None  # time.monotonic() value


_bound = _Binding()


def bind(settings, token=None, deadline=None):
    """Sets what connect() uses: the settings, a token to reuse, the call's deadline."""
    _bound.settings, _bound.token, _bound.deadline = settings, token, deadline


def token():
    """The newest SSO token of this process (bound, or from a login by a connect() connection)."""
    return _bound.token


# --- the connection ---------------------------------------------------------------------------

def _set_token(new):
    _bound.token = new


def connect():
    """An ovirtsdk4 Connection from the bound settings, reusing the bound token, bounded by
    the call's deadline; a context manager."""
    s = _bound.settings
    if s is None or not s.url:
        raise EngineError(NO_URL)
    return sdk_internals.Connection(url=s.url.rstrip("/"), username=s.user, password=s.password,
                                    token=_bound.token, ca_file=s.ca_file or None, insecure=s.insecure,
                                    deadline=_bound.deadline, on_token=_set_token)


# --- errors -----------------------------------------------------------------------------------

def _raised_by_sdk(exc):
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and "/ovirtsdk4/" in frames[-1].filename.replace("\\", "/")


def describe_error(exc, settings=None):
    """A one-line message for an engine-access failure, or None if `exc` is not one.

    settings: the EngineSettings the failed access used, when they are not the bound ones."""
    s = settings or _bound.settings
    url = s.url if s and s.url else ""
    where = f"engine at {url}" if url else "engine"
    user = s.user if s else "the configured user"
    if isinstance(exc, (EngineError, sdk_internals.BadReply)):
        return str(exc)
    if not isinstance(exc, (sdk.Error, pycurl.error, TimeoutError, socket.timeout)):
        if isinstance(exc, ValueError) and _raised_by_sdk(exc):
            return f"the {where} sent a reply the SDK cannot read ({exc}); is the url an oVirt API?"
        return None
    code, curl_message = sdk_internals.curl_failure(exc)
    text = f"{curl_message} (curl error {code})" if code is not None else str(exc)
    if isinstance(exc, sdk.AuthError) and "SSO" in text:
        return f"the {where} refused the login for {user}: {text} — check [engine] user and password_file"
    if isinstance(exc, sdk.AuthError):
        return (f"the {where} denied access to {user}: {text} — check that the user may read "
                "hosts and VMs")
    if isinstance(exc, (sdk.TimeoutError, TimeoutError, socket.timeout)) or code == 28:
        return (f"the {where} did not answer before the call's deadline ({text}) — check that the "
                "engine is up and not overloaded, or raise plugins.timeout")
    if isinstance(exc, sdk.ConnectionError) or code in (6, 7):
        return (f"cannot connect to the {where}: {text} — check [engine] url and that the "
                "engine is running")
    if code in _TLS_CURL_CODES:
        return (f"TLS with the {where} failed: {text} — check [engine] ca_file "
                "(or insecure, for testing only)")
    if isinstance(exc, sdk_internals.SsoReplyError):
        return f"{text} — check [engine] url (it should end in /ovirt-engine/api)"
    status = getattr(exc, "code", None)
    if isinstance(status, int) and status >= 500:
        return f"the {where} failed with HTTP {status}: {text} — see the engine's log"
    if isinstance(exc, sdk.NotFoundError):
        return f"the {where} does not know what was asked for: {text}"
    return f"the {where} answered with an error: {text}"


@contextmanager
def _engine_errors():
    try:
        yield
    except EngineError:
        raise
    except Exception as e:
        message = describe_error(e)
        if message is None:
            raise
        raise EngineError(message) from e


# --- readers ----------------------------------------------------------------------------------

def _value(enum):
    return None if enum is None else getattr(enum, "value", str(enum))


def _stats(entity):
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


def _host_record(*, stats, cpu, status, **fields):
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
    return Host(status=_value(status), free_memory=None if free is None else int(free),
                cpu_usage=cpu_usage, cpu_cores=cores, cpu_threads=threads, **fields)


def _vm(v):
    stats = _stats(v)
    cpu = stats.get("cpu.current.total")
    if cpu is None and "cpu.current.guest" in stats:
        cpu = stats["cpu.current.guest"] + stats.get("cpu.current.hypervisor", 0.0)
    t = v.cpu.topology if v.cpu is not None else None
    vcpus = None
    if t is not None and t.sockets is not None:
        vcpus = t.sockets * (t.cores or 1) * (t.threads or 1)
    policy = v.memory_policy
    return Vm(id=v.id, name=v.name, status=_value(v.status),
              host_id=v.host.id if v.host is not None else None, memory=v.memory,
              guaranteed_memory=policy.guaranteed if policy is not None else None,
              os_type=v.os.type if v.os is not None else None, cpu_usage=cpu, vcpus=vcpus)


def _hosts_from_xml(root):
    return [_host_from_xml(e) for e in root]


def _host_from_xml(e):
    """One <host> element; a single pass over its children (ElementPath lookups cost ~2×)."""
    integer, fields, stats, cpu = _read.parse_integer, {}, {}, None
    for child in e:
        tag = child.tag
        if tag == "statistics":
            for stat in child:
                name = datum = None
                for part in stat:
                    if part.tag == "name":
                        name = part.text
                    elif part.tag == "values" and datum is None:
                        datum = part.findtext("value/datum")  # the first value: values[0].datum
                if name and datum is not None:
                    stats[name] = _read.parse_decimal(datum)
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
    return _host_record(
        id=e.get("id"), name=fields.get("name"),
        status=_read.parse_enum(sdk.types.HostStatus, fields.get("status")),
        cluster_id=fields.get("cluster_id"), memory=integer(fields.get("memory")),
        max_scheduling_memory=integer(fields.get("max_scheduling_memory")),
        active_vms=fields.get("active_vms"), stats=stats, cpu=cpu)


def hosts(conn, ids=None):
    """id -> Host for `ids` (in that order, unknown ids left out), or for every host.

    One request whatever the count: all hosts with their statistics, filtered here.
    """
    with _engine_errors():
        found = {h.id: h for h in sdk_internals.RawList(
            conn, "/hosts", {"follow": "statistics"}, _hosts_from_xml).list()}
    if ids is None:
        return found
    if isinstance(ids, str):
        ids = [ids]
    return {i: found[i] for i in ids if i in found}


SEARCH_LIMIT = 4000  # characters; the engine's Apache refuses request lines over 8,190 bytes


def vms(conn, *, running_only=True, with_stats=False, on_hosts=None):
    """The VMs (only those up, by default), in one request; cpu_usage only with_stats.

    on_hosts (engine.Host objects): only the VMs placed on those hosts, through the
    engine's search by host name, which is far cheaper than listing every VM of a big
    engine (20,000 VMs take seconds to parse).  For so many hosts that the search would
    not fit in a request line, every running VM is listed and filtered here instead.
    """
    query, wanted = {}, None
    if on_hosts is not None:
        wanted = {h.id for h in on_hosts}
        if not wanted:
            return []
        search = " or ".join(f"host={name}" for name in dict.fromkeys(h.name for h in on_hosts))
        query["search"] = search if len(urlencode({"search": search})) <= SEARCH_LIMIT else "status=up"
    elif running_only:
        query["search"] = "status=up"
    if with_stats:
        query["follow"] = "statistics"
    with _engine_errors():
        found = [_vm(v) for v in conn.system_service().vms_service().list(**query)]
    if wanted is not None:
        # The search matches names case-insensitively (and `_` may be a wildcard): check ids.
        found = [v for v in found if v.host_id in wanted and (v.status == "up" or not running_only)]
    return found


def vm(conn, vm_id, *, with_stats=False):
    """The VM with this id, or None when the engine does not know it (one request)."""
    with _engine_errors():
        service = conn.system_service().vms_service().vm_service(vm_id)
        try:
            found = service.get(follow="statistics") if with_stats else service.get()
        except sdk.NotFoundError:
            return None
        return _vm(found)
