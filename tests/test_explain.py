"""A unit's reasons: per host and for the decision, bounded in size."""
import pytest

from proxy import explain


@pytest.fixture(autouse=True)
def fresh():
    explain.reset()
    yield
    explain.reset()


def test_no_reason_given_is_none():
    assert explain.collected() is None


def test_reasons_per_host_and_decision():
    explain.reason("h1", "short of memory")
    explain.reason("h1", "the source")  # the last word on a host wins
    explain.because("moves tiny1")
    assert explain.collected() == {"hosts": {"h1": "the source"}, "decision": "moves tiny1"}


def test_reasons_are_bounded():
    explain.because("x" * 10_000)
    for n in range(explain.MAX_HOSTS + 7):
        explain.reason(f"h{n}", "r")
    found = explain.collected()
    assert len(found["decision"]) == explain.MAX_TEXT and found["decision"].endswith("…")
    assert len(found["hosts"]) == explain.MAX_HOSTS and found["dropped"] == 7
