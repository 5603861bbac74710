"""What runs inside one forked worker: one unit call, then exit; or, for a unit that keeps no
state between calls (registry.Unit.reuse_worker), more calls of that unit while each ends clean.

The worker was forked from the warm fork server, so the SDK and the plugin modules are
already imported and the call costs no interpreter start.  It answers over its own
socket, never over stdout: whatever the unit prints cannot corrupt the answer.  The legacy
convention (print the result as a Python literal) still works, through a bounded capture.
"""

import ast
import fcntl
import io
import logging
import os
import resource
import sys
import time

from . import balancing, engine, explain, messages, moves, registry, wire
from .errors import BadUnitOutput, EngineUnavailable, UnitError, UnitNotFound, UnitRaised

log = logging.getLogger("proxy.worker")
STDERR_LIMIT = 64 * 1024  # bytes of a call's stderr kept; the rest is dropped
# A worker that grew by more than this during its calls is not reused: memory a unit took
# and Python kept would stay with every idle warm worker (bytes of resident memory).
REUSE_GROWTH_MAX = 64 * 1024 * 1024


class StdoutCapture:
    """Points fd 1 at a sealed in-memory file a little larger than the output limit.

    Writes past its end fail (EPERM), so however much a unit prints, the capture costs at
    most limit + slack bytes of memory, needs no reader thread (a thread costs a fresh
    fork ~0.7 ms of CPU) and never makes the unit block.  A grandchild that keeps the file
    open changes nothing: nobody waits for an end of file.  Single use, like the worker.
    """

    SLACK = 1 << 16  # larger than a page, so output always passes the limit before writes fail

    def __init__(self, limit):
        self.limit = limit
        sys.stdout.flush()
        fd = os.memfd_create("unit-stdout", os.MFD_ALLOW_SEALING)
        os.ftruncate(fd, limit + self.SLACK)  # sparse: memory is used only as it is written
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK)
        os.dup2(fd, 1)  # the duplicate is inheritable: a unit's subprocesses print here too
        os.close(fd)
        # print() goes through sys.stdout, which a plugin's import may have replaced.
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace")

    def printed(self):
        """Bytes written to stdout so far."""
        try:
            sys.stdout.flush()
        except Exception:  # a unit may have closed or replaced sys.stdout, or hit the end
            pass
        try:
            return os.lseek(1, 0, os.SEEK_CUR)
        except OSError:
            return 0

    def overflowed(self):
        return self.printed() > self.limit

    def too_much(self):
        return BadUnitOutput(f"printed more than the output limit of {self.limit} bytes to stdout "
                             "(plugins.output_limit)")

    def text(self):
        """What the unit printed; only asked for when it returned nothing (the legacy way)."""
        n = self.printed()
        if n > self.limit:
            raise self.too_much()
        return os.pread(1, n, 0).decode("utf-8", "replace")


def limit_memory(extra):
    """Cap this worker's address space at what it has now plus `extra` bytes (0: no cap).

    RLIMIT_AS, measured from the worker's size at fork: the fork server's image (the SDK,
    the plugins, the engine snapshot it holds) is shared copy-on-write and already counted,
    so the limit bounds what the unit adds, however big the snapshot.  RLIMIT_DATA would
    miss file mappings and memory a unit maps itself; RSS has no enforced limit.  The
    address space is larger than what is resident (thread stacks, malloc arenas): the
    default leaves room for that.  Subprocesses a unit starts inherit the cap.
    """
    if not extra:
        return
    with open("/proc/self/statm", "rb") as f:
        size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    _memory.limit = extra
    resource.setrlimit(resource.RLIMIT_AS, (size + extra, size + extra))


class _memory:
    limit = 0  # plugins.memory_limit as applied to this worker


class _Forgiving(io.RawIOBase):
    """fd 2 for Python code: a write the sealed file refuses is dropped, not raised, so a
    chatty unit is cut short in the log, never failed for it."""

    def __init__(self, fd):
        self.fd, self.attempted = fd, 0

    def writable(self):
        return True

    def write(self, data):
        self.attempted += len(data)
        try:
            return os.write(self.fd, data)
        except OSError:
            return len(data)


def _writes_to_fd(handler, fd):
    if not isinstance(handler, logging.StreamHandler) or not getattr(handler.stream, "fileno", None):
        return False
    try:
        return handler.stream.fileno() == fd
    except (OSError, ValueError):
        return False


class StderrCapture:
    """Points fd 2 at a sealed in-memory file of `limit` bytes; log() puts what the unit
    wrote there in the proxy's log, on one line with the request id and the unit's name,
    control characters escaped: a unit can neither flood the log nor forge a line in it."""

    LOGGED = 4096  # characters of it that reach the log

    def __init__(self, limit):
        self.limit = limit
        sys.stderr.flush()
        on_stderr = [h for h in logging.getLogger().handlers if _writes_to_fd(h, 2)]
        if on_stderr:  # the proxy's own log, if it goes to stderr, stays there (once: a reused
            log_fd = os.dup(2)  # worker's second capture finds the log already moved)
            for handler in on_stderr:
                handler.setStream(io.TextIOWrapper(io.FileIO(log_fd, "w", closefd=False), write_through=True))
        fd = os.memfd_create("unit-stderr", os.MFD_ALLOW_SEALING)
        os.ftruncate(fd, limit)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK)
        os.dup2(fd, 2)
        os.close(fd)
        self.raw = _Forgiving(2)
        sys.stderr = io.TextIOWrapper(self.raw, encoding="utf-8", errors="backslashreplace",
                                      write_through=True)

    def log(self, request):
        try:
            sys.stderr.flush()
        except Exception:  # a unit may have replaced or closed sys.stderr
            pass
        written = os.lseek(2, 0, os.SEEK_CUR)
        if not written:
            return
        text = os.pread(2, min(written, self.LOGGED), 0).decode("utf-8", "replace")
        escaped = text.encode("unicode_escape").decode("ascii")
        more = max(written, self.raw.attempted) - len(text)
        log.warning("request %s unit %s wrote to stderr: %s%s", request.request_id or "-",
                    request.unit.split(":")[-1], escaped,
                    f" [... {more} more bytes not logged]" if more > 0 else "")


def literal_from_stdout(text):
    """The legacy answer: the printed Python literal (the whole output, or its last line)."""
    text = text.strip()
    if not text:
        return None
    for candidate in (text, text.splitlines()[-1].strip()):
        try:
            return ast.literal_eval(candidate)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
    raise BadUnitOutput(f"returned nothing and its stdout is not a Python literal: {_clip(text)!r}")


def _clip(text, n=200):
    return text if len(text) <= n else text[:n] + "…"


def run_call(units, request, settings, limit, capture=None):
    """Run one unit call (a messages.Request); return the encoded messages.Answer (never raises).

    capture: a StdoutCapture started ahead (serve() prepares one before the request
    arrives); None to start one here.
    """
    return _run(units, request, settings, limit, capture, None)[0]


def _run(units, request, settings, limit, capture, resident):
    """(the encoded Answer, whether it says the worker is reusable).  resident: this worker's
    resident bytes when it became a spare; given, and asked by request.reuse, the answer says
    whether the worker can take another call of the unit (reusable())."""
    again = False
    try:
        value = _call_unit(units, request, settings, limit, capture)
        again = bool(request.reuse and resident is not None and reusable(capture, resident))
        encoded = wire.encode(messages.to_wire(messages.Answer(result=value, token=engine.token(),
                                                               reasons=explain.collected(),
                                                               source=_source_of(request, value),
                                                               reusable=again)))
    except UnitError as e:
        return _failure(e), False
    except (TypeError, ValueError) as e:  # the result cannot be encoded (odd types, NaN keys…)
        return _failure(BadUnitOutput(f"returned a value the engine cannot receive: {e}")), False
    if len(encoded) > limit:
        return _failure(BadUnitOutput(f"answer of {len(encoded)} bytes exceeds the output limit of "
                                      f"{limit} (plugins.output_limit)")), False
    return encoded, again


def resident_bytes():
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reusable(capture, resident):
    """True when the call left this worker as it found it, as far as the next call of the
    same unit can tell: stdout within its limit, no thread and no child process still
    running (they would outlive the call's timeout), and no more than REUSE_GROWTH_MAX
    bytes of memory kept."""
    if capture is None or capture.overflowed():
        return False
    try:
        if len(os.listdir("/proc/self/task")) != 1:
            return False
        with open(f"/proc/self/task/{os.getpid()}/children") as f:
            if f.read().strip():
                return False
        return resident_bytes() - resident <= REUSE_GROWTH_MAX
    except OSError:
        return False


def _source_of(request, value):
    """The host the VM a balance answer names runs on in the snapshot this worker holds
    (None: another kind of call, no VM, or no snapshot): the ledger's record of the move."""
    if request.method != "do_balance" or not isinstance(value, (list, tuple)) or len(value) != 2 \
            or not isinstance(value[0], str):
        return None
    held = engine._bound.held  # the fork server's snapshot, inherited: no request, no copy
    vm = held.vms.get(value[0].lower()) if held is not None else None
    return vm.host_id if vm is not None else None


def _failure(error):
    return wire.encode(messages.to_wire(messages.Answer.failed(error, engine.token(), explain.collected())))


def _call_unit(units, request, settings, limit, capture):
    """The unit's return value (or its printed literal); every failure as a UnitError."""
    cls = units.get(request.unit)
    if cls is None:
        raise UnitNotFound(f"unit {request.unit} is not loaded in this worker")
    engine.bind(settings, token=request.token, deadline=time.monotonic() + request.timeout,
                refresh_error=request.refresh_error)
    if request.method == "do_balance":  # the history stays: the fork server's, inherited at fork
        balancing.bind(*(moves.from_wire(request.balancing) if request.balancing else ()))
    capture = capture or StdoutCapture(limit)
    try:
        value = getattr(cls(), request.method)(*request.args)
    except SystemExit as e:
        raise UnitRaised(f"called sys.exit({e.code!r}) during the call", exit_code=str(e.code)) from None
    except BaseException as e:
        if capture.overflowed():  # its failed print is the symptom, not the cause
            raise capture.too_much() from None
        if isinstance(e, MemoryError) and _memory.limit:
            raise UnitRaised(f"exceeded plugins.memory_limit ({_memory.limit} bytes) and failed with "
                             "MemoryError; use less memory or raise plugins.memory_limit",
                             exception="MemoryError", where=registry.where(e)) from None
        message = engine.describe_error(e)
        if message:
            raise EngineUnavailable(message, exception=type(e).__name__) from None
        at = registry.where(e)
        raise UnitRaised(f"{type(e).__name__}: {_clip(str(e), 500)}" + (f" (at {at})" if at else ""),
                         exception=type(e).__name__, where=at) from None
    if value is None:
        value = literal_from_stdout(capture.text())
    return value


def serve(sock, units, settings, limit):
    """Wait for a request, answer it, and stay alive until the server has read it; when the
    answer said the worker is reusable, wait for the next request instead (the server closes
    the socket when it wants no more: a stale snapshot, plugins.worker_calls, idle too long).

    Everything a call needs that does not depend on the request (the stdout capture, the
    first use of the JSON encoder) is set up while the worker waits as a spare:
    in a fresh fork, first use is what costs (copy-on-write faults, ~0.8 ms measured).
    Staying until the server closes its end keeps the exit's page unmapping out of the
    caller's critical path (docs/EXECUTION.md §4.4).
    """
    capture = StdoutCapture(limit)
    errors = StderrCapture(STDERR_LIMIT)
    wire.decode(wire.encode(messages.to_wire(messages.Answer(result=["warm-up"]))))
    resident = resident_bytes()
    while True:
        data = wire.recv_frame(sock, 1 << 30)
        if data is None:  # the server dropped this spare (or warm) worker
            return
        request = messages.from_wire(data, messages.Request)
        answer, again = _run(units, request, settings, limit, capture, resident)
        wire.send_frame(sock, answer)
        errors.log(request)  # after the answer: off the call's path
        if not again:
            sock.recv(1)
            return
        # The next call of this unit starts as this one did: fresh captures, no reasons.
        capture, errors = StdoutCapture(limit), StderrCapture(STDERR_LIMIT)
        explain.reset()
