"""Warm workers: a unit that allows it (reuse_worker = True) has its next call served by the
worker that answered it, within the bounds proxy/warm.py states; every other call gets a
fresh process."""
import os
import signal
import socket

import pytest

from proxy import generation, warm
from tests.executor_support import call, make
from tests.support import PLUGINS, alive, wait_until

FOLDER = PLUGINS / "warm"


def pid_of(ex, name="reused", **args):
    value = call(ex, name, "filter", [["h1"], "vm", args])
    assert isinstance(value, list), value
    return int(value[0])


@pytest.fixture
def ex():
    ex = make(FOLDER)
    yield ex
    ex.stop()


def test_a_unit_that_allows_it_is_served_by_the_same_warm_worker(ex):
    pids = {pid_of(ex) for _ in range(5)}
    assert len(pids) == 1 and ex.status()["warm_workers"] == 1


def test_a_unit_without_the_flag_gets_a_fresh_process_every_call(ex):
    assert len({pid_of(ex, "fresh_each_time") for _ in range(4)}) == 4
    assert ex.status()["warm_workers"] == 0


def test_units_never_share_a_worker(ex):
    a, b = pid_of(ex, "reused"), pid_of(ex, "also_reused")
    assert a != b and pid_of(ex, "reused") == a and pid_of(ex, "also_reused") == b


def test_a_worker_serves_at_most_plugins_worker_calls():
    ex = make(FOLDER, plugins__worker_calls=3)
    try:
        pids = [pid_of(ex) for _ in range(7)]
        assert pids[0] == pids[1] == pids[2] != pids[3] == pids[4] == pids[5] != pids[6]
    finally:
        ex.stop()


def test_worker_calls_1_means_a_fresh_process_every_call():
    ex = make(FOLDER, plugins__worker_calls=1)
    try:
        assert len({pid_of(ex) for _ in range(4)}) == 4
    finally:
        ex.stop()


@pytest.mark.parametrize("dirty", [{"fail": "1"}, {"thread": "1"}, {"keep_mb": "80"}],
                         ids=["failed", "left a thread", "kept 80 MB"])
def test_a_call_that_does_not_end_clean_ends_its_worker(ex, dirty):
    first = pid_of(ex)
    value = call(ex, "reused", "filter", [["h1"], "vm", dirty])
    assert "fail" in dirty or int(value[0]) == first  # it ran in the warm worker...
    wait_until(lambda: not alive(first), 5, "the worker left dirty to exit")
    assert pid_of(ex) != first  # ...and the next call gets another


def test_a_warm_worker_that_died_while_idle_is_replaced_without_failing_the_call(ex):
    first = pid_of(ex)
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: not alive(first), 5, "the warm worker to die")
    assert pid_of(ex) != first


def test_warm_workers_idle_too_long_are_let_go(ex, monkeypatch):
    monkeypatch.setattr(warm, "IDLE", 0.2)
    first = pid_of(ex)
    wait_until(lambda: not alive(first), 5, "the idle warm worker to exit")
    assert ex.status()["warm_workers"] == 0


def test_stopping_lets_every_warm_worker_go():
    ex = make(FOLDER)
    first = pid_of(ex)
    ex.stop()
    wait_until(lambda: not alive(first), 5, "the warm worker to exit")


class FakeWorker(generation.Worker):
    def __init__(self, version=1, calls=1):
        ours, self.peer = socket.socketpair()
        super().__init__(pid=0, sock=ours, version=version, calls=calls)

    def closed(self):
        return self.sock.fileno() == -1


@pytest.fixture
def pool():
    p = warm.WarmPool(most=2, calls_per_worker=5)
    yield p
    p.close()


def test_the_pool_keeps_at_most_its_bound_and_lets_the_longest_idle_go(pool):
    ws = [FakeWorker() for _ in range(3)]
    assert all(pool.give_back(w, f"unit{i}", 1) for i, w in enumerate(ws))
    assert pool.count() == 2 and ws[0].closed() and not ws[2].closed()
    assert pool.take("unit0", 1) is None and pool.take("unit2", 1) is ws[2]


def test_the_pool_refuses_stale_or_worn_workers_and_lets_old_state_go(pool):
    assert not pool.give_back(FakeWorker(version=1), "u", current_version=2)
    assert not pool.give_back(FakeWorker(calls=5), "u", 1)
    kept = FakeWorker(version=2)
    assert pool.give_back(kept, "u", 2)
    assert pool.take("u", min_version=3) is None and kept.closed()  # older than the call needs
    newer = FakeWorker(version=3)
    pool.give_back(newer, "u", 3)
    pool.older_than(4)
    assert newer.closed() and pool.count() == 0


def test_a_closed_pool_keeps_nothing(pool):
    pool.close()
    assert not pool.give_back(FakeWorker(), "u", 1)
