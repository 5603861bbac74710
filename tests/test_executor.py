"""Execution: warm workers, timeouts that kill whole process groups, crashes, output caps,
concurrency, reloads; every misbehaving unit yields an answer within timeout + 1 s and
leaves no process behind."""
import os
import shutil
import threading
import time

import pytest

from proxy import config, executor, protocol
from proxy.errors import (BadUnitOutput, ProxyBusy, UnitCrashed, UnitRaised, UnitTimeout)
from tests.conftest import PLUGINS, alive, descendants

TIMEOUT = 1.5
HOSTS = ["h1", "h2", "h3"]


def make(folder, **settings):
    """An executor on folder; settings as section__key=value (e.g. plugins__concurrency=4)."""
    cfg = config.load(None, {"plugins.folder": str(folder), "plugins.timeout": str(TIMEOUT)})
    for k, v in settings.items():
        section, key = k.split("__")
        setattr(getattr(cfg, section), key, v)
    ex = executor.Executor(cfg, password="")
    ex.start()
    return ex


@pytest.fixture(scope="module")
def bad():
    ex = make(PLUGINS / "misbehaving")
    yield ex
    ex.stop()


@pytest.fixture(scope="module")
def good():
    ex = make(PLUGINS / "basic")
    yield ex
    ex.stop()


def call(ex, name, utype, args, timeout=TIMEOUT):
    unit = ex.catalog.find(utype, name)
    assert unit, f"{utype} {name} not discovered"
    [value] = ex.run([executor.Call(unit, args)], time.monotonic() + timeout)
    return value


def forkserver_pid(ex):
    return ex.generation.proc.pid


def settle(ex, extra=()):
    """Workers and grandchildren below the fork server: only idle spares may remain."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        left = [p for p in descendants(forkserver_pid(ex)) if alive(p)]
        stragglers = [p for p in extra if alive(p)]
        if len(left) <= ex.config.plugins.spare_workers and not stragglers:
            return left
        time.sleep(0.05)
    raise AssertionError(f"processes left behind: {left} {stragglers}")


def test_discovery_reports_every_bad_module_with_its_reason(bad):
    reasons = {(r.module, r.unit): r.reason for r in bad.catalog.rejections}
    assert "ModuleNotFoundError" in reasons[("import_fails.py", "")]
    assert "did not finish importing within 1.5 s" in reasons[("import_hangs.py", "")]
    assert "exited with code 5 while being imported" in reasons[("import_exits.py", "")]
    assert "sys.exit('configuration missing')" in reasons[("import_sys_exit.py", "")]
    assert "engine's syntax" in reasons[("bad_params.py", "bad_params")]
    assert "dup_a.py already defines dup_unit" in reasons[("dup_b.py", "dup_unit")]
    assert bad.catalog.find("filter", "good_neighbour")  # its module-mate's fault is not its own
    assert bad.catalog.find("filter", "dup_unit").module == "dup_a.py"


@pytest.mark.parametrize("name, utype, args, error, words", [
    ("raises", "filter", [HOSTS, "vm", {}], UnitRaised, "RuntimeError: boom in raises (at runtime.py:"),
    ("hangs", "balance", [HOSTS, {}], UnitTimeout, "did not answer within 1.5 s"),
    ("garbage", "filter", [HOSTS, "vm", {}], BadUnitOutput, "not a Python literal"),
    ("huge_output", "balance", [HOSTS, {}], BadUnitOutput, "printed more than the output limit of 8388608"),
    ("exits", "score", [HOSTS, "vm", {}], UnitCrashed, "exited with code 3 without answering"),
    ("calls_sys_exit", "filter", [HOSTS, "vm", {}], UnitRaised, "sys.exit(4)"),
    ("odd_type", "filter", [HOSTS, "vm", {}], BadUnitOutput, "'object' values cannot be sent"),
])
def test_misbehaving_unit_gives_a_typed_error_in_time_and_leaves_nothing(bad, name, utype, args, error, words):
    start = time.monotonic()
    value = call(bad, name, utype, args)
    assert time.monotonic() - start < TIMEOUT + 1
    assert isinstance(value, error), value
    assert words in str(value)
    settle(bad)


@pytest.mark.parametrize("name, utype, hangs", [("grandchild_returns", "filter", False),
                                                ("grandchild_hangs", "balance", True)])
def test_grandchildren_are_killed_with_their_worker(bad, tmp_path, name, utype, hangs):
    pid_file = tmp_path / "grandchild.pid"
    args = [HOSTS, {"pid_file": str(pid_file)}] if utype == "balance" else [HOSTS, "vm", {"pid_file": str(pid_file)}]
    start = time.monotonic()
    value = call(bad, name, utype, args)
    assert time.monotonic() - start < TIMEOUT + 1
    if hangs:
        assert isinstance(value, UnitTimeout)
    else:
        assert value == HOSTS  # answered although the grandchild still holds stdout open
    grandchild = int(pid_file.read_text())
    settle(bad, extra=[grandchild])


def test_output_limit_applies_to_the_answer_too(tmp_path):
    (tmp_path / "big.py").write_text(
        "class big:\n    def do_filter(self, hosts, vm, args):\n        return ['x' * 1000] * 5000\n")
    ex = make(tmp_path, plugins__output_limit=100_000)
    try:
        value = call(ex, "big", "filter", [HOSTS, "vm", {}])
        assert isinstance(value, BadUnitOutput) and "exceeds the output limit of 100000" in str(value)
    finally:
        ex.stop()


def test_ten_thousand_hosts_travel_both_ways(good):
    hosts = [f"00000000-0000-0000-0000-{i:012d}" for i in range(10_000)]
    assert call(good, "keep_all", "filter", [hosts, "vm", {}]) == hosts


def test_legacy_printed_answers_and_chatter(good):
    assert call(good, "legacy_filter", "filter", [HOSTS, "vm", {}]) == ["h1", "h3"]
    assert call(good, "noisy", "filter", [HOSTS, "vm", {}]) == ["h1"]
    assert call(good, "legacy_silent", "balance", [HOSTS, {}]) is None


def test_no_state_leaks_between_calls(tmp_path):
    (tmp_path / "counter.py").write_text(
        "class counter:\n    calls = 0\n    def do_balance(self, hosts, args):\n"
        "        type(self).calls += 1\n        return (None if type(self).calls == 1 else 'leak', [])\n")
    ex = make(tmp_path)
    try:
        for _ in range(5):
            assert call(ex, "counter", "balance", [HOSTS, {}]) == [None, []]
    finally:
        ex.stop()


def test_calls_run_concurrently_up_to_the_limit(tmp_path):
    (tmp_path / "slow.py").write_text(
        "import time\nclass slow:\n    def do_filter(self, hosts, vm, args):\n"
        "        time.sleep(0.5)\n        return hosts\n")
    ex = make(tmp_path, plugins__concurrency=4)
    try:
        unit = ex.catalog.find("filter", "slow")
        start = time.monotonic()
        values = ex.run([executor.Call(unit, [HOSTS, "vm", {}])] * 4, time.monotonic() + 5)
        assert values == [HOSTS] * 4
        assert time.monotonic() - start < 1.5  # four 0.5 s calls side by side, not one after another
        # a fifth concurrent caller waits for a slot, and gives up at its deadline
        busy = threading.Thread(target=ex.run, args=([executor.Call(unit, [HOSTS, "vm", {}])] * 4,
                                                     time.monotonic() + 5))
        busy.start()
        time.sleep(0.1)
        [value] = ex.run([executor.Call(unit, [HOSTS, "vm", {}])], time.monotonic() + 0.2)
        busy.join()
        assert isinstance(value, ProxyBusy)
    finally:
        ex.stop()


def test_changed_plugin_files_are_seen_by_the_next_call(tmp_path):
    plugin = tmp_path / "versioned.py"
    plugin.write_text("class versioned:\n    def do_balance(self, hosts, args):\n        return None\n")
    ex = make(tmp_path)
    try:
        old_server = forkserver_pid(ex)
        assert call(ex, "versioned", "balance", [HOSTS, {}]) is None
        plugin.write_text("class versioned:\n    def do_balance(self, hosts, args):\n"
                          "        return ('3fd0bb5e-2f4b-4e5a-9b6c-0d1e2f3a4b5c', hosts)\n")
        (tmp_path / "added.py").write_text("class added:\n    def do_filter(self, h, v, a):\n        return h\n")
        ex.reload_if_changed()
        assert call(ex, "versioned", "balance", [HOSTS, {}])[0] == "3fd0bb5e-2f4b-4e5a-9b6c-0d1e2f3a4b5c"
        assert ex.catalog.find("filter", "added")
        deadline = time.monotonic() + 5
        while alive(old_server) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(old_server), "the retired fork server was not stopped"
    finally:
        ex.stop()


def test_stop_leaves_no_process(tmp_path):
    shutil.copy(PLUGINS / "misbehaving" / "runtime.py", tmp_path)
    ex = make(tmp_path)
    server = forkserver_pid(ex)
    unit = ex.catalog.find("balance", "hangs")
    t = threading.Thread(target=ex.run, args=([executor.Call(unit, [HOSTS, {}])], time.monotonic() + 60))
    t.start()
    time.sleep(0.3)
    below = descendants(server)
    assert below
    ex.generation.retire()  # what a reload does: the call in progress keeps running
    assert alive(server)
    ex.generation.stop()
    for pid in below + [server]:
        assert not alive(pid)
    t.join(5)


def test_a_dead_fork_server_fails_calls_cleanly(tmp_path):
    shutil.copy(PLUGINS / "basic" / "units.py", tmp_path)
    ex = make(tmp_path, plugins__spare_workers=0)
    try:
        os.kill(forkserver_pid(ex), 9)
        ex.generation.proc.wait()
        time.sleep(0.1)
        value = call(ex, "keep_all", "filter", [HOSTS, "vm", {}], timeout=1)
        assert isinstance(value, UnitCrashed) and "fork server" in str(value)
        ex.reload_if_changed()  # what every engine call does first: a new fork server
        assert call(ex, "keep_all", "filter", [HOSTS, "vm", {}]) == HOSTS
    finally:
        ex.stop()


def test_protocol_over_a_real_executor(good):
    p = protocol.EngineProtocol(good, TIMEOUT)
    rec = protocol.Record()
    answer = p.runCostFunctions(rec, [["by_length", 2], ["by_position", 3], ["missing", 5]], ["h1", "h22"], "vm", {})
    assert answer["result"] == [["h1", 2 * 2 + 3 * 0], ["h22", 3 * 2 + 3 * 1]]
    assert answer["result_code"] == 1 and list(answer["plugin_errors"]) == ["missing"]


def test_the_engine_token_is_obtained_once_and_carried_to_later_calls(sim_engine):
    cfg = config.load(None, {"plugins.folder": str(PLUGINS.parent.parent / "balancers")})
    cfg.engine.url, cfg.engine.user = sim_engine.url, sim_engine.user
    ex = executor.Executor(cfg, password=sim_engine.password)
    ex.start()
    try:
        unit = ex.catalog.find("balance", "host_memory_balance")
        hosts = [h["id"] for h in sim_engine.snapshot()["hosts"]]
        for _ in range(3):
            [value] = ex.run([executor.Call(unit, [hosts, {}])], time.monotonic() + 10)
            assert value[0] == "b0000000-0000-4000-8000-000000000004"
        assert sim_engine.logins == 1 and sim_engine.logouts == 0  # one login, never revoked
        sim_engine.revoke_tokens()  # e.g. the engine restarted: the next call gets a 401
        for _ in range(2):
            [value] = ex.run([executor.Call(unit, [hosts, {}])], time.monotonic() + 10)
            assert value[0] == "b0000000-0000-4000-8000-000000000004"
        assert sim_engine.logins == 2 and sim_engine.logouts == 0  # renewed once, then carried
    finally:
        ex.stop()
