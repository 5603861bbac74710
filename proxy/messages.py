"""Every message that crosses a process boundary, each shape declared once here.

    server      → fork server   Boot (on its stdin), then Spawn, Kill, Refresh (control socket)
    fork server → server        Catalog, WorkerReady (+ the worker's socket), Exited,
                                SnapshotReady, SnapshotFailed
    server      → worker        Request (the worker's own socket)
    worker      → server        Answer
    trial child → fork server   ImportReport (a pipe; see forkserver.discover)

`to_wire` gives a JSON-ready dict tagged with the message's type; `from_wire` checks the
tag and the fields and rebuilds the message, so a peer that sends something else is an
error that names what was wrong, not a KeyError deep in the reader.  wire.py frames them.
"""

import dataclasses

from .errors import UnitError


class MessageError(ValueError):
    """A peer sent something that is not one of the declared messages."""


def to_wire(msg):
    return {"type": type(msg).__name__, **{f.name: getattr(msg, f.name) for f in _FIELDS[type(msg)]}}


def from_wire(data, *expected):
    """The message `data` describes; `expected` (classes) restricts which types are accepted."""
    if not isinstance(data, dict):
        raise MessageError(f"a message must be an object, got {type(data).__name__}")
    cls = _TYPES.get(data.get("type"))
    if cls is None or (expected and cls not in expected):
        wanted = ", ".join(c.__name__ for c in expected or _TYPES.values())
        raise MessageError(f"unexpected message type {data.get('type')!r}; expected {wanted}")
    fields = {k: v for k, v in data.items() if k != "type"}
    names = {f.name for f in _FIELDS[cls]}
    required = {f.name for f in _FIELDS[cls]
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    if not required <= fields.keys() <= names:
        raise MessageError(f"{cls.__name__} needs the fields {sorted(required)} (at most "
                           f"{sorted(names)}), got {sorted(fields)}")
    return cls(**fields)


# --- server ↔ fork server --------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Boot:
    """Everything a fork server needs to start; sent on stdin so the password is never in argv."""
    folder: str
    spares: int
    output_limit: int
    import_timeout: float
    log_level: str
    log_file: str
    engine: dict  # engine.EngineSettings fields
    log_format: str = "text"  # logs.FORMATS
    stale_limit: float = 60.0  # engine.stale_limit
    snapshot_file: str = ""  # serve --snapshot: the state to hold, never refreshed
    memory_limit: int = 0  # plugins.memory_limit: bytes a worker may add; 0: no limit


@dataclasses.dataclass(frozen=True)
class Catalog:
    catalog: dict  # registry.Catalog.to_wire()


@dataclasses.dataclass(frozen=True)
class WorkerReady:
    """A spare worker was forked; its socket travels alongside (SCM_RIGHTS).  It holds the
    snapshot of `version` (0: none)."""
    pid: int
    version: int = 0


@dataclasses.dataclass(frozen=True)
class Refresh:
    """Read the engine's state as snapshot `version`, within `timeout` seconds."""
    version: int
    timeout: float
    token: str | None = None
    events_after: int = -1  # also read the engine's migration events above this index; -1: do not


@dataclasses.dataclass(frozen=True)
class SnapshotReady:
    """Snapshot `version` is held; workers forked from now on hold it."""
    version: int
    read_at: float
    read_seconds: float
    summary: str
    token: str | None = None
    events: list | None = None  # moves.event_record dicts, when asked for (None: not read)


@dataclasses.dataclass(frozen=True)
class SnapshotFailed:
    """Reading snapshot `version` failed; `error` says why (an engine error's message)."""
    version: int
    error: str
    token: str | None = None


@dataclasses.dataclass(frozen=True)
class Exited:
    """A worker was reaped; `how` is describe_status()'s text, `code` its exit code or -signal."""
    pid: int
    how: str
    code: int


@dataclasses.dataclass(frozen=True)
class Spawn:
    """Workers were taken: fork this many replacements at the next quiet moment."""
    count: int = 1


@dataclasses.dataclass(frozen=True)
class Kill:
    """Kill this worker's process group: its call overran."""
    pid: int


# --- server ↔ worker -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Request:
    unit: str  # registry.Unit.key
    method: str  # do_filter, do_score or do_balance
    args: list
    timeout: float  # seconds left in the call when it was sent
    token: str | None  # the engine SSO token to reuse
    refresh_error: str | None = None  # why the proxy's last snapshot refresh failed
    request_id: str = ""  # the engine request's id, for the worker's log lines
    balancing: dict | None = None  # a balance call's limits and recent moves (moves.to_wire)
    reuse: bool = False  # the server may send this worker another call of the unit afterwards


@dataclasses.dataclass(frozen=True)
class Answer:
    """A unit's result, or its error in UnitError.to_wire form; and the newest SSO token.
    reasons: what the unit said about its decision (proxy/explain.py, bounded there)."""
    result: object = None
    error: dict | None = None
    token: str | None = None
    reasons: dict | None = None
    source: str | None = None  # a balance answer's VM: its host in the snapshot held (the ledger)
    # The worker can take another call of the same unit: the call succeeded and left no thread,
    # no child process and no big allocation behind (worker.reusable).
    reusable: bool = False

    @classmethod
    def failed(cls, error, token=None, reasons=None):
        return cls(error=error.to_wire(), token=token, reasons=reasons)

    def outcome(self):
        """The unit's result, or the UnitError it failed with (type and details kept)."""
        return self.result if self.error is None else UnitError.from_wire(self.error)


# --- trial import child → fork server --------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ImportReport:
    """What one plugin module holds (registry.Unit / Rejection dicts), or why it failed to import."""
    units: list = dataclasses.field(default_factory=list)
    rejections: list = dataclasses.field(default_factory=list)
    error: str | None = None


_TYPES = {cls.__name__: cls for cls in (Boot, Catalog, WorkerReady, Exited, Spawn, Kill, Refresh,
                                        SnapshotReady, SnapshotFailed, Request, Answer, ImportReport)}
_FIELDS = {cls: dataclasses.fields(cls) for cls in _TYPES.values()}
