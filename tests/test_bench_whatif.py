"""The journal benchmark's interval of p50 added (tests/benchmarks/bench_whatif.py): what the
verdict line is read against, so it must move with the data and only with it."""

import statistics

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.benchmarks.bench_whatif import p50_added_interval

latencies = st.lists(st.floats(0.001, 0.05), min_size=1, max_size=20)
sets = st.lists(st.fixed_dictionaries({"on": latencies, "off": latencies}), min_size=2, max_size=8)


def test_sets_that_agree_give_an_interval_of_one_point():
    per_set = [{"on": [0.010 + 0.0003, 0.020 + 0.0003], "off": [0.010, 0.020]} for _ in range(5)]
    low, high = p50_added_interval(per_set)
    assert abs(low - 0.3) < 1e-9 and abs(high - 0.3) < 1e-9


def test_sets_that_disagree_widen_it_around_the_pooled_figure():
    per_set = [{"on": [0.010 + d], "off": [0.010]} for d in (0.0, 0.0002, 0.0004, 0.0006, 0.0008, 0.0010)]
    low, high = p50_added_interval(per_set)
    pooled = (statistics.median([s["on"][0] for s in per_set]) - 0.010) * 1000
    assert 0.0 <= low < pooled < high <= 1.0
    assert high - low > 0.3


@settings(max_examples=40, deadline=None)
@given(sets, st.floats(-0.002, 0.002))
def test_slowing_every_journal_on_call_moves_both_ends_by_as_much(per_set, extra):
    low, high = p50_added_interval(per_set, resamples=50)
    moved = [{"on": [x + extra for x in s["on"]], "off": s["off"]} for s in per_set]
    low2, high2 = p50_added_interval(moved, resamples=50)
    assert low <= high
    assert abs(low2 - low - extra * 1000) < 1e-6 and abs(high2 - high - extra * 1000) < 1e-6
