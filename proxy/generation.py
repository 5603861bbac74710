"""One generation: a fork server with the plugin code of one moment, and the calls it runs.

When the plugin files change (or on SIGHUP) the executor starts a new generation for new
calls; the old one finishes the calls it has, then its fork server is stopped: closed
control socket, a bounded wait, SIGTERM, a bounded wait, SIGKILL, and reaped, with its
exit logged.  Workers themselves are owned by the fork server (forkserver.py); this side
takes the spares it hands over, sends each its request, reads the answers, and asks the
fork server to kill a worker whose call overran.
"""

import collections
import dataclasses
import json
import logging
import selectors
import socket
import subprocess
import sys
import threading
import time

from . import child_environment, folder_watch, messages, metrics, registry, warm, wire
from .errors import BadUnitOutput, ProxyBusy, ProxyError, UnitCrashed, UnitError, UnitTimeout

log = logging.getLogger("proxy.generation")

STOP_WAIT = 2.0  # seconds a fork server gets after its control socket closes, then after SIGTERM
START_EXTRA = 60.0  # start-up allowance on top of the import timeout (the SDK import, a busy machine)
EXITS_KEPT = 1000  # exit reports remembered, for calls whose worker died without answering


@dataclasses.dataclass
class Worker:
    pid: int
    sock: socket.socket
    version: int = 0  # of the engine-state snapshot it holds
    calls: int = 0  # calls it has answered (a warm worker serves up to plugins.worker_calls)
    idle_since: float = 0.0  # time.monotonic() when it went back to the warm pool


@dataclasses.dataclass
class Reply:
    """A worker's answer: the unit's value or UnitError, and the SSO token it ended with."""
    value: object
    token: str | None = None
    seconds: float | None = None  # from the batch's start to this answer (metrics); None: never started
    reasons: dict | None = None  # the unit's explain reasons (journal)
    version: int = 0  # the snapshot its worker held (journal); 0: none
    source: str | None = None  # a balance answer's VM: its host in that snapshot (the ledger)
    reusable: bool = False  # its worker can take the unit's next call (worker.reusable)


_OVERRAN = object()  # _collect's mark for a call past its due time


class Generation:
    """One fork server, the spare workers it has handed over, and the warm ones (warm.py)."""

    def __init__(self, config, password, snapshot_file=""):
        self.config = config
        self.snapshot_file = snapshot_file
        self.refresher = None  # set by the executor when the engine's state is shared
        self.folder = config.plugin_folder
        # Watched before the scan: a change made during the scan raises an event.
        self.watch = folder_watch.FolderWatch(self.folder)
        self._seen = self.watch.mark() or (0, 0)  # the watch's mark when the folder last matched
        self.fingerprint = registry.fingerprint(self.folder)
        self.cond = threading.Condition()
        self.pool = collections.deque()
        self.warm = warm.WarmPool(config.plugins.concurrency, config.plugins.worker_calls)
        self.waiting = 0  # take_worker() calls waiting for a spare
        self.exits = collections.OrderedDict()  # pid -> messages.Exited
        self.catalog = None
        self.alive = True
        self.retired = False
        self.stopping = False
        self.busy = 0
        self.send_lock = threading.Lock()
        self.proc, self.ctl = self._start_fork_server(password)
        threading.Thread(target=self._read_control, name=f"forkserver-{self.proc.pid}", daemon=True).start()

    def wait_started(self):
        """Wait for the catalog (the plugins imported); stop() from another thread ends the wait."""
        with self.cond:
            self.cond.wait_for(lambda: self.catalog or not self.alive,
                               self.config.plugins.timeout + START_EXTRA)
            started = self.catalog is not None
        if not started:
            self.stop()
            raise ProxyError(f"the fork server (pid {self.proc.pid}) did not start: it "
                             f"{self._fork_server_ending()}; the proxy log has its errors")

    def _start_fork_server(self, password):
        cfg = self.config
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        boot = messages.Boot(
            folder=str(self.folder), spares=cfg.plugins.spare_workers,
            output_limit=cfg.plugins.output_limit, import_timeout=cfg.plugins.timeout,
            log_level=cfg.log.level, log_file=cfg.log.file, log_format=cfg.log.format,
            stale_limit=cfg.engine.stale_limit,
            snapshot_file=self.snapshot_file, memory_limit=cfg.plugins.memory_limit,
            engine={"url": cfg.engine.url, "user": cfg.engine.user, "password": password,
                    "ca_file": cfg.engine.ca_file, "insecure": cfg.engine.insecure})
        # The password reaches the fork server in Boot, on stdin: never on a command line
        # that `ps` shows, nor in the environment every worker (and what a unit starts) inherits.
        proc = subprocess.Popen([sys.executable, "-m", "proxy.forkserver", str(theirs.fileno())],
                                stdin=subprocess.PIPE, pass_fds=[theirs.fileno()], env=child_environment(),
                                start_new_session=True)
        theirs.close()
        proc.stdin.write(json.dumps(messages.to_wire(boot)).encode())
        proc.stdin.close()
        return proc, ours

    # -- control channel ----------------------------------------------------------------

    def _read_control(self):
        while True:
            try:
                data, fds = wire.recv_control(self.ctl)
            except OSError:
                data, fds = None, []
            if data is None:
                break
            try:
                msg = messages.from_wire(data, messages.Catalog, messages.WorkerReady, messages.Exited,
                                         messages.SnapshotReady, messages.SnapshotFailed)
            except messages.MessageError as e:
                log.error("fork server %d sent a bad control message: %s", self.proc.pid, e)
                continue
            if isinstance(msg, (messages.SnapshotReady, messages.SnapshotFailed)):
                self._on_state(msg)
                continue
            with self.cond:
                self._on_message(msg, fds)
                self.cond.notify_all()
        with self.cond:
            self.alive = False
            self.cond.notify_all()
        if self.refresher:
            self.refresher.closed()
        self._log_fork_server_exit()

    def _on_message(self, msg, fds):
        if isinstance(msg, messages.WorkerReady) and fds:
            w = Worker(msg.pid, socket.socket(fileno=fds[0]), msg.version)
            if self.retired:
                w.sock.close()
                return
            stale = next((old for old in self.pool if old.version < w.version), None)
            if stale is not None:  # a fresh spare replaces one that holds an older snapshot
                self.pool.remove(stale)
                stale.sock.close()
            if len(self.pool) >= self.config.plugins.spare_workers + self.waiting:
                # A replacement for a take that gave up (its deadline passed): after a burst
                # the pool returns to plugins.spare_workers; the surplus worker exits.
                w.sock.close()
                return
            self.pool.append(w)
        elif isinstance(msg, messages.Exited):
            self.exits[msg.pid] = msg
            while len(self.exits) > EXITS_KEPT:
                self.exits.popitem(last=False)
        elif isinstance(msg, messages.Catalog):
            self.catalog = registry.Catalog.from_wire(msg.catalog)

    def _on_state(self, msg):
        if self.refresher is None:  # a snapshot file: held since the start, nothing to keep fresh
            if isinstance(msg, messages.SnapshotReady):
                metrics.set_snapshot(msg.version, msg.read_at)
            return
        if isinstance(msg, messages.SnapshotReady):
            self.refresher.ready(msg)
            self.warm.older_than(msg.version)  # the next calls get spares holding the new state
        else:
            self.refresher.failed(msg)

    def _log_fork_server_exit(self):
        try:
            self.proc.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            return  # stop() ends it, and logs how
        level = logging.INFO if self.stopping else logging.ERROR
        log.log(level, "fork server %d %s", self.proc.pid, self._fork_server_ending())

    def _fork_server_ending(self):
        code = self.proc.poll()
        if code is None:
            return "is still running"
        return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"

    def send(self, msg):
        with self.send_lock:
            try:
                wire.send_control(self.ctl, messages.to_wire(msg))
            except OSError:
                pass  # the reader notices the fork server is gone

    def take_worker(self, deadline, min_version=0, unit=None):
        """A worker holding snapshot min_version or newer (older ones are dropped): a warm one
        that served `unit` (a unit key) before, if there is one, else a spare."""
        w = self.warm.take(unit, min_version) if unit is not None else None
        if w is not None:
            return w
        self.send(messages.Spawn(1))  # a replacement, forked at the fork server's next quiet moment
        with self.cond:
            self._drop_stale(min_version)
            self.waiting += 1
            try:
                while not self.pool:
                    if not self.alive:
                        raise UnitCrashed(f"the fork server (pid {self.proc.pid}) has exited; "
                                          "restart the proxy if this persists")
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise ProxyBusy("no worker process became ready before the call's deadline")
                    self.cond.wait(remaining)
                    self._drop_stale(min_version)
            finally:
                self.waiting -= 1
            return self.pool.popleft()

    def _drop_stale(self, min_version):
        while self.pool and self.pool[0].version < min_version:
            self.pool.popleft().sock.close()  # the spare exits; the fork server forks fresh ones

    def how_it_ended(self, pid, deadline):
        """How worker pid ended, as the fork server reports it (every exit is reported)."""
        with self.cond:
            self.cond.wait_for(lambda: pid in self.exits or not self.alive,
                               max(0.0, deadline - time.monotonic()))
            ended = self.exits.pop(pid, None)
        return ended.how if ended else "ended (its exit was not reported before the call's deadline)"

    # -- calls --------------------------------------------------------------------------

    def run_batch(self, calls, deadline, token, state=(0, None)):
        """Run every call on its own worker, concurrently; returns ([Reply], answered sockets).

        The answered workers stay alive until the caller closes their sockets: a worker
        exits when its socket closes, and that exit is best kept out of the answer's path.
        state: (the snapshot version the workers must hold, why the last refresh failed).
        """
        replies = [None] * len(calls)
        inflight, due, finished, begun = {}, {}, [], time.monotonic()
        for i, call in enumerate(calls):
            started = self._start(call, deadline, token, state)
            if isinstance(started, Worker):
                inflight[started.sock] = (i, started, wire.FrameReader(self.config.plugins.output_limit + 4096))
                # A unit's own timeout ([units.NAME]) may end its call before the request's.
                due[started.sock] = min(deadline, begun + call.timeout) if call.timeout else deadline
            else:
                replies[i] = Reply(started)
        for sock, (i, w, msg) in self._collect(inflight, due):
            if msg is _OVERRAN:
                self.send(messages.Kill(w.pid))
                sock.close()
                replies[i] = Reply(self._overran(calls[i]), seconds=time.monotonic() - begun)
                continue
            took = time.monotonic() - begun
            replies[i] = dataclasses.replace(self._reply(w, msg, deadline), seconds=took, version=w.version)
            w.calls += 1
            current = self.refresher.version if self.refresher is not None else w.version
            if not (replies[i].reusable and self.warm.give_back(w, calls[i].unit.key, current)):
                finished.append(sock)
        return replies, finished

    def _overran(self, call):
        if call.timeout and call.timeout != self.config.plugins.timeout:
            limit = f"{call.timeout:g} s ([units.{call.unit.name}] timeout)"
        else:
            limit = f"{self.config.plugins.timeout:g} s (plugins.timeout)"
        return UnitTimeout(f"did not answer within {limit}; its process group was killed")

    def _start(self, call, deadline, token, state):
        """A worker running the call, or the UnitError that kept it from starting."""
        min_version, refresh_error = state
        reuse = call.unit.reuse_worker and self.config.plugins.worker_calls > 1
        for attempt in ("warm", "spare") if reuse else ("spare",):
            try:
                w = self.take_worker(deadline, min_version, call.unit.key if attempt == "warm" else None)
            except UnitError as e:
                return e
            request = messages.Request(unit=call.unit.key, method=call.unit.method, args=call.args,
                                       timeout=max(0.0, min(deadline - time.monotonic(), call.timeout or float("inf"))),
                                       token=token,
                                       refresh_error=refresh_error, request_id=call.request_id,
                                       balancing=call.balancing,
                                       reuse=reuse and w.calls + 1 < self.config.plugins.worker_calls)
            try:
                if w.sock.gettimeout() != 0.0:  # a spare, new from the fork server
                    w.sock.setblocking(False)
                wire.send_frame_nowait(w.sock, wire.frame(messages.to_wire(request)), deadline)
                return w
            except OSError:
                w.sock.close()
                if w.calls == 0:  # a spare that died unused: its call fails, with how it ended
                    return UnitCrashed(f"its worker {self.how_it_ended(w.pid, deadline)} before the call started")
                # A warm worker that died while idle: the call takes a spare instead.
        return UnitCrashed("no worker could take the call")

    def _collect(self, inflight, due):
        """Yield (socket, (index, worker, message, None at EOF, or _OVERRAN)) as answers
        complete or calls pass their due time (`due`: socket -> time.monotonic())."""
        # poll, not epoll: no system call to set up or tear down (epoll takes four a call,
        # each one a hand-over of the interpreter lock on a busy server), and a batch
        # watches a few sockets.
        with selectors.PollSelector() as sel:
            for sock in inflight:
                sel.register(sock, selectors.EVENT_READ)
            while inflight:
                now = time.monotonic()
                for sock in [s for s in inflight if due[s] <= now]:
                    sel.unregister(sock)
                    i, w, _ = inflight.pop(sock)
                    yield sock, (i, w, _OVERRAN)
                if not inflight:
                    return
                for key, _ in sel.select(max(0.0, min(due[s] for s in inflight) - now)):
                    i, w, reader = inflight[key.fileobj]
                    try:
                        data = w.sock.recv(reader.wanted())
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    try:
                        msg = reader.feed(data) if data else None
                    except wire.FrameTooLarge as e:
                        msg = messages.to_wire(messages.Answer.failed(BadUnitOutput(str(e))))
                    if data and msg is None:
                        continue  # the answer is not complete yet
                    sel.unregister(w.sock)
                    del inflight[w.sock]
                    yield w.sock, (i, w, msg)

    def _reply(self, w, msg, deadline):
        if msg is None:
            return Reply(UnitCrashed(f"its process {self.how_it_ended(w.pid, deadline)} without answering"))
        try:
            answer = messages.from_wire(msg, messages.Answer)
        except messages.MessageError as e:
            return Reply(BadUnitOutput(f"its worker sent a malformed answer: {e}"))
        return Reply(answer.outcome(), answer.token, reasons=answer.reasons, source=answer.source,
                     reusable=answer.reusable and answer.error is None)

    # -- life cycle ---------------------------------------------------------------------

    def retire(self):
        """Take no new calls; stop the fork server once the calls it runs are done."""
        with self.cond:
            self.retired = True
            idle, self.pool = list(self.pool), collections.deque()
            done = self.busy == 0
        self.warm.close()
        for w in idle:
            w.sock.close()  # a spare worker exits when its socket closes
        if done:
            self.stop()

    def files_changed(self):
        """True when a plugin file may differ from the code this generation imported.  The
        folder is scanned only when the watch cannot tell, and once every
        folder_watch.RESCAN seconds anyway."""
        mark = self.watch.mark()
        if mark is not None:
            if mark[0] != self._seen[0]:
                return True  # a plugin file was added, removed, renamed or written
            if mark == self._seen:
                return False
        if registry.fingerprint(self.folder) != self.fingerprint:
            return True  # (with a mark: a change no event reported, a network filesystem's)
        if mark is not None:
            self._seen = mark  # only the period moved: no scan until the next
        return False

    def stop(self):
        """Close, wait, TERM, wait, KILL, and always reap."""
        self.watch.close()
        with self.cond:
            self.retired = self.stopping = True
            for w in self.pool:
                w.sock.close()
            self.pool.clear()
        self.warm.close()
        try:
            self.ctl.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.ctl.close()
        for step in (None, "terminate", "kill"):
            if step:
                log.warning("fork server %d did not stop in %.0f s; sending %s", self.proc.pid,
                            STOP_WAIT, step.upper())
                getattr(self.proc, step)()
            try:
                self.proc.wait(STOP_WAIT)
                return
            except subprocess.TimeoutExpired:
                continue
        self.proc.wait()
