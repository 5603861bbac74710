"""Unit execution under hostile requests and units, against the real proxy process: each test
is a row of docs/RELIABILITY.md (rows 1, 4, 6, 7) and asserts its bound."""
import shutil
import threading
import time
import xmlrpc.client

import pytest

from tests.reliability.scenarios import HOSTS
from tests.support import PLUGINS, alive, execution_processes, wait_until

pytestmark = pytest.mark.reliability


@pytest.fixture
def hostile(start_proxy, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    for name in ("runtime.py", "escapes.py"):
        shutil.copy(PLUGINS / "misbehaving" / name, plugins)
    (plugins / "hang8.py").write_text("import time\n" + "".join(  # eight distinct hanging filters
        f"class hang_{i}:\n    def do_filter(self, hosts, vm, args):\n        time.sleep(3600)\n"
        for i in range(8)))
    config = tmp_path / "proxy.toml"
    config.write_text("[plugins]\ntimeout = 3.0\nmemory_limit = 268435456\n")
    return start_proxy(plugins, "--config", str(config))


def workers(proxy):
    return [p for p in execution_processes(proxy.proc.pid) if alive(p)]


def test_row1_three_thousand_names_cost_one_process_each_and_the_pool_returns(hostile):
    names = ["raises", "hangs_filter"] * 1500
    start = time.monotonic()
    answer = xmlrpc.client.ServerProxy(hostile.url).runFilters(names, HOSTS, "vm", {})
    assert time.monotonic() - start < 3.0 + 1  # the call's timeout, not 18 s
    assert sorted(answer["plugin_errors"]) == ["hangs_filter", "raises"]
    # the fork server and plugins.spare_workers (4) spares, nothing more
    wait_until(lambda: len(workers(hostile)) <= 5, 5, "the pool to return to 4 spare workers")


def test_row4_a_unit_past_memory_limit_is_reported_in_time(hostile):
    start = time.monotonic()
    answer = xmlrpc.client.ServerProxy(hostile.url).runFilters(["eats_memory"], HOSTS, "vm", {})
    assert time.monotonic() - start < 3.0
    assert "exceeded plugins.memory_limit (268435456 bytes)" in answer["plugin_errors"]["eats_memory"][0]


def test_row6_a_daemonised_grandchild_dies_with_the_call_and_the_stop(hostile, tmp_path):
    pid_file = tmp_path / "daemon.pid"
    xmlrpc.client.ServerProxy(hostile.url).runLoadBalancing("daemon_grandchild", HOSTS,
                                                            {"pid_file": str(pid_file)})
    escaped = int(pid_file.read_text())
    wait_until(lambda: not alive(escaped), 2, "the daemon to be killed when the call timed out")
    pid_file.unlink()
    t = threading.Thread(target=lambda: xmlrpc.client.ServerProxy(hostile.url).runLoadBalancing(
        "daemon_grandchild", HOSTS, {"pid_file": str(pid_file)}), daemon=True)
    t.start()
    wait_until(pid_file.exists, 5, "the second daemon")
    escaped = int(pid_file.read_text())
    hostile.stop()
    wait_until(lambda: not alive(escaped), 2, "the daemon to be killed by the proxy's stop")


def test_row7_hanging_units_leave_a_slot_for_another_request(hostile):
    t = threading.Thread(target=lambda: xmlrpc.client.ServerProxy(hostile.url).runFilters(
        [f"hang_{i}" for i in range(8)], HOSTS, "vm", {}), daemon=True)
    t.start()
    wait_until(lambda: len(workers(hostile)) >= 5 + 6, 5, "six hanging units (the request's share) to run")
    start = time.monotonic()
    answer = xmlrpc.client.ServerProxy(hostile.url).runFilters(["raises"], HOSTS, "vm", {})
    assert time.monotonic() - start < 0.5
    assert "boom in raises" in answer["plugin_errors"]["raises"][0]
    t.join(10)
