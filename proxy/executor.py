"""Runs unit calls: owns the fork server, hands each call to a warm worker, enforces deadlines.

A *generation* is one fork server with the plugin code of one moment.  When the plugin
files change (or on SIGHUP) a new generation starts and takes the new calls; the old one
finishes the calls it has, then its fork server is stopped: closed control socket, a
bounded wait, SIGTERM, a bounded wait, SIGKILL, and reaped.  Workers themselves are owned
by the fork server (forkserver.py); this side only asks it to kill one whose call overran.
"""

import collections
import dataclasses
import json
import logging
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import registry, wire
from .errors import (ProxyBusy, ProxyError, UnitCrashed, UnitError, UnitTimeout,
                     unit_error)

log = logging.getLogger("proxy.executor")

STOP_WAIT = 2.0  # seconds a fork server gets after its control socket closes, then after SIGTERM
START_EXTRA = 60.0  # start-up allowance on top of the import timeout (the SDK import, a busy machine)
_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


@dataclasses.dataclass
class Call:
    unit: registry.Unit
    args: list


@dataclasses.dataclass
class Worker:
    pid: int
    sock: socket.socket


class Slots:
    """The concurrency limit; a request takes all the slots it needs at once, so two
    multi-unit requests can never each hold half and wait for the other."""

    def __init__(self, n):
        self.free = n
        self.cond = threading.Condition()

    def acquire(self, n, deadline):
        with self.cond:
            while self.free < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ProxyBusy("no free slot before the call's deadline; raise plugins.concurrency "
                                    "or plugins.timeout")
                self.cond.wait(remaining)
            self.free -= n

    def release(self, n):
        with self.cond:
            self.free += n
            self.cond.notify_all()


class Generation:
    """One fork server and the spare workers it has handed over."""

    def __init__(self, config, password):
        self.config = config
        self.folder = config.plugin_folder
        self.fingerprint = registry.fingerprint(self.folder)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        boot = {"folder": str(self.folder), "spares": config.plugins.spare_workers,
                "output_limit": config.plugins.output_limit, "import_timeout": config.plugins.timeout,
                "log_level": config.log.level, "log_file": config.log.file,
                "engine": {"url": config.engine.url, "user": config.engine.user, "password": password,
                           "ca_file": config.engine.ca_file, "insecure": config.engine.insecure}}
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (_PACKAGE_PARENT, os.environ.get("PYTHONPATH")) if p))
        # The password travels on stdin, never on a command line that `ps` shows.
        self.proc = subprocess.Popen([sys.executable, "-m", "proxy.forkserver", str(theirs.fileno())],
                                     stdin=subprocess.PIPE, pass_fds=[theirs.fileno()], env=env,
                                     start_new_session=True)
        theirs.close()
        self.proc.stdin.write(json.dumps(boot).encode())
        self.proc.stdin.close()
        self.ctl = ours
        self.send_lock = threading.Lock()
        self.cond = threading.Condition()
        self.pool = collections.deque()
        self.exits = collections.OrderedDict()
        self.catalog = None
        self.alive = True
        self.retired = False
        self.busy = 0
        threading.Thread(target=self._read_control, name=f"forkserver-{self.proc.pid}", daemon=True).start()
        with self.cond:
            self.cond.wait_for(lambda: self.catalog or not self.alive,
                               config.plugins.timeout + START_EXTRA)
            if self.catalog is None:
                self.stop()
                raise ProxyError(f"the fork server (pid {self.proc.pid}) did not start: "
                                 "see the errors logged above")

    # -- control channel ----------------------------------------------------------------

    def _read_control(self):
        while True:
            try:
                msg, fds = wire.recv_control(self.ctl)
            except OSError:
                msg, fds = None, []
            if msg is None:
                break
            with self.cond:
                if "worker" in msg and fds:
                    w = Worker(msg["worker"], socket.socket(fileno=fds[0]))
                    if self.retired:
                        w.sock.close()
                    else:
                        self.pool.append(w)
                elif "exited" in msg:
                    self.exits[msg["exited"]] = msg["how"]
                    while len(self.exits) > 1000:
                        self.exits.popitem(last=False)
                elif "catalog" in msg:
                    self.catalog = registry.Catalog.from_wire(msg["catalog"])
                self.cond.notify_all()
        with self.cond:
            self.alive = False
            self.cond.notify_all()

    def _send(self, msg):
        with self.send_lock:
            try:
                wire.send_control(self.ctl, msg)
            except OSError:
                pass  # the reader notices the fork server is gone

    def take_worker(self, deadline):
        self._send({"spawn": 1})  # a replacement, forked at the fork server's next quiet moment
        with self.cond:
            while not self.pool:
                if not self.alive:
                    raise UnitCrashed(f"the fork server (pid {self.proc.pid}) has exited; "
                                      "restart the proxy if this persists")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ProxyBusy("no worker process became ready before the call's deadline")
                self.cond.wait(remaining)
            return self.pool.popleft()

    def how_it_ended(self, pid, wait=0.3):
        """The fork server reports only endings other than a clean exit, so no news is 'ended'."""
        with self.cond:
            self.cond.wait_for(lambda: pid in self.exits or not self.alive, wait)
            return self.exits.pop(pid, "ended")

    # -- calls --------------------------------------------------------------------------

    def run_batch(self, calls, deadline, token, finished=None):
        """Start every call on its own worker, then wait for all; returns [(value | UnitError, token)].

        finished: a list to put the answered workers' sockets in, for the caller to close
        later (see Executor.release_finished), instead of closing them here.
        """
        results = [None] * len(calls)
        limit = self.config.plugins.output_limit + 4096
        sel = selectors.DefaultSelector()
        inflight = {}
        for i, call in enumerate(calls):
            try:
                w = self.take_worker(deadline)
            except UnitError as e:
                results[i] = e
                continue
            request = {"unit": call.unit.key, "method": registry.UNIT_TYPES[call.unit.type][0],
                       "args": call.args, "timeout": max(0.0, deadline - time.monotonic()), "token": token}
            try:
                w.sock.settimeout(max(0.001, deadline - time.monotonic()))
                wire.send_frame(w.sock, request)
                w.sock.setblocking(False)
            except OSError:
                w.sock.close()
                results[i] = UnitCrashed(f"its worker {self.how_it_ended(w.pid)} before the call started")
                continue
            inflight[w.sock] = (i, w, wire.FrameReader(limit))
            sel.register(w.sock, selectors.EVENT_READ)

        while inflight:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for key, _ in sel.select(remaining):
                i, w, reader = inflight[key.fileobj]
                try:
                    data = w.sock.recv(1 << 20)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                try:
                    msg = reader.feed(data) if data else None
                except wire.FrameTooLarge as e:
                    msg = {"ok": False, "kind": "BadUnitOutput", "message": str(e)}
                if data and msg is None:
                    continue
                sel.unregister(w.sock)
                del inflight[w.sock]
                if finished is None:
                    w.sock.close()  # lets the worker exit now that its answer is read
                else:
                    finished.append(w.sock)
                if msg is None:
                    results[i] = UnitCrashed(f"its process {self.how_it_ended(w.pid)} without answering")
                elif msg.get("ok"):
                    results[i] = _Answer(msg.get("result"), msg.get("token"))
                else:
                    results[i] = _Answer(unit_error(msg.get("kind"), msg.get("message", "")), msg.get("token"))
        sel.close()
        for sock, (i, w, _) in inflight.items():
            self._send({"kill": w.pid})
            sock.close()
            results[i] = UnitTimeout(f"did not answer within {self.config.plugins.timeout:g} s "
                                     "(plugins.timeout); its process group was killed")
        return results

    # -- life cycle ---------------------------------------------------------------------

    def retire(self):
        """Take no new calls; stop the fork server once the calls it runs are done."""
        with self.cond:
            self.retired = True
            idle, self.pool = list(self.pool), collections.deque()
            done = self.busy == 0
        for w in idle:
            w.sock.close()  # a spare worker exits when its socket closes
        if done:
            self.stop()

    def stop(self):
        """Close, wait, TERM, wait, KILL, and always reap."""
        with self.cond:
            self.retired = True
            for w in self.pool:
                w.sock.close()
            self.pool.clear()
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


@dataclasses.dataclass
class _Answer:
    value: object
    token: str | None


class Executor:
    def __init__(self, config, password=None):
        self.config = config
        self.password = config.engine_password() if password is None else password
        self.slots = Slots(config.plugins.concurrency)
        self.swap_lock = threading.Lock()  # guards the generation pointer and busy counts
        self.reload_lock = threading.RLock()  # one reload at a time
        self.generation = None
        self.token = None  # the engine SSO token, obtained by a worker and carried to the next calls
        self.lingering = threading.local()

    @property
    def catalog(self):
        return self.generation.catalog

    def start(self):
        self.generation = Generation(self.config, self.password)
        return self.catalog

    def reload(self, reason):
        """Start a generation with the plugin code as it is now; returns its catalog."""
        with self.reload_lock:
            new = Generation(self.config, self.password)
            with self.swap_lock:
                old, self.generation = self.generation, new
        log.info("plugins reloaded (%s): %d units, %d rejected", reason, len(new.catalog.units),
                 len(new.catalog.rejections))
        if old:
            old.retire()
        return new.catalog

    def reload_if_changed(self):
        """Called before every engine call: new plugin code, or a fork server that died, is
        replaced before the call runs."""
        gen = self.generation
        reason = ("the fork server had exited" if not gen.alive else
                  "plugin files changed" if registry.fingerprint(gen.folder) != gen.fingerprint else None)
        if reason:
            with self.reload_lock:
                if self.generation is gen:  # another request may have reloaded meanwhile
                    self.reload(reason)

    def run(self, calls, deadline, linger=False):
        """Run the calls (concurrently, up to plugins.concurrency); returns a value or a UnitError each.

        linger=True leaves the answered workers alive until this thread calls
        release_finished(): the server does so once its answer is on the wire.  Closing a
        worker's socket wakes it to exit, and the kernel tends to run that exit (~1.4 ms of
        page unmapping, measured) on the closing thread's CPU, ahead of the answer.
        """
        self.release_finished()
        self.lingering.socks = lingering = []
        finished = lingering if linger else None
        results = []
        width = self.config.plugins.concurrency
        for start in range(0, len(calls), width):
            batch = calls[start:start + width]
            try:
                self.slots.acquire(len(batch), deadline)
            except ProxyBusy as e:
                results += [e] * len(batch)
                continue
            gen = self._enter()
            try:
                answers = gen.run_batch(batch, deadline, self.token, finished)
            finally:
                self._leave(gen)
                self.slots.release(len(batch))
            for answer in answers:
                if isinstance(answer, _Answer):
                    if answer.token:
                        self.token = answer.token
                    answer = answer.value
                results.append(answer)
        return results

    def release_finished(self):
        """Let the workers this thread's last run() left lingering exit."""
        socks, self.lingering.socks = getattr(self.lingering, "socks", []), []
        for sock in socks:
            sock.close()

    def _enter(self):
        with self.swap_lock:
            gen = self.generation
            with gen.cond:
                gen.busy += 1
            return gen

    def _leave(self, gen):
        with gen.cond:
            gen.busy -= 1
            last = gen.retired and gen.busy == 0
        if last:
            gen.stop()

    def stop(self):
        with self.swap_lock:
            gen, self.generation = self.generation, None
        if gen:
            gen.stop()
