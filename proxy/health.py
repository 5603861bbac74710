"""The monitoring listener (server.metrics_port): GET /metrics and GET /health.

It has its own socket and thread, on server.host: a scrape never queues behind the
engine's calls nor they behind a scrape, and there is one address to firewall.  It
serves no XML-RPC and reads nothing but the proxy's state, so it needs no request body,
keep-alive or backlog tuning.

/health is readiness: 200 when the fork server runs and units are loaded, 503 with the
reason otherwise.  `alive()` is liveness, for the systemd watchdog (systemd.py): a proxy
that serves no unit is not ready, but restarting it would not load any.
"""

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import metrics
from .errors import ProxyError

log = logging.getLogger("proxy.health")


def health(executor):
    """(HTTP status, JSON-ready body) of the proxy's readiness."""
    s = executor.status()
    if s["fork_server_pid"] is None:
        return 503, {"status": "unavailable", "reason": "the proxy is stopping"}
    catalog = s["catalog"]
    body = {"status": "ok", "units": len(catalog.units), "rejected": len(catalog.rejections),
            "fork_server_pid": s["fork_server_pid"], "spare_workers": s["spare_workers"],
            "slots": s["slots"], "slots_in_use": s["slots_in_use"]}
    if not s["fork_server_alive"]:
        reason = (f"the fork server (pid {s['fork_server_pid']}) has exited (the log says how); "
                  "the next engine call starts a new one")
    elif not catalog.units:
        reason = (f"no policy unit is loaded ({len(catalog.rejections)} rejected): "
                  "`ovirt-scheduler-proxy list` shows why")
    else:
        return 200, body
    return 503, dict(body, status="unavailable", reason=reason)


def alive(executor, serving):
    """Liveness for the watchdog: the XML-RPC thread `serving` runs, and a fork server runs.

    A dead fork server is replaced here, as the next engine call would replace it; if that
    fails (or hangs, so this never returns) the watchdog stops and systemd restarts the proxy.
    """
    if not serving.is_alive() or executor.status()["fork_server_pid"] is None:
        return False  # not serving, or stopping
    try:
        executor.catalog()  # replaces a dead fork server (and reloads changed plugin files)
    except ProxyError as e:
        log.error("liveness check: %s", e)
        return False
    return executor.status()["fork_server_alive"]


class _Handler(BaseHTTPRequestHandler):
    server_version = "ovirt-scheduler-proxy"

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, metrics.exposition(), metrics.CONTENT_TYPE)
        elif path == "/health":
            status, body = health(self.server.executor)
            self._send(status, json.dumps(body).encode() + b"\n", "application/json")
        else:
            self._send(404, b"not found: this listener serves /metrics and /health\n", "text/plain")

    def _send(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        log.debug("%s %s", self.address_string(), fmt % args)


class MonitorServer(ThreadingHTTPServer):
    """/metrics and /health on (host, port), served from its own thread once start()ed."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host, port, executor):
        super().__init__((host, port), _Handler)
        self.executor = executor
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="monitor", daemon=True)

    @property
    def port(self):
        return self.server_address[1]

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        if self.thread.is_alive():
            self.shutdown()  # waits for serve_forever, so only once it runs
        self.server_close()
