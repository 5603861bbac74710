"""The executor: concurrency limit, reload decisions, the engine token carried across calls."""
import os
import shutil
import threading
import time

import pytest

from proxy import config, executor, folder_watch, protocol
from proxy.errors import ProxyBusy, UnitCrashed
from tests.executor_support import HOSTS, TIMEOUT, call, forkserver_pid, make
from tests.support import PLUGINS, alive, descendants, wait_until


@pytest.fixture(scope="module")
def good():
    ex = make(PLUGINS / "basic")
    yield ex
    ex.stop()


def test_calls_run_concurrently_up_to_the_requests_share(tmp_path):
    (tmp_path / "slow.py").write_text(
        "import time\nclass slow:\n    def do_filter(self, hosts, vm, args):\n"
        "        time.sleep(0.5)\n        return hosts\n")
    ex = make(tmp_path, plugins__concurrency=4)
    try:
        unit = ex.catalog().find("filter", "slow")
        assert executor.request_share(4) == 3
        start = time.monotonic()
        values, finished = ex.run([executor.Call(unit, [HOSTS, "vm", {}])] * 3, time.monotonic() + 5)
        finished.release()
        assert values == [HOSTS] * 3
        assert time.monotonic() - start < 1.0  # three 0.5 s calls side by side, not one after another
        # two requests take every slot (one its share, the other the rest); a third waits
        # for a slot, and gives up at its deadline
        busy = [threading.Thread(target=ex.run, args=([executor.Call(unit, [HOSTS, "vm", {}])] * 4,
                                                      time.monotonic() + 5)) for _ in range(2)]
        for t in busy:
            t.start()
        wait_until(lambda: ex.slots.free == 0, 5, "the two requests to take every slot")
        [value], _ = ex.run([executor.Call(unit, [HOSTS, "vm", {}])], time.monotonic() + 0.2)
        for t in busy:
            t.join()
        assert isinstance(value, ProxyBusy)
    finally:
        ex.stop()


def test_a_request_of_hanging_units_leaves_slots_for_other_requests():
    ex = make(PLUGINS / "misbehaving", plugins__concurrency=8)
    try:
        hanging = ex.catalog().find("filter", "hangs_filter")
        t = threading.Thread(target=ex.run, args=([executor.Call(hanging, [HOSTS, "vm", {}])] * 8,
                                                  time.monotonic() + 3))
        t.start()
        wait_until(lambda: ex.slots.free == 8 - executor.request_share(8), 5, "the hanging units to start")
        start = time.monotonic()
        assert call(ex, "raises", "filter", [HOSTS, "vm", {}]).__class__.__name__ == "UnitRaised"
        assert time.monotonic() - start < 0.5  # it got a slot at once, not after the 3 s deadline
        t.join()
    finally:
        ex.stop()


def test_the_spare_pool_returns_to_its_size_after_a_burst(tmp_path):
    (tmp_path / "slow.py").write_text(
        "import time\nclass slow:\n    def do_filter(self, hosts, vm, args):\n"
        "        time.sleep(0.3)\n        return hosts\n")
    ex = make(tmp_path, plugins__concurrency=8, plugins__spare_workers=2)
    try:
        unit = ex.catalog().find("filter", "slow")
        # takes that give up (ProxyBusy) still asked for replacements: the burst's surplus
        threads = [threading.Thread(target=lambda: ex.run([executor.Call(unit, [HOSTS, "vm", {}])] * 6,
                                                          time.monotonic() + 0.4)[1].release())
                   for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        server = forkserver_pid(ex)
        wait_until(lambda: len(ex.generation.pool) == 2 and len([p for p in descendants(server) if alive(p)]) == 2,
                   5, "two spare workers, no more, in the server's pool and below the fork server")
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
        assert ex.catalog().find("filter", "added")  # the executor saw the change and reloaded
        assert call(ex, "versioned", "balance", [HOSTS, {}])[0] == "3fd0bb5e-2f4b-4e5a-9b6c-0d1e2f3a4b5c"
        wait_until(lambda: not alive(old_server), 5, "the retired fork server to stop")
    finally:
        ex.stop()


def test_linked_plugin_files_are_scanned_for_and_their_changes_seen_by_the_next_call(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "versioned.py").write_text("class versioned:\n    def do_balance(self, hosts, args):\n        return None\n")
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "versioned.py").symlink_to(shared / "versioned.py")  # its target changes raise no event here
    ex = make(folder)
    try:
        assert "symbolic links" in ex.generation.watch.why_not
        assert call(ex, "versioned", "balance", [HOSTS, {}]) is None
        (shared / "versioned.py").write_text("class versioned:\n    def do_balance(self, hosts, args):\n"
                                             "        return ('3fd0bb5e-2f4b-4e5a-9b6c-0d1e2f3a4b5c', hosts)\n")
        assert call(ex, "versioned", "balance", [HOSTS, {}])[0] == "3fd0bb5e-2f4b-4e5a-9b6c-0d1e2f3a4b5c"
    finally:
        ex.stop()


def test_a_change_no_event_reports_is_seen_within_the_rescan_period(tmp_path, monkeypatch):
    """A plugin file rewritten through a hard link elsewhere raises no event in the plugin
    folder (as a change made on another machine of a network filesystem): the scan every
    RESCAN seconds finds it."""
    monkeypatch.setattr(folder_watch, "RESCAN", 0.2)
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "versioned.py").write_text("class versioned:\n    def do_balance(self, hosts, args):\n        return None\n")
    os.link(folder / "versioned.py", tmp_path / "alias.py")
    ex = make(folder)
    try:
        first = ex.generation
        assert first.watch.why_not is None  # inotify serves this folder
        for _ in range(3):  # the fork server's imports read the files: that is no change
            assert call(ex, "versioned", "balance", [HOSTS, {}]) is None
        assert ex.generation is first
        (tmp_path / "alias.py").write_text("class versioned:\n    def do_balance(self, hosts, args):\n"
                                           "        return ('3fd0bb5e-2f4b-4e5a-9b6c-0d1e2f3a4b5c', hosts)\n")
        wait_until(lambda: call(ex, "versioned", "balance", [HOSTS, {}]) is not None, 10,
                   "the rewritten unit to be reloaded")
        assert ex.generation is not first
    finally:
        ex.stop()


def test_a_dead_fork_server_fails_calls_cleanly(tmp_path):
    shutil.copy(PLUGINS / "basic" / "units.py", tmp_path)
    ex = make(tmp_path, plugins__spare_workers=0)
    try:
        unit = ex.catalog().find("filter", "keep_all")
        os.kill(forkserver_pid(ex), 9)
        wait_until(lambda: not ex.generation.alive, 5, "the control channel to close")
        [value], _ = ex.run([executor.Call(unit, [HOSTS, "vm", {}])], time.monotonic() + 1)
        assert isinstance(value, UnitCrashed) and "fork server" in str(value)
        ex.catalog()  # what every engine call does first: a new fork server
        assert call(ex, "keep_all", "filter", [HOSTS, "vm", {}]) == HOSTS
    finally:
        ex.stop()


def test_protocol_over_a_real_executor(good):
    p = protocol.EngineProtocol(good, TIMEOUT)
    rec = protocol.Record()
    answer = p.runCostFunctions(rec, [["by_length", 2], ["by_position", 3], ["missing", 5]], ["h1", "h22"], "vm", {})
    assert answer["result"] == [["h1", 2 * 2 + 3 * 0], ["h22", 3 * 2 + 3 * 1]]
    assert answer["result_code"] == 1 and list(answer["plugin_errors"]) == ["missing"]
    assert (rec.utype, rec.kinds) == ("score", [("missing", "UnitNotFound")])  # what the metrics count


def test_status_reports_slots_the_fork_server_and_units(good):
    spares = good.config.plugins.spare_workers
    s = wait_until(lambda: (lambda s: s if s["spare_workers"] == spares else None)(good.status()), 5,
                   "the spare workers")
    assert (s["slots"], s["slots_in_use"]) == (8, 0)
    assert s["fork_server_alive"] and s["fork_server_pid"] == forkserver_pid(good)
    assert s["catalog"] is good.catalog() and len(s["catalog"].units) == 11


def sim_executor(sim_engine, **settings):
    cfg = config.load(None, {"plugins.folder": str(PLUGINS.parent.parent / "balancers"),
                             "engine.url": sim_engine.url})
    cfg = cfg.replace({"engine.user": sim_engine.user, **settings})
    ex = executor.Executor(cfg, password=sim_engine.password)
    ex.start()
    return ex


@pytest.mark.parametrize("max_age", [0, 10], ids=["units-read-live", "shared-snapshot"])
def test_the_engine_token_is_obtained_once_and_carried_to_later_reads(sim_engine, max_age):
    ex = sim_executor(sim_engine, **{"engine.max_age": max_age})
    try:
        unit = ex.catalog().find("balance", "host_memory_balance")
        hosts = [h["id"] for h in sim_engine.snapshot()["hosts"]]

        def calls(n):
            for _ in range(n):
                [value], _ = ex.run([executor.Call(unit, [hosts, {}])], time.monotonic() + 10)
                assert value[0] == "b0000000-0000-4000-8000-000000000004"
            if max_age:  # a new read of the shared state, carrying the token
                ex.generation.refresher.read_at = 0
                calls_before = ex.generation.refresher.reads
                ex.run([executor.Call(unit, [hosts, {}])], time.monotonic() + 10)[1].release()
                assert ex.generation.refresher.reads == calls_before + 1
        calls(3)
        assert sim_engine.logins == 1 and sim_engine.logouts == 0  # one login, never revoked
        sim_engine.revoke_tokens()  # e.g. the engine restarted: the next request gets a 401
        calls(2)
        assert sim_engine.logins == 2 and sim_engine.logouts == 0  # renewed once, then carried
    finally:
        ex.stop()
