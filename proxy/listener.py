"""Connections: accepting them within bounds, TLS, read deadlines, and the threads that run calls.

One asyncio event loop (in the thread that calls serve_forever) owns every socket, so an
idle or slow connection costs a little memory and no thread; only a request that has been
read completely takes one of a fixed number of handler threads.  Bounds, all in settings
(docs/RELIABILITY.md measures each):
- at most server.max_connections connections; at the limit the connection that has waited
  longest for its request is closed to make room, or, when every connection is being
  answered, the new one is closed at once (never accepted and left hanging);
- a request's headers and body must arrive within server.read_timeout of its first byte;
  that first byte within server.read_timeout of the accept on a new connection, within
  server.idle_timeout of the previous answer on a kept-alive one;
- request bodies are bounded one by one and together (httpio.Budget);
- running out of file descriptors lowers the connection limit and pauses accepting briefly
  (logged at most once a minute) instead of spinning.
"""

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import errno
import logging
import resource
import socket
import ssl
import threading

from . import access, httpio
from .access import Refusal
from .errors import ConfigError

log = logging.getLogger("proxy.listener")

FD_RESERVE = 64  # files the proxy opens besides connections: log, pipes, fork-server channels
ACCEPT_BATCH = 64  # accepts per wake-up, so a flood of connections cannot starve the others
LINGER = 2.0  # seconds an error answer waits for the client to stop sending before closing
_OUT_OF_FILES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def raise_open_file_limit():
    """Raise the soft limit on open files to the hard limit (systemd gives services a soft
    1024); returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as e:
        log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, e)
        return soft
    log.info("open-file limit raised from %d to %d (the hard limit)", soft, hard)
    return hard


def connection_limit(wanted, threads):
    """server.max_connections, lowered (with a warning) when the open-file limit has no room for it."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    room = soft - FD_RESERVE - 2 * threads  # a call in progress holds worker sockets too
    if soft == resource.RLIM_INFINITY or wanted <= room:
        return wanted
    fitted = max(room, 1)
    log.warning("server.max_connections is %d but the open-file limit %d leaves room for %d connections; "
                "using %d (raise the limit, e.g. LimitNOFILE= in the systemd unit)", wanted, soft, fitted, fitted)
    return fitted


def _no_password():
    raise ConfigError("server.tls_key is encrypted; the proxy starts unattended, so store the key "
                      "unencrypted (openssl pkey -in KEY -out KEY.plain) readable only by the proxy's user")


def tls_context(cert, key):
    """The server's TLS context from server.tls_cert / server.tls_key, or None for plain HTTP."""
    if not cert:
        if key:
            raise ConfigError("server.tls_key is set but server.tls_cert is empty: set both "
                              "(or only server.tls_cert, to a PEM file holding the key too)")
        return None
    for name, path in (("server.tls_cert", cert), ("server.tls_key", key)):
        try:
            if path:
                open(path, "rb").close()
        except OSError as e:
            raise ConfigError(f"{name}: cannot read {path}: {e.strerror}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key or None, password=_no_password)
    except ssl.SSLError as e:
        raise ConfigError(f"server.tls_cert {cert} and server.tls_key {key or '(in tls_cert)'} are not a PEM "
                          f"certificate and its private key ({e}); see README 'TLS and the allow-list'") from None
    return context


def listening_socket(host, port, backlog):
    family, _, _, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                  flags=socket.AI_PASSIVE)[0]
    dual = family == socket.AF_INET6 and address[0] == "::" and socket.has_dualstack_ipv6()
    sock = socket.create_server(address, family=family, backlog=backlog, dualstack_ipv6=dual)
    sock.setblocking(False)
    return sock


@dataclasses.dataclass(eq=False)
class Connection:
    sock: socket.socket
    client: str
    since: float  # when the current state began: the oldest waiting connection is closed first
    state: str = "accepted"  # accepted, opening (TLS handshake), idle, reading, answering
    transport: object = None
    task: object = None


class Listener:
    """Serves HTTP connections on (settings.host, settings.port); `handle(request)` runs in a
    handler thread and returns an httpio.Response."""

    def __init__(self, settings, handle, threads):
        self.settings, self.handle = settings, handle
        if settings.body_budget < settings.max_request:
            raise ConfigError(f"server.body_budget ({settings.body_budget}) is smaller than server.max_request "
                              f"({settings.max_request}): raise the budget or lower the request limit")
        self.tls = tls_context(settings.tls_cert, settings.tls_key)
        self.allow = access.AllowList(settings.allow)
        self.sock = listening_socket(settings.host, settings.port, settings.backlog)
        self.address = self.sock.getsockname()
        self.loopback = access.is_loopback(self.address[0])
        warning = access.exposure_warning(self.loopback, bool(self.tls), bool(self.allow))
        if warning:
            log.warning(warning)
        self.max_connections = connection_limit(settings.max_connections, threads)
        self.fd_headroom = 2 * threads + 8  # files a burst of calls needs besides connections
        self.budget = httpio.Budget(settings.body_budget)
        self.pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="call")
        # Releasing a call's workers costs ~1 ms of kernel time per worker (executor.Finished):
        # not on the event loop, and not queued behind calls that may run for plugins.timeout.
        self.releases = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="release")
        self.loop = asyncio.new_event_loop()
        self.connections = {}  # Connection -> None: the ones counted against max_connections
        self.tasks = set()  # every connection's task, closed ones until they have finished
        self.refusals = access.Throttled(log)
        self.busy, self.idle = 0, threading.Condition()
        self.stopping = False
        self.running, self.stopped = False, threading.Event()

    # --- life cycle (called from other threads) ---------------------------------------------

    def serve_forever(self):
        asyncio.set_event_loop(self.loop)
        self.running = True
        self.loop.call_soon(self._start_accepting)
        try:
            self.loop.run_forever()
            pending = list(self.tasks)  # their done callbacks empty self.tasks
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.wait(pending))
            self.loop.run_until_complete(asyncio.sleep(0))  # their done callbacks close the sockets
        finally:
            self.loop.close()
            self.stopped.set()

    def shutdown(self):
        """Stop accepting and close idle connections; requests being read or run go on."""
        self._in_loop(self._stop_accepting)

    def server_close(self):
        """Close every connection and the listening socket."""
        if self.running and not self.stopped.is_set():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.stopped.wait(10)
        elif not self.running:
            self.loop.close()
        self.sock.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.releases.shutdown(wait=False)

    def wait_idle(self, timeout):
        """True when no request is being read, run or answered (any more) within timeout seconds."""
        with self.idle:
            return self.idle.wait_for(lambda: self.busy == 0, timeout)

    def _in_loop(self, function):
        if not self.running or self.stopped.is_set():
            self.stopping = True
            return
        done = threading.Event()
        self.loop.call_soon_threadsafe(lambda: (function(), done.set()))
        done.wait(10)

    # --- accepting ----------------------------------------------------------------------------

    def _start_accepting(self):
        if not self.stopping:
            self.loop.add_reader(self.sock, self._accept)

    def _stop_accepting(self):
        self.stopping = True
        self.loop.remove_reader(self.sock)
        for conn in list(self.connections):
            if conn.state in ("accepted", "opening", "idle"):
                self._drop(conn)

    def _accept(self):
        for _ in range(ACCEPT_BATCH):
            try:
                sock, address = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in _OUT_OF_FILES:
                    return self._out_of_files(e)
                log.debug("accept failed: %s", e)  # e.g. the client reset before it was accepted
                continue
            self._admit(sock, address[0])

    def _out_of_files(self, error):
        """Out of file descriptors: unless closed connections are still giving theirs back,
        lower the connection limit to leave calls room for their worker sockets and close the
        waiting connections above it; accept again shortly (the pending connections wait in
        the listen backlog meanwhile)."""
        self.loop.remove_reader(self.sock)
        if len(self.tasks) == len(self.connections):  # no dropped connection still closing
            self.max_connections = max(8, min(self.max_connections, len(self.connections) - self.fd_headroom))
            while len(self.connections) > self.max_connections and self._evict_one():
                pass
        self.refusals.warning("files", "accept", f"out of file descriptors while accepting ({error.strerror}); "
                              f"connections limited to {self.max_connections} from now on (open-file limit "
                              f"{resource.getrlimit(resource.RLIMIT_NOFILE)[0]}, see docs/RELIABILITY.md)")
        self.loop.call_later(0.1, self._start_accepting)

    def _admit(self, sock, client):
        if not self.allow.allows(client):
            self.refusals.warning("allow", client, f"refused a connection from {client}: not in server.allow")
            return sock.close()
        if len(self.connections) >= self.max_connections and not self._evict_one():
            self.refusals.warning("full", client, f"refused a connection from {client}: {len(self.connections)} "
                                  "connections (server.max_connections) are all being answered")
            return sock.close()
        conn = Connection(sock, client, self.loop.time())
        self.connections[conn] = None
        conn.task = self.loop.create_task(self._serve(conn))
        self.tasks.add(conn.task)
        conn.task.add_done_callback(lambda _: self._closed(conn))

    def _evict_one(self):
        waiting = [c for c in self.connections if c.state != "answering"]
        if not waiting:
            return False
        # One that can be closed at once first: an opening one gives its descriptor back later.
        oldest = min([c for c in waiting if c.state != "opening"] or waiting, key=lambda c: c.since)
        log.debug("closing the %s connection from %s to make room", oldest.state, oldest.client)
        self._drop(oldest)
        return True

    def _drop(self, conn):
        """Close a connection now, so that its descriptor is free for the accept that needed room."""
        self.connections.pop(conn, None)
        if conn.transport is not None:
            conn.transport.abort()  # unregisters the socket from the loop at once
            conn.sock.close()
        elif conn.state == "accepted":  # the loop has not seen the socket yet
            conn.sock.close()
        conn.task.cancel()  # otherwise (a TLS handshake) cancelling the task closes it

    def _closed(self, conn):
        self.tasks.discard(conn.task)
        self.connections.pop(conn, None)
        if conn.transport is not None:
            conn.transport.abort()
        conn.sock.close()

    # --- one connection -----------------------------------------------------------------------

    async def _serve(self, conn):
        conn.state = "opening"
        try:
            reader = asyncio.StreamReader(limit=httpio.HEADER_LIMIT)
            protocol = asyncio.StreamReaderProtocol(reader)
            tls = {"ssl": self.tls, "ssl_handshake_timeout": self.settings.read_timeout,
                   "ssl_shutdown_timeout": LINGER} if self.tls else {}
            conn.transport, _ = await self.loop.connect_accepted_socket(lambda: protocol, conn.sock, **tls)
            writer = asyncio.StreamWriter(conn.transport, protocol, reader, self.loop)
            # A new connection's first request must start within read_timeout of the accept.
            wait_until = conn.since + self.settings.read_timeout
            while await self._one_request(conn, reader, writer, wait_until):
                wait_until = self.loop.time() + self.settings.idle_timeout
            writer.close()
            async with asyncio.timeout(LINGER):
                await writer.wait_closed()
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as e:
            # ssl.SSLError is an OSError: a client that speaks plain HTTP to the TLS port ends here
            log.debug("connection from %s ended: %s", conn.client, e or type(e).__name__)
        except Exception:  # a bug here must show in the log, and cost only this connection
            log.exception("internal error on the connection from %s", conn.client)
        finally:
            if conn.transport is not None:
                conn.transport.abort()  # a no-op after a clean close

    async def _one_request(self, conn, reader, writer, wait_until):
        """Read, run and answer one request; False when the connection is to be closed."""
        if self.stopping:
            return False
        conn.state, conn.since = "idle", self.loop.time()
        async with asyncio.timeout_at(wait_until):
            first = await reader.read(1)
        if not first:
            return False
        conn.state, conn.since = "reading", self.loop.time()
        deadline = conn.since + self.settings.read_timeout
        with self._counted():
            try:
                # One timeout for the head and the body (an asyncio timeout costs ~6 us in the
                # loop's thread); the body's share of the budget is held until the call is answered.
                with contextlib.ExitStack() as held:
                    async with asyncio.timeout_at(deadline):
                        request = await self._read_head(conn, first, reader)
                        length = httpio.body_length(request, self.settings.max_request)
                        held.enter_context(self.budget.hold(self._share(request, length)))
                        if httpio.expects_continue(request):
                            writer.write(httpio.CONTINUE)
                        request.body = await httpio.read_body(reader, length)
                    conn.state = "answering"
                    response = await self.loop.run_in_executor(self.pool, self._handle, request)
            except Refusal as e:
                self.refusals.warning(e.status, conn.client, f"refused a request from {conn.client}: {e}")
                await self._send(writer, httpio.error_response(e.status, str(e)))
                await self._linger(reader, writer)
                return False
            await self._send(writer, response)
        return request.keep_alive and not response.close and not self.stopping

    async def _read_head(self, conn, first, reader):
        try:
            head = first + await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise Refusal(431, f"request headers longer than {httpio.HEADER_LIMIT} bytes") from None
        request = httpio.parse_head(head.lstrip(b"\r\n"), conn.client)
        access.check_request(request.method, request.headers, self.loopback)
        return request

    def _share(self, request, length):
        """The budget a body takes: a gzipped one may decode to up to server.max_request bytes."""
        gzipped = request.headers.get("Content-Encoding", "").strip().lower() == "gzip"
        return self.settings.max_request if gzipped else length

    def _handle(self, request):
        try:
            return self.handle(request)
        except Exception:  # the handler answers every request; this is a bug in it
            log.exception("internal error answering a request from %s", request.client)
            return httpio.error_response(500, "internal proxy error; see the proxy log")

    async def _send(self, writer, response):
        try:
            writer.write(httpio.encode(response))
            async with asyncio.timeout(self.settings.read_timeout):
                await writer.drain()
        finally:
            if response.after_send:
                self.releases.submit(response.after_send)

    async def _linger(self, reader, writer):
        """After an error answered before the body was read: stop sending, and read (and drop)
        what the client is still sending for a moment, so closing does not reset the connection
        before the client has read the answer."""
        if not writer.can_write_eof():
            return
        writer.write_eof()
        with contextlib.suppress(TimeoutError, OSError):
            async with asyncio.timeout(LINGER):
                while await reader.read(httpio.READ_CHUNK):
                    pass

    @contextlib.contextmanager
    def _counted(self):
        with self.idle:
            self.busy += 1
        try:
            yield
        finally:
            with self.idle:
                self.busy -= 1
                self.idle.notify_all()
