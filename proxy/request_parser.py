"""XML-RPC request bodies into (method name, arguments), with their nesting bounded.

Two ways to one result.  The reference is the standard library's `xmlrpc.client.Unmarshaller`
fed by defusedxml's expat parser: it takes every XML-RPC document, and refuses DTDs and
entities.  It calls back into Python for every element, and a 200-host call took ~1 ms of
the server's CPU that way (measured on a 2-core CI-sized machine), a tenth of a unit call.

The engine's own calls have one shape: strings, integers, arrays, structs, nil, and no DTD,
comment, CDATA or processing instruction.  Such a body is parsed by the standard library's C
ElementTree parser and its tree read in a few lines (~3x faster).  Without `<!` in the body
there is no DTD, so no entity can be declared: nothing defusedxml guards against can occur.
Anything else (another type, a shape the reader does not expect, an error of any kind)
goes the reference way, so the two can never disagree: a property test in
tests/test_request_parser.py checks that the fast reading equals the reference's on every
body it accepts.
"""

import xml.etree.ElementTree as ElementTree
import xmlrpc.client

from defusedxml.xmlrpc import DefusedExpatParser

from .errors import BadArguments, MalformedRequest

MAX_NESTING = 32  # arrays and structs inside each other; the engine's calls nest two deep
# Bodies above this take the reference way: a tree costs ~10x its body in memory, and the
# engine's largest calls (1,000 hosts) are ~70 KB.
FAST_MAX_BYTES = 1 << 20


class _Unexpected(Exception):
    """The fast reading met something it leaves to the reference parser."""


def parse_call(data):
    """(method name, params) from an XML-RPC request body; MalformedRequest or BadArguments."""
    fast = read_fast(data)
    method, params = fast if fast is not None else _parse_reference(data)
    if any(nesting(p) > MAX_NESTING for p in params):
        raise BadArguments(f"arguments nest arrays and structs more than {MAX_NESTING} deep; "
                           "the engine's calls nest at most 2 deep")
    if not method:
        raise MalformedRequest("the request is not an XML-RPC call: no <methodName>")
    return method, params


def _parse_reference(data):
    unmarshaller = xmlrpc.client.Unmarshaller()
    parser = DefusedExpatParser(unmarshaller)
    try:
        parser.feed(data)
        parser.close()
        params = unmarshaller.close()
    except Exception as e:  # expat, defusedxml and the unmarshaller each raise their own kinds
        raise MalformedRequest(f"the request is not a well-formed XML-RPC call: {type(e).__name__}: {e}") from None
    return unmarshaller.getmethodname(), params


def read_fast(data):
    """(method name, params) of a body in the engine's own shape, or None: take the reference way."""
    if len(data) > FAST_MAX_BYTES or b"<!" in data or data.count(b"<?") > 1:
        return None
    try:
        root = ElementTree.fromstring(data)
        children = list(root)
        if _local(root) != "methodCall" or [_local(c) for c in children] != ["methodName", "params"]:
            return None
        name, params = children
        if len(name) or not name.text:
            return None
        return name.text, tuple(_param(p) for p in params)
    except Exception:  # _Unexpected, a parse error, int() of a non-number, too deep...
        return None


def _local(element):
    """The tag without its namespace, as the Unmarshaller reads `ex:nil` as `nil`."""
    return element.tag.rpartition("}")[2]


def _param(param):
    if _local(param) != "param" or len(param) != 1:
        raise _Unexpected
    return _value(param[0], 0)


def _value(element, depth):
    if _local(element) != "value" or len(element) > 1 or depth > MAX_NESTING:
        raise _Unexpected
    if not len(element):
        return element.text or ""  # a value without a type is a string
    typed = element[0]
    kind = _local(typed)
    if kind in ("array", "struct"):
        return _array(typed, depth) if kind == "array" else _struct(typed, depth)
    if len(typed):
        raise _Unexpected
    text = typed.text or ""
    if kind == "string":
        return text
    if kind in ("int", "i4", "i8"):
        return int(text)
    if kind == "nil":
        return None
    raise _Unexpected  # boolean, double, dateTime, base64...: the reference decides


def _array(array, depth):
    if len(array) != 1 or _local(array[0]) != "data":
        raise _Unexpected
    return [_value(v, depth + 1) for v in array[0]]


def _struct(struct, depth):
    out = {}
    for member in struct:
        if _local(member) != "member" or len(member) != 2:
            raise _Unexpected
        key, value = member
        if _local(key) != "name" or len(key):
            raise _Unexpected
        out[key.text or ""] = _value(value, depth + 1)
    return out


def nesting(value, limit=MAX_NESTING):
    """How deep arrays and structs nest in `value` (0 for a scalar), without recursion;
    the walk stops as soon as it passes `limit`.

    The reference parse keeps its own stack (xmlrpc.client.Unmarshaller is iterative), so a
    deep request cannot overflow it; what walks the arguments afterwards (repr, the
    journal's JSON) could, so the proxy refuses such a request right after parsing.
    Checking here rather than in a per-element parser hook keeps a hook's Python call off
    every element of every request (~25 % of a 200-host call's parse, measured).
    """
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, tuple)):
            children = item
        elif isinstance(item, dict):
            children = item.values()
        else:
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return deepest
        stack.extend((child, depth) for child in children if isinstance(child, (list, tuple, dict)))
    return deepest
