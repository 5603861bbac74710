"""Every error the proxy raises on purpose, and the XML-RPC fault codes they map to.

Inside the proxy, code raises these specific exceptions.  Exactly two places turn them
into what the engine sees: `protocol.py` (a failed unit becomes a `plugin_errors` entry)
and `server.py` (a bad request becomes an XML-RPC fault with the code below).
"""


class ProxyError(Exception):
    """Base of the proxy's own errors; the message is meant for an administrator."""


class ConfigError(ProxyError):
    """A configuration file, value or command-line flag is wrong (exit code 2)."""


# --- requests the engine (or anyone) sent us --------------------------------------------

class RequestError(ProxyError):
    """The request itself is wrong; answered with an XML-RPC fault, never a crash."""

    fault_code = 1


class MalformedRequest(RequestError):
    """The body is not a well-formed XML-RPC call."""

    fault_code = 2


class UnknownMethod(RequestError):
    """The method is not one the proxy publishes."""

    fault_code = 3


class BadArguments(RequestError):
    """Wrong number or types of arguments for a published method."""

    fault_code = 4


INTERNAL_FAULT_CODE = 99  # a bug in the proxy: logged with a traceback, answered with this code


# --- one policy-unit call ----------------------------------------------------------------

class UnitError(ProxyError):
    """A unit call failed; the engine gets the message in `plugin_errors[unit]`."""


class UnitNotFound(UnitError):
    pass


class UnitTimeout(UnitError):
    pass


class UnitCrashed(UnitError):
    """The child process died without answering (signal, os._exit, killed by the kernel)."""


class UnitRaised(UnitError):
    """The unit's code raised an exception."""


class BadUnitOutput(UnitError):
    """The unit answered with something that is not the shape its type must return."""


class EngineUnavailable(UnitError):
    """The unit could not use the oVirt engine (unreachable, bad credentials, 5xx, timeout)."""


class ProxyBusy(UnitError):
    """No worker became free before the call's deadline."""


# Names used on the wire between a worker and the server, so an error keeps its type
# when it crosses the process boundary.
UNIT_ERROR_KINDS = {
    cls.__name__: cls
    for cls in (UnitNotFound, UnitTimeout, UnitCrashed, UnitRaised, BadUnitOutput,
                EngineUnavailable, ProxyBusy)
}


def unit_error(kind, message):
    """Rebuild a unit error from its wire form; an unknown kind still becomes a UnitError."""
    return UNIT_ERROR_KINDS.get(kind, UnitError)(message)
