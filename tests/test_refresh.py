"""When the shared snapshot is read again: single flight, max_age honoured, refresh ahead,
reads bounded by time, stale snapshots kept on engine errors up to stale_limit.

The Refresher runs against a clock the tests move and a fake fork server that records
the Refresh messages; answers are delivered by hand, so no test sleeps."""
import itertools
import threading
import time

import pytest

from proxy import messages
from proxy.refresh import Refresher
from tests.support import wait_until


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def sent():
    return []


def make(clock, sent, max_age=10.0, stale_limit=60.0):
    return Refresher(sent.append, itertools.count(1), max_age=max_age, stale_limit=stale_limit,
                     read_timeout=5.0, clock=clock)


def answer(r, clock, read_seconds=0.5):
    """The fork server's answer to the read in flight: a snapshot read just now."""
    version = r.reading
    r.ready(messages.SnapshotReady(version, clock(), read_seconds, f"version {version}"))
    return version


def soon():
    return time.monotonic() + 5


def test_the_first_read_starts_with_the_generation(clock, sent):
    r = make(clock, sent)
    r.start()
    assert [type(m) for m in sent] == [messages.Refresh] and sent[0].version == 1


def test_calls_get_the_held_version_and_start_no_read_while_it_is_fresh(clock, sent):
    r = make(clock, sent)
    r.start()
    answer(r, clock)
    for _ in range(100):
        clock.now += 0.05
        assert r.before_call(soon()) == (1, None)
    assert len(sent) == 1


def test_many_concurrent_calls_that_need_a_read_wait_for_one_read(clock, sent):
    r = make(clock, sent)
    results = []
    callers = [threading.Thread(target=lambda: results.append(r.before_call(soon()))) for _ in range(20)]
    for t in callers:
        t.start()
    wait_until(lambda: r.reading, 5, "a read to start")
    assert len(sent) == 1  # single flight: one read for twenty callers
    answer(r, clock)
    for t in callers:
        t.join(5)
    assert results == [(1, None)] * 20 and len(sent) == 1


def test_a_snapshot_older_than_max_age_is_never_handed_out_while_a_read_can_replace_it(clock, sent):
    r = make(clock, sent, max_age=10)
    r.start()
    answer(r, clock)
    clock.now += 10.5  # past max_age: the next call waits for the read it starts
    done = []
    caller = threading.Thread(target=lambda: done.append(r.before_call(soon())))
    caller.start()
    wait_until(lambda: len(sent) == 2, 5, "the second read")
    assert not done  # still waiting
    answer(r, clock)
    caller.join(5)
    assert done == [(2, None)]


def test_refresh_ahead_starts_the_next_read_before_max_age_so_calls_do_not_wait(clock, sent):
    r = make(clock, sent, max_age=10)
    r.start()
    answer(r, clock, read_seconds=1.0)
    clock.now += 8.6  # before max_age - (1.2 × read time + 0.05): not yet
    r.before_call(soon())
    assert len(sent) == 1
    clock.now += 0.2  # within the lead: a read starts, and the call does not wait for it
    started = time.monotonic()
    assert r.before_call(soon()) == (1, None)
    assert time.monotonic() - started < 0.5 and len(sent) == 2


def test_reads_are_bounded_by_time_not_by_calls(clock, sent):
    """50 calls/s for 60 s, each read answered 0.5 s after it starts: at most 60 / max_age + 1
    reads, and no call ever finds the snapshot older than max_age."""
    r = make(clock, sent, max_age=10)
    r.start()
    answer(r, clock, read_seconds=0.5)
    started_at = {}
    for _ in range(50 * 60):
        clock.now += 0.02
        if r.reading and clock.now - started_at[r.reading] >= 0.5:
            answer(r, clock, read_seconds=0.5)
        r.before_call(soon())
        assert r.age() <= 10
        if r.reading:
            started_at.setdefault(r.reading, clock.now)
    assert len(sent) <= 60 / 10 + 1


def simulate_load(r, clock, read_takes, seconds, rate=50):
    """Calls at `rate`/s for `seconds`, each read answered `read_takes` s after it started:
    (request times of the reads, the oldest snapshot age a call met once the first read is in)."""
    r.start()
    started = {r.reading: clock.now}
    oldest = 0.0
    for _ in range(int(seconds * rate)):
        clock.now += 1 / rate
        if r.reading and clock.now - started[r.reading] >= read_takes:
            answer(r, clock, read_seconds=read_takes * 0.9)
        if r.read_at is not None:
            oldest = max(oldest, r.age())
        if not r.reading:
            r.before_call(soon())  # never waits here: a read is only started by it
            if r.reading:
                started[r.reading] = clock.now
    return sorted(started.values()), oldest


@pytest.mark.parametrize("read_takes", [0.05, 1.0, 2.5, 4.0, 5.8, 6.6, 7.8])
def test_refresh_ahead_keeps_up_with_slow_reads_within_the_read_bound(clock, sent, read_takes):
    """A 1,000-host engine takes seconds to read: the next read starts early enough that no
    call finds the snapshot past max_age, and still at most 60 / max_age + 1 reads a minute."""
    r = make(clock, sent, max_age=10)
    starts, oldest = simulate_load(r, clock, read_takes, 300)
    assert oldest <= 10
    for first in starts:
        assert len([t for t in starts if first <= t < first + 60]) <= 60 / 10 + 1


def test_reads_of_varying_duration_stay_within_the_read_bound(clock, sent):
    """Slow reads make the lead long; a quick read after them must not start the next early."""
    r = make(clock, sent, max_age=10)
    r.start()
    durations = iter([7.5, 7.5, 7.5] + [0.2, 7.5] * 40)
    started, takes = {r.reading: clock.now}, {r.reading: next(durations)}
    for _ in range(50 * 300):
        clock.now += 0.02
        if r.reading and clock.now - started[r.reading] >= takes[r.reading]:
            answer(r, clock, read_seconds=takes[r.reading])
        if not r.reading:
            r.before_call(soon())
            if r.reading:
                started[r.reading], takes[r.reading] = clock.now, next(durations)
    starts = sorted(started.values())
    for first in starts:
        assert len([t for t in starts if first <= t < first + 60]) <= 60 / 10 + 1


def test_reads_too_slow_to_read_ahead_are_told_to_the_admin(clock, sent, caplog):
    r = make(clock, sent, max_age=10)
    starts, _ = simulate_load(r, clock, 9.0, 120)
    assert "raise engine.max_age to at least 15 s" in caplog.text
    assert caplog.text.count("raise engine.max_age") == 1
    assert min(b - a for a, b in zip(starts, starts[1:])) >= 10  # still bounded by time


def test_an_idle_proxy_reads_nothing(clock, sent):
    r = make(clock, sent)
    r.start()
    answer(r, clock)
    clock.now += 3600  # no call for an hour: nothing asked the engine
    assert len(sent) == 1


def test_a_failed_refresh_keeps_the_last_snapshot_until_stale_limit(clock, sent, caplog):
    r = make(clock, sent, max_age=10, stale_limit=60)
    r.start()
    answer(r, clock)
    clock.now += 11
    waiting = threading.Thread(target=lambda: r.before_call(soon()))
    waiting.start()
    wait_until(lambda: len(sent) == 2, 5, "the refresh")
    r.failed(messages.SnapshotFailed(sent[-1].version, "cannot connect to the engine at X"))
    waiting.join(5)
    assert "cannot refresh" in caplog.text and "cannot connect to the engine at X" in caplog.text
    # The held version (1) keeps being handed out, with the reason, for the workers to judge.
    assert r.before_call(soon()) == (1, "cannot connect to the engine at X")
    assert len(sent) == 2  # and no new read before max_age after the failed one
    clock.now += 10
    r.before_call(time.monotonic() + 0.1)  # starts the retry; waits for it only briefly
    assert len(sent) == 3  # retried, once per max_age
    clock.now += 45  # now 66 s after the read: past stale_limit
    r.failed(messages.SnapshotFailed(sent[-1].version, "still down"))
    assert "past engine.stale_limit" in caplog.text


def test_a_read_that_succeeds_again_clears_the_error(clock, sent):
    r = make(clock, sent)
    r.start()
    r.failed(messages.SnapshotFailed(1, "engine down"))
    assert r.before_call(soon()) == (0, "engine down")
    clock.now += 10
    r.before_call(time.monotonic() + 0.1)  # starts the retry; waits for it only briefly
    answer(r, clock)
    assert r.before_call(soon()) == (2, None)


def test_versions_grow_across_refreshers_sharing_a_counter(clock, sent):
    versions = itertools.count(1)
    a = Refresher(sent.append, versions, max_age=10, stale_limit=60, read_timeout=5, clock=clock)
    b = Refresher(sent.append, versions, max_age=10, stale_limit=60, read_timeout=5, clock=clock)
    a.start()
    b.start()
    assert [m.version for m in sent] == [1, 2]


def test_waiting_calls_are_released_when_the_fork_server_goes_away(clock, sent):
    r = make(clock, sent)
    r.start()
    done = []
    t = threading.Thread(target=lambda: done.append(r.before_call(soon())))
    t.start()
    wait_until(lambda: t.is_alive(), 5, "the caller to wait")
    r.closed()
    t.join(5)
    assert done == [(0, None)]
