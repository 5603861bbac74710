"""The fork server's count of spare workers: replacements are deferred only while one is idle."""
from hypothesis import given, settings, strategies as st

from proxy.spares import REPLACE_DEFER_MAX, Spares


def test_a_take_that_waits_for_its_worker_leaves_no_phantom_spare():
    spares = Spares()
    for _ in range(2):
        spares.forked()
    spares.taken(1), spares.taken(1)  # both spares taken
    spares.taken(1)  # a third call asks before its worker exists: it waits
    assert spares.replace_delay() == 0.0  # so its fork is not deferred
    spares.forked()  # the fork it waited for; the server takes that worker at once
    assert spares.idle == 0
    spares.taken(1)  # the next call: no spare is idle, its replacement is forked at once
    assert spares.replace_delay() == 0.0 and not spares.all_idle(live=1)


def test_with_a_spare_still_idle_a_replacement_waits_for_a_quiet_moment():
    spares = Spares()
    for _ in range(4):
        spares.forked()
    spares.taken(1)
    assert spares.replace_delay() == REPLACE_DEFER_MAX
    assert not spares.all_idle(live=4) and spares.all_idle(live=3)


def test_spares_the_server_closed_unasked_stop_counting_once_reaped():
    spares = Spares()
    for _ in range(4):
        spares.forked()
    spares.at_most(live=2)  # two stale spares closed by the server and reaped
    assert spares.idle == 2


@settings(max_examples=300, deadline=None)
@given(st.lists(st.booleans(), max_size=60))
def test_the_count_is_always_forks_minus_takes(events):
    """Whatever the order of forks (True) and takes (False) — takes may run ahead of forks —
    the count is forks minus takes: no drift, so waits never turn into phantom spares."""
    spares, forks, takes = Spares(), 0, 0
    for fork in events:
        if fork:
            spares.forked()
            forks += 1
        else:
            spares.taken(1)
            takes += 1
        assert spares.idle == forks - takes
        assert (spares.replace_delay() > 0) == (forks - takes > 0)
