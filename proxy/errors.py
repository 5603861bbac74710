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
    """A unit call failed; the engine gets the message in `plugin_errors[unit]`.

    `details` carries what an administrator or a log may want beyond the message (the
    exception type a unit raised, where, an exit status); it survives the process
    boundary through to_wire/from_wire, as the type does.
    """

    def __init__(self, message="", **details):
        super().__init__(message)
        self.details = details

    @property
    def message(self):
        return str(self)

    def to_wire(self):
        """A JSON-ready form that from_wire turns back into the same type, message and details."""
        return {"kind": type(self).__name__, "message": str(self), "details": self.details}

    @staticmethod
    def from_wire(data):
        """The error a to_wire form describes; an unknown kind still becomes a UnitError."""
        if not isinstance(data, dict):
            return BadUnitOutput(f"sent a malformed error report: {str(data)[:200]!r}")
        cls = _UNIT_ERROR_KINDS.get(data.get("kind"), UnitError)
        details = data.get("details")
        return cls(str(data.get("message", "")), **(details if isinstance(details, dict) else {}))


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


_UNIT_ERROR_KINDS = {cls.__name__: cls for cls in (UnitError, *UnitError.__subclasses__())}
