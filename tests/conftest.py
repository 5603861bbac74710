"""Shared fixtures: a real proxy process, and the plugin folders of tests/plugins.

The simulated-engine fixtures live in tests/sim_fixtures.py.
"""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest_plugins = ["tests.sim_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "tests" / "plugins"


class ProxyProcess:
    """`python -m proxy serve` as a subprocess on a free loopback port, logging to a file."""

    def __init__(self, tmp_path, plugins, *args, env=None):
        self.log_file = tmp_path / f"proxy-{time.monotonic_ns()}.log"
        cmd = [sys.executable, "-m", "proxy", "serve", "--host", "127.0.0.1", "--port", "0",
               "--plugins", str(plugins), "--log-file", str(self.log_file), *args]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})},
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while True:
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)/", self.log())
            if m:
                self.url = f"http://127.0.0.1:{m.group(1)}/"
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"proxy did not start: {self.proc.stderr.read()}\n{self.log()}")
            time.sleep(0.05)

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


@pytest.fixture
def start_proxy(tmp_path):
    started = []

    def start(plugins=PLUGINS / "basic", *args, env=None):
        p = ProxyProcess(tmp_path, plugins, *args, env=env)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


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


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
