"""Request bodies into calls: the fast reading of the engine's shapes agrees with the
reference parser (defusedxml + xmlrpc.client) on every body it accepts, hostile bodies only
ever get MalformedRequest, and nesting is bounded."""
import uuid
import xmlrpc.client

import pytest
from hypothesis import given, settings, strategies as st

from proxy import request_parser
from proxy.errors import BadArguments, MalformedRequest
from proxy.request_parser import _parse_reference, parse_call, read_fast
from tests.support import ENGINE_BALANCE_CALL


def reference(body):
    """What the reference parser makes of a body: (method, params) or the error's text."""
    try:
        return _parse_reference(body)
    except MalformedRequest as e:
        return str(e)


def test_the_engines_calls_take_the_fast_way_and_read_as_the_reference_reads_them():
    hosts = [str(uuid.UUID(int=i)) for i in range(200)]
    bodies = [ENGINE_BALANCE_CALL,
              xmlrpc.client.dumps((["max_vms"], hosts, hosts[0], {"k": "v"}), "runFilters").encode(),
              xmlrpc.client.dumps(([["ksm_same_os_score", 2]], hosts, hosts[1], {}), "runCostFunctions").encode(),
              xmlrpc.client.dumps((), "discover").encode(),
              b"<methodCall><methodName>m</methodName><params><param><value><struct>"  # a name given twice
              b"<member><name>k</name><value>1</value></member><member><name>k</name><value><i4>2</i4></value>"
              b"</member></struct></value></param></params></methodCall>"]
    for body in bodies:
        fast = read_fast(body)
        assert fast is not None and fast == reference(body)
    assert read_fast(ENGINE_BALANCE_CALL)[1][2] is None  # <ex:nil/>, as the Unmarshaller reads it


@pytest.mark.parametrize("body", [
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aa">]><methodCall><methodName>m</methodName>'
    b"<params><param><value>&a;</value></param></params></methodCall>",
    b"<methodCall><methodName>m</methodName><params><param><value><![CDATA[x]]></value></param></params></methodCall>",
    b"<methodCall><methodName>m</methodName><params><param><value><boolean>1</boolean></value></param></params></methodCall>",
    b"<methodCall><methodName>m</methodName><params><param><value><double>1.5</double></value></param></params></methodCall>",
    b"<methodCall><methodName>m</methodName><params><value>no param</value></params></methodCall>",
    b"<methodCall><methodName>m</methodName><params><param><value><array><value>x</value></array></value></param>"
    b"</params></methodCall>",
    b"<methodCall><methodName>m</methodName><params><param><value><struct><member><value>v</value><name>k</name>"
    b"</member></struct></value></param></params></methodCall>",
    b"<methodCall><methodName>m</methodName><params><param><value><int></int></value></param></params></methodCall>",
    b"<methodCall><methodName>m</methodName><params><param><value><int>x</int></value></param></params></methodCall>",
    b"<methodCall><methodName>m</methodName><params><param><value><string>a<b/>c</string></value></param>"
    b"</params></methodCall>",
    b"<methodCall><methodName>m</methodName><params><param><value><y:nil/></value></param></params></methodCall>",
    b'<?xml version="1.0"?><methodCall><methodName>m</methodName><params><param><value><string>a<?pi x?>b'
    b"</string></value></param></params></methodCall>",
    b"<not xml",
])
def test_any_other_shape_is_left_to_the_reference_parser(body):
    assert read_fast(body) is None


def test_a_body_above_the_fast_limit_is_left_to_the_reference_parser(monkeypatch):
    monkeypatch.setattr(request_parser, "FAST_MAX_BYTES", len(ENGINE_BALANCE_CALL) - 1)
    assert read_fast(ENGINE_BALANCE_CALL) is None
    assert parse_call(ENGINE_BALANCE_CALL)[0] == "runLoadBalancing"


_scalars = (st.text() | st.integers(min_value=-2 ** 31, max_value=2 ** 31 - 1) | st.none() | st.booleans()
            | st.floats(allow_nan=False, allow_infinity=False))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=20), st.lists(_values, max_size=4))
def test_the_fast_reading_equals_the_reference_on_every_call_it_accepts(method, params):
    body = xmlrpc.client.dumps(tuple(params), method, allow_none=True).encode()
    fast = read_fast(body)
    if fast is not None:
        assert fast == reference(body)


@settings(max_examples=300, deadline=None)
@given(st.lists(_values, min_size=1, max_size=3), st.data())
def test_a_damaged_body_is_read_as_the_reference_reads_it_or_left_to_it(params, data):
    """Bytes cut out, replaced or inserted anywhere in a valid call."""
    body = bytearray(xmlrpc.client.dumps(tuple(params), "runFilters", allow_none=True).encode())
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(body)))
        cut = data.draw(st.integers(0, 12))
        body[at:at + cut] = data.draw(st.sampled_from([b"", b"<", b">", b"/", b"x", b"<value>", b"</value>",
                                                       b"<i4>", b"<nil/>", b"<data>", b"&lt;", b"\xff"]))
    fast = read_fast(bytes(body))
    if fast is not None:
        assert fast == reference(bytes(body))


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_parse_call_only_ever_raises_malformed_request(body):
    try:
        parse_call(body)
    except MalformedRequest:
        pass


def _nested_call(depth):
    nested = "<value><array><data>" * depth + "<value>x</value>" + "</data></array></value>" * depth
    return (f"<?xml version='1.0'?><methodCall><methodName>runFilters</methodName><params>"
            f"<param>{nested}</param></params></methodCall>").encode()


def test_parse_call_takes_32_levels_and_refuses_33():
    assert parse_call(_nested_call(32))[0] == "runFilters"
    with pytest.raises(BadArguments, match="more than 32 deep"):
        parse_call(_nested_call(33))
    with pytest.raises(BadArguments, match="more than 32 deep"):  # deep enough to overflow a recursive reader
        parse_call(_nested_call(5000))


def test_a_call_without_a_method_name_is_malformed():
    with pytest.raises(MalformedRequest, match="no <methodName>"):
        parse_call(b"<methodCall><methodName></methodName><params/></methodCall>")


def _depth(value):
    if isinstance(value, (list, tuple)):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


_nests = st.recursive(st.integers() | st.text(max_size=3),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3),
                      max_leaves=30)


@settings(max_examples=200, deadline=None)
@given(_nests)
def test_nesting_is_the_depth_of_arrays_and_structs(value):
    assert request_parser.nesting(value, limit=1000) == _depth(value)
    assert (request_parser.nesting(value, limit=2) > 2) == (_depth(value) > 2)
