"""proxy.properties: one declaration gives the engine's regex and the parser, and they agree."""

import re

import pytest
from hypothesis import given, settings, strategies as st

from proxy import registry
from proxy.properties import Choice, Flag, Parameters, Whole

PARAMS = Parameters(memoryMB=Whole(500, unit="MB"), safe=Flag(True), mode=Choice("fast", ["fast", "slow"]),
                    high=Whole(80, unit="%", minimum=50, maximum=99))


# --- the engine's parameter map ---------------------------------------------------------

def test_validation_lists_the_keys_in_declaration_order_in_the_engine_syntax():
    assert PARAMS.validation == "memoryMB=[0-9]*;safe=True|False;mode=fast|slow;high=^([5-9][0-9])$"
    assert registry.properties_problem(PARAMS.validation) is None
    assert Parameters().validation == ""


@pytest.mark.parametrize("kind, regex", [
    (Whole(0), "[0-9]*"),
    (Whole(0, minimum=1), "^([1-9][0-9]*)$"),
    (Whole(0, minimum=50, maximum=99), "^([5-9][0-9])$"),
    (Whole(0, maximum=100), "^([0-9]|[1-9][0-9]|100)$"),
    (Whole(0, minimum=5), "^([5-9]|[1-9][0-9]+)$"),
    (Whole(0, minimum=7, maximum=7), "^(7)$"),
    (Flag(False), "True|False"),
    (Choice("a", ("a", "b-c", "D_9")), "a|b-c|D_9"),
])
def test_each_kind_gives_the_regex_the_shipped_units_and_the_engine_use(kind, regex):
    assert kind.regex == regex


@pytest.mark.parametrize("make", [
    lambda: Parameters(größe=Whole(1)),
    lambda: Whole(0, minimum=-1),
    lambda: Whole(0, minimum=10, maximum=9),
    lambda: Whole(0, maximum=9.5),
    lambda: Choice("a", []),
    lambda: Choice("a", ["a;b=.*"]),
    lambda: Choice("a", ["a|b"]),
])
def test_declarations_the_engine_could_not_take_fail_at_import(make):
    with pytest.raises(ValueError):
        make()


# --- parsing ------------------------------------------------------------------------------

def test_parse_gives_typed_values_and_ignores_other_units_keys():
    p = PARAMS.parse({"memoryMB": "1024", "safe": "False", "mode": "slow", "high": "70", "other": "x"})
    assert (p.memoryMB, p.safe, p.mode, p.high) == (1024, False, "slow", 70)


@pytest.mark.parametrize("args", [None, {}, {"memoryMB": "", "safe": " ", "mode": "\t", "high": None}])
def test_absent_empty_or_blank_values_give_the_defaults(args):
    p = PARAMS.parse(args)
    assert (p.memoryMB, p.safe, p.mode, p.high) == (500, True, "fast", 80)


def test_a_default_may_lie_outside_the_range():
    # The engine's own "0 = off" defaults for keys whose regex refuses 0.
    assert Parameters(free=Whole(0, minimum=1)).parse({}).free == 0


def test_flag_reads_false_as_false_in_any_case():
    # Regression: the original balancer used bool('False'), which is True.
    assert Parameters(f=Flag(True)).parse({"f": "False"}).f is False
    assert Parameters(f=Flag(False)).parse({"f": "tRUE"}).f is True


@pytest.mark.parametrize("args, message", [
    ({"memoryMB": "5e2"}, "memoryMB must be a whole number of MB, got '5e2'"),
    ({"memoryMB": " 42"}, "memoryMB must be a whole number of MB, got ' 42'"),
    ({"memoryMB": "²"}, "memoryMB must be a whole number of MB, got '²'"),
    ({"safe": "yes"}, "safe must be True or False, got 'yes'"),
    ({"mode": "Fast"}, "mode must be one of fast, slow, got 'Fast'"),
    ({"high": "100"}, "high must be a whole number of % from 50 to 99, got '100'"),
    ({"high": "080"}, "high must be a whole number of % from 50 to 99, got '080'"),
])
def test_a_refused_value_raises_naming_the_key_what_it_must_be_and_what_came(args, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        PARAMS.parse(args)


def test_at_least_is_said_when_there_is_no_maximum():
    with pytest.raises(ValueError, match=r"^n must be a whole number of minutes, at least 1, got '0'$"):
        Parameters(n=Whole(2, unit="minutes", minimum=1)).parse({"n": "0"})


# --- the regex and the parser agree (Java's String.matches is Python's fullmatch here) ----

@st.composite
def wholes(draw):
    minimum = draw(st.integers(0, 10 ** draw(st.integers(0, 7))))
    maximum = draw(st.none() | st.integers(minimum, minimum + 10 ** draw(st.integers(0, 8))))
    return Whole(0, minimum=minimum, maximum=maximum)


NUMERALISH = st.text(st.sampled_from("0123456789 -+.e²٣\n"), min_size=1, max_size=12)


def accepted(kind, text):
    """parse()'s answer for one non-blank value: (True, value) or (False, None)."""
    try:
        return True, getattr(Parameters(k=kind).parse({"k": text}), "k")
    except ValueError:
        return False, None


@settings(max_examples=500)
@given(wholes(), st.data())
def test_a_whole_numbers_regex_matches_exactly_the_numerals_in_its_range(kind, data):
    edges = [kind.minimum] + ([] if kind.maximum is None else [kind.maximum])
    near_an_edge = st.sampled_from(edges).flatmap(lambda e: st.integers(max(0, e - 30), e + 30))
    n = data.draw(near_an_edge | st.integers(0, 10 ** 10))
    in_range = kind.minimum <= n <= (n if kind.maximum is None else kind.maximum)
    assert bool(re.fullmatch(kind.regex, str(n))) == in_range
    assert accepted(kind, str(n)) == ((True, n) if in_range else (False, None))


@settings(max_examples=500)
@given(wholes(), NUMERALISH | st.text(min_size=1))
def test_a_whole_number_parses_exactly_what_its_regex_matches(kind, text):
    if not text.strip():
        return  # blank means "not set"
    ok, value = accepted(kind, text)
    assert ok == bool(re.fullmatch(kind.regex, text))
    if ok:
        assert value == int(text)
        assert kind.minimum <= value and (kind.maximum is None or value <= kind.maximum)


@given(st.sampled_from(["True", "False", "true", "FALSE", "tRuE"]) | st.text(min_size=1))
def test_a_flag_parses_what_its_regex_matches_in_any_letter_case(text):
    if not text.strip():
        return
    ok, value = accepted(Flag(True), text)
    matched = re.fullmatch(Flag.regex, text.capitalize())
    assert ok == bool(matched)
    if ok:
        assert value is (matched.group() == "True")


@given(st.lists(st.from_regex(r"[a-zA-Z0-9_-]+", fullmatch=True), min_size=1, unique=True),
       st.text(min_size=1))
def test_a_choice_parses_exactly_what_its_regex_matches(options, text):
    kind = Choice(options[0], options)
    for candidate in [*options, text]:
        if candidate.strip():
            ok, value = accepted(kind, candidate)
            assert ok == bool(re.fullmatch(kind.regex, candidate))
            assert value == (candidate if ok else None)

