"""Messages between processes: every declared shape survives the wire; anything else is refused."""
import dataclasses
import json

import pytest
from hypothesis import given, strategies as st

from proxy import messages, wire
from proxy.errors import UnitRaised, UnitTimeout

json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)

EXAMPLES = [
    messages.Boot("/plugins", 4, 1024, 30.0, "INFO", "", {"url": "", "user": "u", "password": "p",
                                                           "ca_file": "", "insecure": False}),
    messages.Catalog({"units": [], "rejections": []}),
    messages.WorkerReady(12), messages.Exited(12, "exited with code 3", 3), messages.Spawn(2), messages.Kill(12),
    messages.Request("units.py:keep_all", "do_filter", [["h1"], "vm", {}], 1.5, None),
    messages.Answer(result=["h1"], token="T"), messages.Answer.failed(UnitTimeout("late"), "T"),
    messages.ImportReport(error="failed to import: boom"),
]


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_survives_the_wire(msg):
    assert messages.from_wire(wire.decode(wire.encode(messages.to_wire(msg)))) == msg


@given(result=json_values, token=st.none() | st.text(max_size=10))
def test_any_json_result_survives(result, token):
    answer = messages.Answer(result=result, token=token)
    back = messages.from_wire(json.loads(json.dumps(messages.to_wire(answer))), messages.Answer)
    assert back == answer and back.outcome() == result


def test_an_error_answer_keeps_its_type_message_and_details():
    answer = messages.Answer.failed(UnitRaised("KeyError: 'x'", exception="KeyError", where="unit.py:3"))
    error = messages.from_wire(wire.decode(wire.encode(messages.to_wire(answer)))).outcome()
    assert type(error) is UnitRaised and str(error) == "KeyError: 'x'"
    assert error.details == {"exception": "KeyError", "where": "unit.py:3"}


@pytest.mark.parametrize("data, words", [
    ([1, 2], "must be an object"),
    ({"type": "Nope"}, "unexpected message type 'Nope'"),
    ({"type": "Kill"}, "Kill needs the fields ['pid']"),
    ({"type": "Kill", "pid": 1, "extra": 2}, "got ['extra', 'pid']"),
])
def test_anything_else_is_a_message_error_that_says_why(data, words):
    with pytest.raises(messages.MessageError, match=words.replace("[", r"\[").replace("]", r"\]")):
        messages.from_wire(data)


def test_expected_types_restrict_what_is_accepted():
    with pytest.raises(messages.MessageError, match="expected Request"):
        messages.from_wire(messages.to_wire(messages.Kill(1)), messages.Request)


def test_messages_are_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        messages.Kill(1).pid = 2
