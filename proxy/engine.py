"""Engine access for policy units: the engine's state as a shared snapshot, and a live
ovirtsdk4 connection for anything else.

Units run in a forked worker.  The proxy reads the engine once for all calls (a Snapshot,
proxy/state.py; refreshed by proxy/refresh.py at most once per engine.max_age) and every
worker holds it from its fork, so a unit reads it at no cost:

    snap = engine.snapshot()                  # hosts, VMs, clusters, affinity: by id
    for vm in snap.vms_on(host_id): ...
    hosts = engine.hosts(None, host_ids)      # the same data through the older API

`engine.snapshot(max_age=0)` (and max_age=0 on hosts/vms/vm) reads the engine now instead.
`engine.connect()` still gives a live SDK connection, bound to the call's deadline and the
proxy's shared SSO token, for whatever the snapshot lacks; a unit never sees a URL or a
password.  Every engine failure becomes an EngineError whose message names the engine,
what failed and what to check.
"""

import socket
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlencode

import ovirtsdk4 as sdk
import pycurl

from . import readers, sdk_internals
from .state import Host, Snapshot, Vm

__all__ = ["EngineError", "EngineSettings", "Host", "Snapshot", "Vm", "bind", "connect",
           "describe_error", "hold", "hosts", "read_now", "snapshot", "token", "vm", "vms"]

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


class _Binding:
    settings = None
    token = None  # the newest SSO token this process holds
    deadline = None  # time.monotonic() value
    held = None  # the Snapshot this process holds; workers inherit it from the fork server
    static = False  # held comes from a snapshot file: it never gets old
    stale_limit = 60.0  # engine.stale_limit
    refresh_error = None  # why the proxy's last refresh failed, or None


_bound = _Binding()


def bind(settings, token=None, deadline=None, refresh_error=None):
    """Sets what a call uses: the settings, a token to reuse, the call's deadline, and why
    the proxy's last refresh of the snapshot failed (None when it did not)."""
    _bound.settings, _bound.token, _bound.deadline = settings, token, deadline
    _bound.refresh_error = refresh_error


def hold(snap, *, static=False, stale_limit=60.0):
    """Makes `snap` the state this process (and the workers it forks) answers from."""
    _bound.held, _bound.static, _bound.stale_limit = snap, static, stale_limit


def snapshot(max_age=None):
    """The engine's state: the snapshot the proxy shares, or a fresh read.

    max_age None: the shared snapshot, which the proxy keeps within engine.max_age (or, while
    the engine fails, engine.stale_limit).  max_age in seconds: a snapshot no older than
    that, read now if the shared one is older; 0 always reads the engine now (seconds on
    a big engine: use it only where a unit needs it).  Raises EngineError when the engine
    cannot be read and no snapshot recent enough is held.
    """
    held = _bound.held
    if held is not None and (_bound.static or max_age is None or held.age() <= max_age):
        if _bound.static or held.age() <= _bound.stale_limit:
            return held
        raise EngineError(f"the newest engine state is {held.age():.0f} s old, past engine.stale_limit "
                          f"({_bound.stale_limit:g} s): {_bound.refresh_error or 'it could not be refreshed'}")
    if held is None and max_age is None and _bound.refresh_error:
        raise EngineError(_bound.refresh_error)
    return read_now()


def read_now():
    """A Snapshot read from the engine now (version 0: not one the proxy shared)."""
    with connect() as conn, _engine_errors():
        return readers.read_snapshot(conn, version=0, source=_bound.settings.url)


def _shared(max_age):
    """The snapshot to answer hosts()/vms()/vm() from, or None to read the engine live."""
    if max_age == 0 or (_bound.held is None and not _bound.refresh_error):
        return None
    return snapshot(max_age)


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
        return (f"cannot connect to the {where}: {text} — the engine is not reachable at "
                f"{url or 'the configured URL'}: check [engine] url and that the engine is running")
    if code in _TLS_CURL_CODES:
        return (f"TLS with the {where} failed: {text} — check [engine] ca_file "
                "(or insecure, for testing only)")
    # An HTTP status says who failed: 401/403 the credentials, 5xx the engine server itself;
    # only an answer of the wrong kind points at the URL.
    status = getattr(exc, "status", None) or getattr(exc, "code", None)
    if isinstance(status, int) and status in (401, 403):
        return (f"the {where} refused the login for {user} (HTTP {status}): {text} — the credentials "
                "are wrong or the user may not log in: check [engine] user and password_file")
    if isinstance(status, int) and status >= 500:
        return (f"the {where} failed with HTTP {status} (the engine server failed, not the proxy "
                f"or the credentials): {text} — see the engine's log (engine.log)")
    if isinstance(exc, sdk_internals.SsoReplyError):
        return f"{text} — check [engine] url (it should end in /ovirt-engine/api)"
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


# --- what units read -------------------------------------------------------------------------

def hosts(conn, ids=None, *, max_age=None):
    """id -> Host for `ids` (in that order, unknown ids left out), or for every host.

    From the shared snapshot; without one (engine.max_age = 0) or with max_age=0, one
    request whatever the count: all hosts with their statistics, filtered here.
    """
    snap = _shared(max_age)
    if snap is not None:
        found = snap.hosts
    else:
        with _engine_errors():
            found = {h.id: h for h in sdk_internals.RawList(
                conn, "/hosts", {"follow": "statistics"}, readers.hosts_from_xml).list()}
    if ids is None:
        return dict(found)
    if isinstance(ids, str):
        ids = [ids]
    return {i: found[i] for i in ids if i in found}


SEARCH_LIMIT = 4000  # characters; the engine's Apache refuses request lines over 8,190 bytes


def vms(conn, *, running_only=True, with_stats=False, on_hosts=None, max_age=None):
    """The VMs (only those up, by default); cpu_usage only with_stats when read live.

    on_hosts (Host records): only the VMs placed on those hosts.  From the shared snapshot
    (its per-host index: the cost is the VMs asked for, not the engine's size); live, through
    the engine's search by host name, or for so many hosts that the search would not fit
    in a request line, every running VM listed and filtered here.
    """
    snap = _shared(max_age)
    if snap is not None:
        found = (list(snap.vms.values()) if on_hosts is None else
                 [v for h in dict.fromkeys(h.id for h in on_hosts) for v in snap.vms_on(h)])
        return [v for v in found if v.status == "up" or not running_only]
    return _vms_live(conn, running_only, with_stats, on_hosts)


def _vms_live(conn, running_only, with_stats, on_hosts):
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
        found = [readers.vm_record(v) for v in conn.system_service().vms_service().list(**query)]
    if wanted is not None:
        # The search matches names case-insensitively (and `_` may be a wildcard): check ids.
        found = [v for v in found if v.host_id in wanted and (v.status == "up" or not running_only)]
    return found


def vm(conn, vm_id, *, with_stats=False, max_age=None):
    """The VM with this id, or None when the engine does not know it (live: one request)."""
    snap = _shared(max_age)
    if snap is not None:
        return snap.vms.get(vm_id)
    with _engine_errors():
        service = conn.system_service().vms_service().vm_service(vm_id)
        try:
            found = service.get(follow="statistics") if with_stats else service.get()
        except sdk.NotFoundError:
            return None
        return readers.vm_record(found)
