"""The systemd notification protocol by hand: READY, WATCHDOG while alive, STOPPING; the
variables taken out of the environment so the fork server and units never see them."""
import os
import signal
import socket
import threading
import uuid

import pytest

from proxy import systemd
from tests.support import PLUGINS, wait_until


@pytest.fixture
def notify_socket():
    """(NOTIFY_SOCKET value, a function returning the next datagram) on an abstract socket."""
    name = f"ovirt-scheduler-proxy-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(30)

    def receive():
        return sock.recv(4096).decode()
    yield "@" + name, receive
    sock.close()


def test_notifications_reach_the_socket_and_the_environment_is_cleaned(notify_socket):
    address, receive = notify_socket
    env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "30000000", "PATH": "/bin"}
    notifier = systemd.Notifier(env)
    assert env == {"PATH": "/bin"} and notifier.interval == 15.0
    assert notifier.send("READY=1") and receive() == "READY=1"


def test_without_systemd_nothing_is_sent_and_no_watchdog_runs():
    notifier = systemd.Notifier({})
    assert not notifier.send("READY=1") and notifier.interval is None
    notifier.start_watchdog(lambda: True)
    assert not any(t.name == "watchdog" for t in threading.enumerate())


def test_a_watchdog_meant_for_another_process_is_not_pinged(notify_socket):
    address, _ = notify_socket
    notifier = systemd.Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "100000",
                                 "WATCHDOG_PID": str(os.getpid() + 1)})
    assert notifier.address and notifier.interval is None


def test_the_watchdog_is_pinged_only_while_alive(notify_socket):
    address, receive = notify_socket
    notifier = systemd.Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "20000"})  # every 10 ms
    state = {"alive": True, "asked": 0}

    def alive():
        state["asked"] += 1
        return state["alive"]
    notifier.start_watchdog(alive)
    try:
        assert receive() == "WATCHDOG=1"
        state["alive"] = False
        asked = state["asked"]
        wait_until(lambda: state["asked"] > asked + 3, 5, "more liveness checks")
    finally:
        notifier.stop()
    received = [receive()]
    while received[-1] != "STOPPING=1":
        received.append(receive())
    # After the pings sent before alive() turned False, none until STOPPING.
    assert received.count("WATCHDOG=1") <= 1 and received[-1] == "STOPPING=1", received


def test_a_proxy_under_systemd_says_ready_pings_and_says_stopping(start_proxy, notify_socket):
    address, receive = notify_socket
    p = start_proxy(PLUGINS / "basic", env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"})
    assert receive() == "READY=1"
    assert "listening on" in p.log()  # ready only once it listens
    assert receive() == "WATCHDOG=1"
    fork_server = wait_until(lambda: [pid for pid in _children(p.proc.pid) if "proxy.forkserver" in _cmdline(pid)],
                             10, "the fork server")[0]
    with open(f"/proc/{fork_server}/environ", "rb") as f:
        assert b"NOTIFY_SOCKET" not in f.read()
    p.stop(signal.SIGTERM)
    assert p.proc.returncode == 0
    while (received := receive()) == "WATCHDOG=1":
        pass
    assert received == "STOPPING=1"


def _children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


def _cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode()
