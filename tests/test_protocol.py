"""Engine protocol: answer shapes and aggregation rules (docs/ENGINE_PROTOCOL.md §2)."""
import uuid

import pytest
from hypothesis import given, strategies as st

from proxy import protocol
from proxy.errors import BadUnitOutput

HOST = st.uuids().map(str)
HOSTS = st.lists(HOST, max_size=12, unique=True)
NUMBER = st.one_of(st.integers(min_value=-10**15, max_value=10**15),
                   st.floats(min_value=-1e12, max_value=1e12, allow_nan=False))


@given(HOSTS, st.lists(HOST, max_size=12))
def test_filter_result_is_the_sent_hosts_that_passed_in_sent_order(sent, returned):
    out = protocol.filter_result(returned, sent)
    assert out == [h for h in sent if h in set(returned)]


@pytest.mark.parametrize("bad", [None, {"a": 1}, "host", [1, 2], [None]])
def test_filter_result_refuses_wrong_shapes(bad):
    with pytest.raises(BadUnitOutput, match="filter must return a list of host ids"):
        protocol.filter_result(bad, ["h"])


@given(HOSTS.filter(bool), st.data())
def test_score_result_covers_exactly_the_sent_hosts_with_ints(sent, data):
    scored = data.draw(st.lists(st.sampled_from(sent), min_size=1, unique=True))
    extra = data.draw(st.lists(HOST, max_size=3))
    pairs = [(h, data.draw(NUMBER)) for h in scored + extra]
    out = protocol.score_result(pairs, sent)
    assert list(out) == sent  # never a host that was not sent, every host that was
    assert all(type(v) is int for v in out.values())
    given_scores = {h: round(s) for h, s in pairs if h in set(sent)}
    worst = max(given_scores.values())
    for h in sent:
        # a left-out host can never look better than the unit's worst score (lower wins)
        assert out[h] == given_scores.get(h, worst)


def test_score_result_accepts_a_dict_and_rejects_bad_scores():
    assert protocol.score_result({"a": 1.6, "b": 2}, ["a", "b"]) == {"a": 2, "b": 2}
    for bad, words in [([("a", float("nan"))], "finite"), ([("a", True)], "finite"),
                       ([("a", "1")], "finite"), ([("a",)], "[host id, number]"),
                       ([("zz", 1)], "scored none"), (5, "pairs")]:
        with pytest.raises(BadUnitOutput, match=words.replace("[", r"\[")):
            protocol.score_result(bad, ["a"])


@given(st.integers(min_value=-2**70, max_value=2**70))
def test_clamp32(n):
    c = protocol.clamp32(n)
    assert -2**31 <= c <= 2**31 - 1
    assert c == n or abs(n) > 2**31 - 1


@given(HOSTS, st.lists(HOST, max_size=12))
def test_balance_result_keeps_only_sent_candidates(sent, returned):
    vm = str(uuid.uuid4())
    if returned and not set(returned) & set(sent):
        with pytest.raises(BadUnitOutput, match="none of its candidate hosts"):
            protocol.balance_result((vm, returned), sent)
        return
    out = protocol.balance_result((vm, returned), sent)
    assert out[0] == vm and set(out[1]) <= set(sent) and set(out[1]) == set(returned) & set(sent)


@pytest.mark.parametrize("nothing", [None, "", [], (), ("", ["h"]), [None, []]])
def test_balance_nothing_to_do(nothing):
    assert protocol.balance_result(nothing, ["h"]) == ["", []]


@pytest.mark.parametrize("bad, words", [
    (("vm-1", ["h"]), "UUID"), ((str(uuid.uuid4()), "h"), "list of host ids"),
    ((1, 2, 3), "balancer must return"), ({"vm": 1}, "balancer must return")])
def test_balance_result_refuses_what_would_crash_the_engine(bad, words):
    with pytest.raises(BadUnitOutput, match=words):
        protocol.balance_result(bad, ["h"])


def test_envelope_never_holds_none_and_sets_result_code():
    rec = protocol.Record()
    assert protocol.envelope([], rec) == {"result_code": 0, "result": [], "plugin_errors": {}, "errors": []}
    rec.failed["u"] = ["boom"]
    assert protocol.envelope(["h"], rec)["result_code"] == 1


# --- aggregation over several units (what runFilters / runCostFunctions answer) ----------

OUTCOME = st.one_of(st.just(protocol.FAILED), st.just({"bad": "shape"}), st.lists(HOST, max_size=6))


@given(HOSTS, st.lists(OUTCOME, max_size=5), st.data())
def test_filters_intersect_the_units_that_worked(hosts, outcomes, data):
    # let some units return some of the sent hosts too
    outcomes = [o if o is protocol.FAILED or isinstance(o, dict)
                else o + data.draw(st.lists(st.sampled_from(hosts), max_size=6)) if hosts else o
                for o in outcomes]
    rec = protocol.Record()
    named = [(f"f{i}", o) for i, o in enumerate(outcomes)]
    out = protocol.combine_filters(hosts, named, rec)
    worked = [set(o) for o in outcomes if isinstance(o, list)]
    assert set(out) <= set(hosts) and out == [h for h in hosts if h in set(out)]
    if outcomes and not worked:
        assert out == hosts and rec.errors == ["all filters failed; no host was filtered out"]
    else:
        assert set(out) == set(hosts).intersection(*worked)
        assert rec.errors == []
    # failed calls were recorded when they failed; malformed answers are recorded here
    assert sorted(rec.failed) == sorted(f"f{i}" for i, o in enumerate(outcomes) if isinstance(o, dict))


@given(HOSTS.filter(bool), st.lists(st.tuples(st.integers(0, 10**6), st.booleans()), max_size=4), st.data())
def test_scores_are_weighted_sums_clamped_to_int32_for_every_sent_host(hosts, units, data):
    outcomes, expected = [], dict.fromkeys(hosts, 0)
    for i, (weight, works) in enumerate(units):
        if not works:
            outcomes.append((f"s{i}", weight, protocol.FAILED))
            continue
        scores = {h: data.draw(st.integers(-10**9, 10**9)) for h in hosts}
        outcomes.append((f"s{i}", weight, list(scores.items())))
        for h in hosts:
            expected[h] += weight * scores[h]
    rec = protocol.Record()
    out = protocol.combine_scores(hosts, outcomes, rec)
    assert [h for h, _ in out] == hosts
    assert all(type(v) is int and -2**31 <= v <= 2**31 - 1 for _, v in out)
    assert dict(out) == {h: protocol.clamp32(v) for h, v in expected.items()}
    assert rec.failed == {}


class _CountingExecutor:
    """Records the calls it is asked to run; every unit passes every host."""

    def __init__(self, names):
        from proxy import registry
        self.units = {n: registry.Unit(module="m.py", name=n, type="filter", description="", properties="")
                      for n in names}
        self.runs = []
        from proxy import config
        self.config = config.load()  # no [units.NAME] tables

    def catalog(self):
        executor = self

        class Catalog:
            def find(self, utype, name):
                return executor.units.get(name)
        return Catalog()

    def run(self, calls, deadline):
        from proxy.executor import Finished
        self.runs.append([c.unit.name for c in calls])
        return [c.args[0] for c in calls], Finished()


def test_a_name_given_many_times_runs_once_and_unknown_names_run_nothing():
    ex = _CountingExecutor(["keep"])
    record = protocol.Record()
    names = ["keep"] * 3000 + [f"nope{i % 7}" for i in range(3000)]
    answer = protocol.EngineProtocol(ex, 5).runFilters(record, names, ["h1", "h2"], "vm", {})
    assert ex.runs == [["keep"]]  # one process for 3,000 mentions; none for the unknown names
    assert answer["result"] == ["h1", "h2"]
    assert sorted(answer["plugin_errors"]) == [f"nope{i}" for i in range(7)]  # each name reported
    assert all(len(msgs) == 1 for msgs in answer["plugin_errors"].values())
    assert record.units[:2] == ["keep", "nope0"] and len(record.units) == 8
