"""Helpers shared by several test files: a real proxy process, process inspection through
/proc, and waiting for a condition with a deadline (never a fixed sleep)."""
import http.client
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "tests" / "plugins"

# runLoadBalancing as the engine's Apache XML-RPC client writes it: untyped strings, <ex:nil/>.
ENGINE_BALANCE_CALL = b"""<?xml version="1.0" encoding="UTF-8"?>
<methodCall xmlns:ex="http://ws.apache.org/xmlrpc/namespaces/extensions"><methodName>runLoadBalancing</methodName>
<params><param><value>first_vm</value></param>
<param><value><array><data><value>6a1e0000-0000-0000-0000-000000000001</value>
<value>6a1e0000-0000-0000-0000-000000000002</value></data></array></value></param>
<param><value><ex:nil/></value></param></params></methodCall>"""


def run_cli(*args, timeout=120):
    """`python -m proxy ARGS` from the repository, as a user would run it: the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "proxy", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


def cli_outcome(*args, timeout=120):
    """(exit code, stdout, stderr) of `python -m proxy ARGS`."""
    done = run_cli(*args, timeout=timeout)
    return done.returncode, done.stdout, done.stderr


def wait_until(predicate, timeout=10.0, what="the condition", interval=0.02):
    """Poll predicate() until it returns something true; return that, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def free_port():
    """A loopback port nothing listened on a moment ago (for listeners whose 0 means "off")."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url, timeout=10):
    """(status, headers, body) of a plain GET."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/")
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    finally:
        conn.close()


def self_signed_cert(folder):
    """(certificate, key) PEM files for localhost and 127.0.0.1, made now with openssl."""
    if not shutil.which("openssl"):
        pytest.skip("the TLS tests make their certificate with the openssl command; install openssl")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


class ProxyProcess:
    """`python -m proxy serve` (or `command` serve) as a subprocess on a free loopback port,
    logging to a file.

    nofile=(soft, hard) starts it with that limit on open files (the proxy raises soft to hard);
    cwd runs the proxy of another checkout (tests/reliability/measure.py compares two)."""

    def __init__(self, tmp_path, plugins, *args, env=None, command=None, cwd=ROOT, nofile=None):
        self.log_file = tmp_path / f"proxy-{time.monotonic_ns()}.log"
        cmd = [*(command or [sys.executable, "-m", "proxy"]), "serve", "--host", "127.0.0.1", "--port", "0",
               *(["--plugins", str(plugins)] if plugins else []), "--log-file", str(self.log_file), *args]
        limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, nofile)) if nofile else None
        # The decision journal (and the moves it remembers) in the caller's folder, never the
        # user's state folder: each proxy starts as a fresh install would.
        env = {**os.environ, "STATE_DIRECTORY": str(tmp_path), **(env or {})}
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, preexec_fn=limit,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            m = wait_until(lambda: self.proc.poll() is not None or re.search(
                r"listening on (https?://127\.0\.0\.1:\d+/)", self.log()), 60, "the proxy to listen")
        except AssertionError:
            m = None
        if not isinstance(m, re.Match):
            self.stop()
            raise AssertionError(f"proxy did not start: {self.proc.stderr.read()}\n{self.log()}")
        self.url = m.group(1)

    def log(self):
        return self.log_file.read_text() if self.log_file.exists() else ""

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("proxy did not stop on " + signal.Signals(sig).name)
        return self.proc.returncode


def descendants(pid):
    """Every live process below pid, found through /proc (children of children too)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def execution_processes(pid):
    """descendants(pid) without the decision journal's writer (proxy/journal_writer.py): the
    fork servers, workers and what units started, which the execution tests count."""
    def writer(child):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                return b"proxy.journal_writer" in f.read()
        except OSError:
            return False
    return [child for child in descendants(pid) if not writer(child)]


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
