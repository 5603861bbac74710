"""Errors: fault codes are stable; unit errors cross process boundaries with type and details."""
import pytest
from hypothesis import given, strategies as st

from proxy import errors


def test_fault_codes_are_stable():
    """The engine and admins' scripts see these numbers: changing one is a protocol change."""
    assert [errors.RequestError.fault_code, errors.MalformedRequest.fault_code,
            errors.UnknownMethod.fault_code, errors.BadArguments.fault_code,
            errors.INTERNAL_FAULT_CODE] == [1, 2, 3, 4, 99]


@pytest.mark.parametrize("cls", [errors.UnitError, *errors.UnitError.__subclasses__()])
@given(message=st.text(max_size=50), details=st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3))
def test_every_unit_error_round_trips(cls, message, details):
    back = errors.UnitError.from_wire(cls(message, **details).to_wire())
    assert (type(back), str(back), back.details) == (cls, message, details)


@pytest.mark.parametrize("data, cls", [
    ({"kind": "SomethingNew", "message": "m"}, errors.UnitError),  # a newer worker's kind
    ("not a dict", errors.BadUnitOutput),
    ({"kind": "UnitTimeout", "message": "m", "details": ["not", "a", "dict"]}, errors.UnitTimeout),
])
def test_an_odd_wire_form_still_becomes_a_unit_error(data, cls):
    assert type(errors.UnitError.from_wire(data)) is cls
