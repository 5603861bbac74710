"""The warm process: imports the SDK and the plugins once, then forks the workers that run calls.

Started by `executor.py` as a fresh interpreter (`python -m proxy.forkserver FD`), not
forked from the server, so its image holds only what workers need: every fork copies less
(docs/EXECUTION.md §3.1: ~0.6 ms of CPU a call).  It is the one owner of worker processes:
it forks them, each in its own process group, kills a group on request (TERM, a bounded
wait, then KILL), and reaps every exit.  It is also a child subreaper, so grandchildren
that outlive their worker come back here to be reaped instead of lingering.

The control messages (Spawn, Kill; Catalog, WorkerReady, Exited) are declared in
messages.py.  Every exit it reaps is reported to the server and logged with its cause.
"""

import ctypes
import json
import logging
import os
import selectors
import signal
import socket
import sys
import time

from . import engine, exit_at_low_priority, holding, logs, messages, registry, wire, worker
from .spares import Spares

log = logging.getLogger("proxy.forkserver")

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
WORKER_FAILED = 70  # EX_SOFTWARE: a worker failed outside the unit's code (logged)
KILL_GRACE = 0.2  # seconds between SIGTERM and SIGKILL for a timed-out unit

_libc = ctypes.CDLL(None, use_errno=True)


def describe_status(status):
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return f"was killed by signal {sig} ({signal.Signals(sig).name})"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"


def _fork_child():
    """fork() with the child in its own process group and killed if we die."""
    pid = os.fork()
    if pid:
        try:
            os.setpgid(pid, pid)  # done on both sides so no kill can race the child's own call
        except OSError:
            pass
        return pid
    os.setpgid(0, 0)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    return 0


# --- discovery ---------------------------------------------------------------------------

def discover(folder, timeout):
    """Import each plugin module in a throw-away child first; return the Catalog.

    All modules are tried at once, so a hanging module costs one timeout, not one each.
    """
    children = {}  # pid -> (path, read end of its report pipe)
    for path in registry.module_files(folder):
        r, w = os.pipe()
        pid = _fork_child()
        if pid == 0:
            os.close(r)
            _report_and_exit(w, registry.trial_import(path))
        os.close(w)
        children[pid] = (path, r)
    reports, unfinished = _read_reports({pid: r for pid, (_, r) in children.items()}, timeout)
    found = []
    for pid, (path, r) in children.items():
        status = _kill_group_and_reap(pid)
        os.close(r)
        found.append(registry.from_report(path, _import_report(
            path, reports[pid], status, pid in unfinished, timeout)))
    return registry.merge(found)


def _report_and_exit(fd, report):
    with os.fdopen(fd, "w") as f:
        json.dump(messages.to_wire(report), f)
    os._exit(0)


def _read_reports(pipes, timeout):
    """({pid: bytes read}, {pids whose pipe was still open at the deadline}) for {pid: fd}."""
    deadline = time.monotonic() + timeout
    buffers = {pid: bytearray() for pid in pipes}
    open_pids = set(pipes)
    with selectors.DefaultSelector() as sel:
        for pid, fd in pipes.items():
            sel.register(fd, selectors.EVENT_READ, pid)
        while open_pids:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for key, _ in sel.select(remaining):
                chunk = os.read(key.fd, 65536)
                if chunk:
                    buffers[key.data] += chunk
                else:
                    sel.unregister(key.fd)
                    open_pids.discard(key.data)
    return buffers, open_pids


def _kill_group_and_reap(pid):
    """Always, even after a clean exit: whatever an import left running in the group goes too."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _, status = os.waitpid(pid, 0)
    log.debug("trial import child %d %s", pid, describe_status(status))
    return status


def _import_report(path, data, status, unfinished, timeout):
    if unfinished:
        return messages.ImportReport(
            error=f"did not finish importing within {timeout:g} s (plugins.timeout); killed")
    try:
        return messages.from_wire(json.loads(data), messages.ImportReport)
    except ValueError:  # no report (it died) or a broken one (it wrote to the pipe itself)
        log.warning("trial import of %s %s without a report", path.name, describe_status(status))
        return messages.ImportReport(error=f"{describe_status(status)} while being imported")


def load_units(folder, catalog):
    """Import the accepted modules here, for the workers; returns ({unit key: class}, catalog)."""
    classes, failed = {}, []
    modules = {}
    for unit in catalog.units:
        if unit.module not in modules:
            try:
                modules[unit.module] = registry.load_module(os.path.join(folder, unit.module))
            except BaseException as e:  # imported fine in the trial child; flaky at import time
                modules[unit.module] = None
                log.error("plugin %s failed to import a second time: %s", unit.module, e)
                failed.append(registry.Rejection(unit.module, "", f"failed to import: {e}"))
        if modules[unit.module] is not None:
            classes[unit.key] = getattr(modules[unit.module], unit.name)
    if failed:
        catalog = registry.Catalog(tuple(u for u in catalog.units if modules[u.module] is not None),
                                   catalog.rejections + tuple(failed))
    return classes, catalog


# --- serving -----------------------------------------------------------------------------

class ForkServer:
    def __init__(self, ctl, boot):
        self.ctl = ctl
        self.folder = boot.folder
        self.spares = boot.spares
        self.limit = boot.output_limit
        self.settings = engine.EngineSettings(**boot.engine)
        self.boot = boot
        self.version = 0  # of the snapshot held for the workers; 0: none
        self.read = None  # the refresh in progress: a holding.Read
        self.readers_done = set()  # pids of reading children that answered and have not exited yet
        self.workers = {}  # pid -> kill deadline (None while it is not being killed)
        self.spare = Spares()
        self.pending = 0  # replacement forks asked for
        self.fork_at = None
        self.classes = {}

    def run(self, import_timeout):
        catalog = discover(self.folder, import_timeout)
        self.classes, catalog = load_units(self.folder, catalog)
        self._tell(messages.Catalog(catalog.to_wire()))
        if self.boot.snapshot_file:
            snap = holding.load_file(self.boot.snapshot_file)
            self._adopt(snap, static=True)
            self._tell(messages.SnapshotReady(snap.version, snap.read_at, 0.0, snap.summary()))
        self.pending, self.fork_at = self.spares, time.monotonic()

        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # the handler only exists to wake select
        sel = selectors.DefaultSelector()
        sel.register(self.ctl, selectors.EVENT_READ, "ctl")
        sel.register(wake_r, selectors.EVENT_READ, "wake")
        self.sel = sel
        self._keep = (self.ctl.fileno(), wake_r, wake_w, sel.fileno())
        running = True
        while running or self.workers:
            for key, _ in sel.select(self._next_timer()):
                if key.data == "wake":
                    os.read(wake_r, 4096)
                elif key.data == "read":
                    if self.read.feed():  # the whole answer: adopt it now; the child may
                        self._finish_read()  # still be spooling it for the journal
                elif not self._on_control():
                    running = False
                    sel.unregister(self.ctl)
                    self._stop_all()
            self._reap()
            self._run_timers(running)
        self._kill_strays()  # nothing a unit started may outlive the fork server

    def _on_control(self):
        try:
            data, fds = wire.recv_control(self.ctl)
        except OSError:
            return False
        for fd in fds:
            os.close(fd)
        if data is None:
            return False
        msg = messages.from_wire(data, messages.Spawn, messages.Kill, messages.Refresh)
        if isinstance(msg, messages.Refresh):
            self._start_read(msg)
        elif isinstance(msg, messages.Spawn):
            self.spare.taken(msg.count)
            self.pending += msg.count
            self.fork_at = min(self.fork_at or float("inf"), time.monotonic() + self.spare.replace_delay())
        else:
            self._kill(msg.pid)
        return True

    def _fork_worker(self):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = _fork_child()
        if pid == 0:
            code = 0
            try:
                for fd in self._keep:
                    os.close(fd)
                ours.close()
                worker.limit_memory(self.boot.memory_limit)
                worker.serve(theirs, self.classes, self.settings, self.limit)
            except BaseException:
                # The proxy's own failure, not the unit's (unit errors are answers):
                # the traceback goes to the log; the exit code tells the fork server.
                log.exception("worker %d failed outside the unit call", os.getpid())
                code = WORKER_FAILED
            finally:
                exit_at_low_priority(code)
        theirs.close()
        self.workers[pid] = None
        self.spare.forked()
        self._tell(messages.WorkerReady(pid, self.version), [ours.fileno()])
        ours.close()  # if the server is gone, this makes the worker exit

    def _kill(self, pid):
        if pid in self.workers and self.workers[pid] is None:
            self._signal_group(pid, signal.SIGTERM)
            self.workers[pid] = time.monotonic() + KILL_GRACE

    def _signal_group(self, pid, sig):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass

    def _stop_all(self):
        for pid in list(self.workers):
            self._kill(pid)

    def _next_timer(self):
        times = [t for t in self.workers.values() if t not in (None, float("inf"))]
        if self.read is not None and self.read.kill_at is not None:
            times.append(self.read.kill_at)
        if self.pending and self.fork_at is not None:
            times.append(self.fork_at)
        return max(0.0, min(times) - time.monotonic()) if times else None

    def _run_timers(self, running):
        now = time.monotonic()
        if self.read is not None and self.read.kill_at is not None and self.read.kill_at <= now:
            log.warning("the engine state reader %d overran its deadline; killing it", self.read.pid)
            self._signal_group(self.read.pid, signal.SIGKILL)
            self.read.kill_at = None
        for pid, kill_at in self.workers.items():
            if kill_at is not None and kill_at <= now:
                self._signal_group(pid, signal.SIGKILL)
                self.workers[pid] = float("inf")
        if not running:
            self.pending = 0
        quiet = self.spare.all_idle(len(self.workers))
        while self.pending and self.fork_at is not None and (self.fork_at <= now or quiet):
            self.pending -= 1
            self._fork_worker()
        if not self.pending:
            self.fork_at = None

    def _kill_strays(self):
        """SIGKILL every child but the workers and the state reader: what a unit started
        (setsid, a daemon's double fork) comes back here, the subreaper, when its parent ends;
        its own children come back when it dies, and the next reap finds them."""
        known = set(self.workers) | self.readers_done | ({self.read.pid} if self.read is not None else set())
        try:
            with open(f"/proc/self/task/{os.getpid()}/children") as f:
                children = [int(pid) for pid in f.read().split()]
        except OSError:
            return
        for pid in children:
            if pid not in known:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _reap(self):
        reaped = False
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                info = None
            if info is None or info.si_pid == 0:
                return reaped and self._kill_strays()  # a call (or a stray) ended: its leftovers go
            reaped = True
            pid = info.si_pid
            if pid in self.workers:
                # The worker is a zombie, so its pid (= its group id) cannot be reused yet:
                # kill whatever it left running in its group before letting the pid go.
                self._signal_group(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            self._reaped(pid, status)

    def _reaped(self, pid, status):
        """Log every exit with its cause; report workers' exits, so the server can say how
        a unit that never answered ended."""
        how = describe_status(status)
        if self.read is not None and pid == self.read.pid:
            self._finish_read(how)
            return
        if pid in self.readers_done:
            self.readers_done.discard(pid)
            log.log(logging.DEBUG if status == 0 else logging.WARNING, "engine state reader %d %s", pid, how)
            return
        self.spare.at_most(len(self.workers))
        kill_at = self.workers.pop(pid, "not ours")
        if kill_at == "not ours":
            log.info("process %d (left behind by a unit, reparented here) %s", pid, how)
            return
        if kill_at is not None:  # we killed it: its call overran, or the proxy is stopping
            log.info("worker %d %s, as asked", pid, how)
        else:
            log.log(logging.DEBUG if status == 0 else logging.WARNING, "worker %d %s", pid, how)
        self._tell(messages.Exited(pid, how, _exit_code(status)))

    # -- the engine state the workers hold ----------------------------------------------

    def _start_read(self, refresh):
        if self.read is not None:
            return  # one read at a time: the server asks again if it still needs one
        r, w = os.pipe()
        pid = _fork_child()
        if pid == 0:
            os.close(r)
            for fd in self._keep:
                os.close(fd)
            holding.read_in_child(w, self.settings, refresh)
        os.close(w)
        self.read = holding.Read(pid, r, refresh.version, time.monotonic() + refresh.timeout + KILL_GRACE)
        self.sel.register(r, selectors.EVENT_READ, "read")

    def _finish_read(self, how=None):
        """The answer is whole (how None: the pipe ended, the child may still be spooling),
        or the child has exited (how: the way it ended)."""
        read, self.read = self.read, None
        self.readers_done |= {read.pid} if how is None else set()
        if read.fd in self.sel.get_map():
            self.sel.unregister(read.fd)
            while not read.feed():  # the child has exited: what is left is in the pipe
                pass
        # Unpickling stalls this loop ~0.15 s on a big engine: calls take spares or warm
        # workers meanwhile (docs/EXECUTION.md §10 says why no extra spares are forked first).
        snap, error, token = read.outcome(how)
        if snap is None:
            self._tell(messages.SnapshotFailed(read.version, error, token))
            return
        self._adopt(snap)
        self._tell(messages.SnapshotReady(snap.version, snap.read_at, snap.read_seconds,
                                          snap.summary(), token, read.events))

    def _adopt(self, snap, static=False):
        holding.adopt(snap, static=static, stale_limit=self.boot.stale_limit)
        self.version = snap.version
        # Fresh spares now: the server drops the stale ones as these arrive.
        self.pending += self.spares
        self.fork_at = time.monotonic()

    def _tell(self, msg, fds=()):
        try:
            wire.send_control(self.ctl, messages.to_wire(msg), fds)
        except OSError:
            pass  # the server is gone; we are shutting down anyway


def _exit_code(status):
    return os.waitstatus_to_exitcode(status)  # -N for a signal, as subprocess does


def main():
    ctl = socket.socket(fileno=int(sys.argv[1]))
    boot = messages.from_wire(json.loads(sys.stdin.read()), messages.Boot)
    logs.configure(boot.log_level, boot.log_file, boot.log_format)
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1)
    # No PDEATHSIG here: it fires when the *thread* that started us ends, and the server
    # starts fork servers from short-lived threads.  The control socket's EOF stops us instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole terminal group; the server decides
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    ForkServer(ctl, boot).run(boot.import_timeout)


if __name__ == "__main__":
    main()
