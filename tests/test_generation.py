"""A generation: warm workers, timeouts that kill whole process groups, crashes, output caps;
every misbehaving unit yields a typed error within timeout + 1 s and leaves no process behind."""
import shutil
import threading
import time

import pytest

from proxy import executor
from proxy.errors import BadUnitOutput, UnitCrashed, UnitRaised, UnitTimeout
from tests.executor_support import HOSTS, TIMEOUT, call, forkserver_pid, make, settle
from tests.support import PLUGINS, alive, descendants, wait_until


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


def test_each_reply_carries_its_own_duration(bad):
    catalog = bad.catalog()
    calls = [executor.Call(catalog.find("filter", "raises"), [HOSTS, "vm", {}]),
             executor.Call(catalog.find("balance", "hangs"), [HOSTS, {}])]
    replies, socks = bad.generation.run_batch(calls, time.monotonic() + TIMEOUT, None)
    for sock in socks:
        sock.close()
    (quick, killed), (_, timeout) = [r.seconds for r in replies], [r.value for r in replies]
    assert isinstance(timeout, UnitTimeout)
    assert quick < 0.5 and TIMEOUT - 0.1 <= killed < TIMEOUT + 0.5
    settle(bad)


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


def test_stop_leaves_no_process(tmp_path):
    shutil.copy(PLUGINS / "misbehaving" / "runtime.py", tmp_path)
    ex = make(tmp_path)
    server = forkserver_pid(ex)
    unit = ex.catalog().find("balance", "hangs")
    t = threading.Thread(target=ex.run, args=([executor.Call(unit, [HOSTS, {}])], time.monotonic() + 60))
    t.start()
    # the worker running the call, and the spares (one of them its replacement)
    below = wait_until(lambda: len(d := descendants(server)) > ex.config.plugins.spare_workers and d,
                       10, "the call's worker and its replacement")
    ex.generation.retire()  # what a reload does: the call in progress keeps running
    assert alive(server)
    ex.generation.stop()
    for pid in below + [server]:
        assert not alive(pid)
    t.join(5)


def test_the_engine_password_is_not_in_any_workers_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("OVIRT_ENGINE_PASSWORD", "s3cret-in-env")
    ex = make(PLUGINS / "basic")
    try:
        server = forkserver_pid(ex)
        spares = wait_until(lambda: descendants(server), 10, "spare workers")
        for pid in [server] + spares:
            with open(f"/proc/{pid}/environ", "rb") as f:
                assert b"OVIRT_ENGINE_PASSWORD" not in f.read()
    finally:
        ex.stop()


def test_a_unit_past_memory_limit_fails_clearly_in_time(tmp_path):
    shutil.copy(PLUGINS / "misbehaving" / "runtime.py", tmp_path)
    ex = make(tmp_path, plugins__memory_limit=256 << 20)
    try:
        start = time.monotonic()
        value = call(ex, "eats_memory", "filter", [HOSTS, "vm", {}])
        assert isinstance(value, UnitRaised), value
        assert f"exceeded plugins.memory_limit ({256 << 20} bytes)" in str(value)
        assert time.monotonic() - start < TIMEOUT
        assert call(ex, "raises", "filter", [HOSTS, "vm", {}]).__class__ is UnitRaised  # the next call is fine
    finally:
        ex.stop()


@pytest.mark.parametrize("name, utype", [("setsid_grandchild", "filter"), ("daemon_grandchild", "balance")])
def test_no_descendant_escapes_the_call_or_the_stop(tmp_path, name, utype):
    shutil.copy(PLUGINS / "misbehaving" / "escapes.py", tmp_path)
    ex = make(tmp_path)
    try:
        pid_file = tmp_path / "escaped.pid"
        props = {"pid_file": str(pid_file)}
        call(ex, name, utype, [HOSTS, props] if utype == "balance" else [HOSTS, "vm", props])
        escaped = int(pid_file.read_text())
        wait_until(lambda: not alive(escaped), 3, f"the {name} process to be killed when the call ended")
        pid_file.unlink()
        # the proxy's stop while a call is still running: nothing it started survives
        t = threading.Thread(target=call, args=(ex, name, utype, [HOSTS, props] if utype == "balance"
                                                else [HOSTS, "vm", props], 10))
        t.start()
        wait_until(pid_file.exists, 5, "the unit to leave a process behind")
        escaped = int(pid_file.read_text())
    finally:
        ex.stop()
    wait_until(lambda: not alive(escaped), 3, f"the {name} process to be killed at the stop")
    t.join(10)
