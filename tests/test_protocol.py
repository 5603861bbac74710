"""Engine protocol: answer shapes and aggregation rules (ENGINE_CONTRACT §2)."""
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
