"""The simulated engine's HTTP side: keep-alive connections, SSO versus API routing, replies.

EngineServer answers on behalf of a SimulatedEngine (proxy.sim.engine), which decides
every answer through its `_sso(path, form)` and `_api(method, path, query, authorization)`
and may hold a reply back with `_pause()`.
"""

import json
import re
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from . import bodies

__all__ = ["EngineServer", "SSO_LOGOUT", "SSO_TOKEN"]

SSO_TOKEN = "/ovirt-engine/sso/oauth/token"
SSO_LOGOUT = "/ovirt-engine/services/sso-logout"
XML = "application/xml;charset=UTF-8"
JSON = "application/json"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's curl pool expects
    disable_nagle_algorithm = True  # else every keep-alive request after the first waits ~40 ms
    timeout = 300  # an abandoned keep-alive connection frees its thread eventually
    server_version = "SimulatedEngine/1"

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status, body=b"", content_type=None):
        self.send_response(status)
        if body:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _route(self, method):
        engine = self.server.engine
        split = urlsplit(self.path)
        path = re.sub("/{2,}", "/", split.path)
        body = self._body()
        engine._pause()
        try:
            if method == "POST" and path.rstrip("/") in (SSO_TOKEN, SSO_LOGOUT):
                form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace"),
                                                      keep_blank_values=True).items()}
                status, reply = engine._sso(path.rstrip("/"), form)
                self._send(status, json.dumps(reply).encode(), JSON)
                return
            query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
            status, text = engine._api(method, path.rstrip("/"), query,
                                       self.headers.get("Authorization", ""))
        except Exception as e:  # a simulator bug must surface as an answer, not a hang
            status, text = 500, bodies.fault(f"simulated engine bug: {type(e).__name__}: {e}")
        self._send(status, text.encode() if text else b"", XML)

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_PUT(self):
        self._route("PUT")

    def do_DELETE(self):
        self._route("DELETE")


class EngineServer(ThreadingHTTPServer):
    """Serves `engine` at `address`, a thread per connection; tracks the open connections."""

    daemon_threads = True

    def __init__(self, address, engine):
        self.engine = engine
        self.connections = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address):
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        # A client that gave up (a timeout test) is not a simulator failure.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    def drop_connections(self):
        """Ends open keep-alive connections, so nothing is served after stop()."""
        with self.connections_lock:
            open_now = list(self.connections)
        for sock in open_now:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
