"""The fork server: discovery in throw-away children, workers' exits reported and logged."""
import logging
import os
import re
import signal
import time

import pytest

import proxy
from proxy import forkserver, wire
from proxy.errors import UnitCrashed
from tests.executor_support import HOSTS, call, make
from tests.support import PLUGINS, wait_until


@pytest.fixture(scope="module")
def bad():
    ex = make(PLUGINS / "misbehaving")
    yield ex
    ex.stop()


def test_discovery_reports_every_bad_module_with_its_reason(bad):
    reasons = {(r.module, r.unit): r.reason for r in bad.catalog().rejections}
    assert "ModuleNotFoundError" in reasons[("import_fails.py", "")]
    assert "did not finish importing within 1.5 s" in reasons[("import_hangs.py", "")]
    assert "exited with code 5 while being imported" in reasons[("import_exits.py", "")]
    assert "sys.exit('configuration missing')" in reasons[("import_sys_exit.py", "")]
    assert "engine's syntax" in reasons[("bad_params.py", "bad_params")]
    assert "dup_a.py already defines dup_unit" in reasons[("dup_b.py", "dup_unit")]
    assert bad.catalog().find("filter", "good_neighbour")  # its module-mate's fault is not its own
    assert bad.catalog().find("filter", "dup_unit").module == "dup_a.py"


@pytest.fixture
def logged(tmp_path):
    """An executor on the misbehaving units whose fork server logs to a file."""
    log_file = tmp_path / "proxy.log"
    ex = make(PLUGINS / "misbehaving", log__file=str(log_file))
    yield ex, log_file
    ex.stop()


def test_a_worker_that_dies_is_logged_and_reported_with_its_exit_code(logged):
    ex, log_file = logged
    value = call(ex, "exits", "score", [HOSTS, "vm", {}])
    assert isinstance(value, UnitCrashed) and "exited with code 3 without answering" in str(value)
    wait_until(lambda: re.search(r"WARNING proxy\.forkserver\[\d+\]: worker \d+ exited with code 3",
                                 log_file.read_text()), 5, "the worker's exit in the log")


def test_a_worker_failing_outside_the_unit_logs_why_and_exits_70(logged):
    ex, log_file = logged
    gen = ex.generation
    deadline = time.monotonic() + 5
    w = gen.take_worker(deadline)
    wire.send_frame(w.sock, {"type": "NotARequest"})  # the proxy's own bug, not a unit's
    assert gen.how_it_ended(w.pid, deadline) == f"exited with code {forkserver.WORKER_FAILED}"
    w.sock.close()
    text = wait_until(lambda: "failed outside the unit call" in (t := log_file.read_text()) and t, 5,
                      "the worker's traceback in the log")
    assert "unexpected message type 'NotARequest'" in text


def test_the_fork_servers_own_exit_is_logged_with_its_status(caplog):
    ex = make(PLUGINS / "basic")
    try:
        with caplog.at_level(logging.INFO, logger="proxy.generation"):
            pid = ex.generation.proc.pid
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: f"fork server {pid} was killed by signal 9" in caplog.text, 5,
                       "the fork server's end in the log")
        assert any(r.levelno == logging.ERROR for r in caplog.records)
    finally:
        ex.stop()


def test_describe_status_names_codes_and_signals():
    assert forkserver.describe_status(3 << 8) == "exited with code 3"
    assert forkserver.describe_status(signal.SIGKILL) == "was killed by signal 9 (SIGKILL)"


def test_a_forked_child_exits_at_nice_19():
    """Its memory is unmapped as it exits, in its own context: at nice 19 the calls come first."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: os._exit reports the priority it exits at, then exits
        real_exit = os._exit

        def report(code):
            os.write(w, f"{os.getpriority(os.PRIO_PROCESS, 0)} {code}".encode())
            real_exit(code)
        os._exit = report
        try:
            proxy.exit_at_low_priority(3)
        finally:
            real_exit(99)  # never run the rest of the test suite in the child
    os.close(w)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(r, "rb") as f:
        assert f.read() == b"19 3"
    assert os.waitstatus_to_exitcode(status) == 3
