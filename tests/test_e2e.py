"""End to end: the real `ovirt-scheduler-proxy` process, called the way the engine calls it."""
import json
import re
import shutil
import signal
import socket
import threading
import time
import xmlrpc.client

import pytest

from tests.support import PLUGINS, ROOT, alive, execution_processes, run_cli, wait_until

pytestmark = pytest.mark.e2e
VM = "3fd0bb5e-2f4b-4e5a-9b6c-0d1e2f3a4b5c"
HOSTS = ["6a1e0000-0000-0000-0000-000000000001", "6a1e0000-0000-0000-0000-00000000bad2"]


def cli(*args, timeout=60):
    return run_cli(*args, timeout=timeout)


def test_engine_calls_end_to_end(start_proxy):
    p = start_proxy(PLUGINS / "basic")
    s = xmlrpc.client.ServerProxy(p.url)
    units = s.discover()
    assert units["filters"]["drop_marked"] == [
        "Drops hosts whose id contains the drop_marker property (default 'bad').", "drop_marker=.*"]
    assert set(units["scores"]) == {"by_length", "by_position", "both_kinds"}
    assert units["balance"]["first_vm"][1] == "vm_to_move=[0-9a-f-]*"

    assert s.runFilters(["keep_all", "drop_marked"], HOSTS, VM, {})["result"] == HOSTS[:1]
    scores = s.runCostFunctions([["by_position", 10]], HOSTS, VM, {"HighUtilization": "80"})
    assert scores["result"] == [[HOSTS[0], 0], [HOSTS[1], 10]]
    assert s.runLoadBalancing("first_vm", HOSTS, {"vm_to_move": VM})["result"] == [VM, HOSTS[1:]]
    assert s.runLoadBalancing("first_vm", HOSTS, {})["result"] == ["", []]
    unknown = s.runLoadBalancing("no_such_balancer", HOSTS, {})
    assert unknown["result"] == ["", []] and unknown["result_code"] == 1
    assert "no_such_balancer" in unknown["plugin_errors"]

    log = p.log()
    assert "runFilters units=keep_all,drop_marked" in log
    assert "runLoadBalancing units=no_such_balancer" in log and "no balance unit named" in log


def test_every_misbehaving_unit_answers_within_timeout_plus_one_second(start_proxy, tmp_path):
    p = start_proxy(PLUGINS / "misbehaving", "--timeout", "2")
    s = xmlrpc.client.ServerProxy(p.url)
    pid_file = str(tmp_path / "gc.pid")
    calls = [
        ("runFilters", (["raises"], HOSTS, VM, {}), HOSTS),
        ("runLoadBalancing", ("hangs", HOSTS, {}), ["", []]),
        ("runFilters", (["garbage"], HOSTS, VM, {}), HOSTS),
        ("runLoadBalancing", ("huge_output", HOSTS, {}), ["", []]),
        ("runCostFunctions", ([["exits", 1]], HOSTS, VM, {}), [[h, 0] for h in HOSTS]),
        ("runLoadBalancing", ("grandchild_hangs", HOSTS, {"pid_file": pid_file}), ["", []]),
        ("runFilters", (["import_fails"], HOSTS, VM, {}), HOSTS),
    ]
    for method, args, expected in calls:
        start = time.monotonic()
        answer = getattr(s, method)(*args)
        assert time.monotonic() - start < 3, method
        assert answer["result"] == expected and answer["result_code"] == 1
        assert all(isinstance(m, str) for msgs in answer["plugin_errors"].values() for m in msgs)
    grandchild = int(open(pid_file).read())
    wait_until(lambda: not alive(grandchild), 5, "the grandchild to be killed")
    # float and overflowing scores come back as 32-bit ints
    answer = s.runCostFunctions([["float_scores", 3]], HOSTS, VM, {})
    assert answer["result"] == [[HOSTS[0], 2**31 - 1], [HOSTS[1], 9]]


def test_sighup_and_file_changes_reload_the_units(start_proxy, tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copy(PLUGINS / "basic" / "units.py", folder)
    p = start_proxy(folder)
    s = xmlrpc.client.ServerProxy(p.url)
    assert "legacy_filter" not in s.discover()["filters"]
    shutil.copy(PLUGINS / "basic" / "legacy.py", folder)
    assert "legacy_filter" in s.discover()["filters"]  # a changed folder is seen by the next call
    p.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "plugins reloaded (SIGHUP)" in p.log(), 10, "the SIGHUP reload")
    assert s.runFilters(["legacy_filter"], HOSTS, VM, {})["result"] == HOSTS[:1]


def live_below(p):
    """The live processes below the proxy: its fork server, the spares, any worker."""
    return [x for x in execution_processes(p.proc.pid) if alive(x)]


def settled(p, spares=4):
    """Wait until only the fork server and its spares are below the proxy: before that, a
    child of its start-up (a trial import, a spare being forked) would pass for a call's
    worker in running_call, and the call be stopped before the server had read it."""
    wait_until(lambda: len(live_below(p)) == 1 + spares, 10, "the proxy's start-up children to end")


def running_call(p, spares=4):
    """The processes below the proxy once a call runs: fork server, spares, the call's worker."""
    return wait_until(lambda: len(d := live_below(p)) > 1 + spares and d, 10, "a worker to run the call")


def test_sigterm_drains_the_call_in_progress_and_leaves_no_process(start_proxy):
    p = start_proxy(PLUGINS / "misbehaving", "--timeout", "2")
    s = xmlrpc.client.ServerProxy(p.url)
    s.discover()
    settled(p)
    answers = []
    t = threading.Thread(target=lambda: answers.append(
        xmlrpc.client.ServerProxy(p.url).runLoadBalancing("hangs", HOSTS, {})))
    t.start()
    below = running_call(p)  # the fork server, the spares, and the call's worker
    assert p.stop(signal.SIGTERM) == 0
    t.join(5)
    assert answers and answers[0]["result"] == ["", []]  # the call in progress got its answer
    wait_until(lambda: not [pid for pid in below if alive(pid)], 5, "every process to end")
    assert "stopped" in p.log()


def test_second_sigint_stops_at_once(start_proxy, tmp_path):
    shutil.copy(PLUGINS / "misbehaving" / "runtime.py", tmp_path)
    p = start_proxy(tmp_path, "--timeout", "30")

    def hung_call():
        try:
            xmlrpc.client.ServerProxy(p.url).runLoadBalancing("hangs", HOSTS, {})
        except OSError:
            pass  # the proxy stopped without answering: what a second SIGINT is for

    settled(p)
    threading.Thread(target=hung_call, daemon=True).start()
    below = running_call(p)
    p.proc.send_signal(signal.SIGINT)
    wait_until(lambda: "stopping: no new connections" in p.log(), 5, "the first SIGINT to be seen")
    start = time.monotonic()
    assert p.stop(signal.SIGINT, timeout=10) == 0
    assert time.monotonic() - start < 5
    wait_until(lambda: not [pid for pid in below if alive(pid)], 5, "every process to end")


SMALL_HOSTS = [f"a0000000-0000-4000-8000-00000000000{i}" for i in (1, 2, 3, 4)]


def test_make_run_answers_a_real_migration_decision(start_proxy):
    """What `make run` starts: the shipped units, the simulated engine on the example cluster."""
    p = start_proxy(ROOT / "balancers", "--simulate", str(ROOT / "config" / "cluster-small.json"))
    s = xmlrpc.client.ServerProxy(p.url)
    assert s.runLoadBalancing("host_memory_balance", SMALL_HOSTS, {"minimum_host_memoryMB": "500"}) == {
        "result_code": 0, "result": ["b0000000-0000-4000-8000-000000000004", SMALL_HOSTS[1:]],
        "plugin_errors": {}, "errors": []}
    assert s.runLoadBalancing("host_memory_balance", SMALL_HOSTS, {"minimum_host_memoryMB": "100"})["result"] \
        == ["", []]
    bad = s.runLoadBalancing("host_memory_balance", SMALL_HOSTS, {"minimum_host_memoryMB": "lots"})
    assert bad["result"] == ["", []]
    assert "minimum_host_memoryMB must be a whole number" in bad["plugin_errors"]["host_memory_balance"][0]
    scores = s.runCostFunctions([["even_vm_distribution", 2]], SMALL_HOSTS, "b0000000-0000-4000-8000-000000000001", {})
    assert [h for h, _ in scores["result"]] == SMALL_HOSTS and scores["result"][0][1] == 2 * 4


def test_an_unreachable_engine_is_a_clear_unit_error(start_proxy, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    config = tmp_path / "proxy.toml"
    config.write_text(f'[engine]\nurl = "http://127.0.0.1:{port}/ovirt-engine/api"\n')
    p = start_proxy(ROOT / "balancers", "--config", str(config), "--timeout", "5",
                    env={"OVIRT_ENGINE_PASSWORD": "x"})
    start = time.monotonic()
    answer = xmlrpc.client.ServerProxy(p.url).runLoadBalancing("host_memory_balance", SMALL_HOSTS, {})
    assert time.monotonic() - start < 5
    assert answer["result"] == ["", []] and answer["result_code"] == 1
    [message] = answer["plugin_errors"]["host_memory_balance"]
    assert message.startswith("EngineUnavailable:") and f"127.0.0.1:{port}" in message
    assert "EngineUnavailable" in p.log()


def test_serve_snapshot_runs_the_units_on_a_file_with_no_engine(start_proxy):
    p = start_proxy(ROOT / "balancers", "--snapshot", str(ROOT / "config" / "cluster-small.json"))
    s = xmlrpc.client.ServerProxy(p.url)
    assert s.runLoadBalancing("host_memory_balance", SMALL_HOSTS, {"minimum_host_memoryMB": "500"}) == {
        "result_code": 0, "result": ["b0000000-0000-4000-8000-000000000004", SMALL_HOSTS[1:]],
        "plugin_errors": {}, "errors": []}
    assert "units read the engine state in" in p.log()


def test_a_units_stderr_is_logged_on_one_line_with_its_request_and_bounded(start_proxy):
    p = start_proxy(PLUGINS / "noisy")
    s = xmlrpc.client.ServerProxy(p.url)
    assert s.runFilters(["chatty"], HOSTS, VM, {})["result"] == HOSTS
    line = wait_until(lambda: re.search(r"WARNING proxy\.worker\[\d+\]: request (\S+) unit chatty wrote to "
                                        r"stderr: (.*)", p.log()), 10, "the stderr line")
    assert line.group(2) == "checking hosts\\twith a tab\\n"
    assert re.search(rf"request {re.escape(line.group(1))} runFilters units=chatty", p.log())
    size = len(p.log())
    assert s.runFilters(["flood"], HOSTS, VM, {})["result"] == HOSTS  # the flood costs the unit nothing
    wait_until(lambda: "unit flood wrote to stderr" in p.log(), 10, "the flood's line")
    log = p.log()
    assert len(log) - size < 16 * 1024  # 64 MiB written, a few kB logged
    assert not re.search(r"^2026-01-01 00:00:00,000 ERROR proxy\.server\[1\]: request forged-1", log, re.M)
    assert "more bytes not logged" in log


def test_a_shadow_unit_is_journaled_beside_the_live_one_and_never_answers(start_proxy, tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copy(PLUGINS / "basic" / "units.py", folder)
    shutil.copy(PLUGINS / "misbehaving" / "runtime.py", folder)
    journal_file = tmp_path / "journal.sqlite"
    config_file = tmp_path / "proxy.toml"
    config_file.write_text(f'[journal]\npath = "{journal_file}"\n[plugins]\ntimeout = 2\n'
                           '[units.keep_all]\nshadow = "drop_marked"\n'
                           '[units.drop_marked]\nshadow = "raises"\n')
    p = start_proxy(folder, "--config", str(config_file))
    s = xmlrpc.client.ServerProxy(p.url)
    hosts = ["h1", "bad-h2"]
    start = time.monotonic()
    assert s.runFilters(["keep_all"], hosts, VM, {})["result"] == hosts  # the live answer only
    assert s.runFilters(["drop_marked"], hosts, VM, {})["result"] == ["h1"]  # a failing shadow changes nothing
    assert time.monotonic() - start < 2

    def journal(*args):
        return cli("journal", "--journal", str(journal_file), *args)
    out = wait_until(lambda: "shadow raises: failed" in (r := journal("--unit", "drop_marked").stdout) and r, 20,
                     "the shadow runs in the journal")
    assert "shadow agreement: 0 of 1 calls agree, 0 differ, 1 failed" in out
    data = json.loads(journal("--unit", "keep_all", "--json").stdout)
    [call] = data["calls"]
    assert call["shadow"] == {"unit": "drop_marked", "agreement": "differs", "answer": ["h1"]}
