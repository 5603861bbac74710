"""The XML-RPC server the engine talks to: a request body becomes a call, the call an answer.

Connections, TLS and the HTTP bounds are proxy/listener.py and proxy/httpio.py; who may call
is proxy/access.py; request bodies are parsed, their nesting bounded, by
proxy/request_parser.py.  Here bad requests become XML-RPC faults with the codes of
errors.py, and each call is logged once, with a request id and the client's address.
Answers are marshalled and gzipped exactly as `xmlrpc.server` does.
"""

import inspect
import itertools
import logging
import os
import time
import xmlrpc.client
from xmlrpc.server import SimpleXMLRPCRequestHandler

from defusedxml.xmlrpc import defused_gzip_decode

from . import httpio, journal, metrics, shadow
from .errors import INTERNAL_FAULT_CODE, BadArguments, RequestError, UnknownMethod
from .listener import Listener
from .protocol import PUBLISHED, Record
from .request_parser import parse_call

log = logging.getLogger("proxy.server")

INTROSPECTION = ("system.listMethods", "system.methodHelp", "system.methodSignature")


def accepts_gzip(headers):
    """As xmlrpc.server reads Accept-Encoding: gzip with a q above 0."""
    for coding in headers.get("Accept-Encoding", "").split(","):
        match = SimpleXMLRPCRequestHandler.aepattern.match(coding)
        if match and match.group(1) == "gzip":
            try:
                return float(match.group(3) or 1.0) > 0
            except ValueError:  # a q of "1.0.0"
                return False
    return False


class ProxyServer:
    """The engine's XML-RPC methods on a Listener; settings: the [server] settings."""

    def __init__(self, settings, protocol, threads=16, journal=None):
        self.protocol = protocol
        self.journal = journal  # a journal.Journal, or None: no decision journal
        self.shadows = shadow.ShadowRunner(protocol, journal) if journal is not None else None
        self.max_request = settings.max_request
        self.signatures = {m: inspect.signature(getattr(protocol, m)) for m in PUBLISHED}
        self.ids = itertools.count(1)
        self.id_prefix = os.urandom(2).hex()
        self.listener = Listener(settings, self.handle, threads)

    @property
    def port(self):
        return self.listener.address[1]

    @property
    def url(self):
        host = self.listener.address[0]
        return f"{'https' if self.listener.tls else 'http'}://{f'[{host}]' if ':' in host else host}:{self.port}/"

    def serve_forever(self, poll_interval=None):
        self.listener.serve_forever()

    def shutdown(self):
        """Stop accepting; calls in progress go on (wait_idle waits for them)."""
        self.listener.shutdown()

    def server_close(self):
        self.listener.server_close()

    def wait_idle(self, timeout):
        """True when no call is in progress (any more) within timeout seconds."""
        return self.listener.wait_idle(timeout)

    def handle(self, request):
        """The httpio.Response to one request (in a handler thread); never raises."""
        data = self._decode(request)
        if isinstance(data, httpio.Response):
            return data
        body, record = self.dispatch(data, request.client)
        headers = [("Content-type", "text/xml")]
        if len(body) > SimpleXMLRPCRequestHandler.encode_threshold and accepts_gzip(request.headers):
            body = xmlrpc.client.gzip_encode(body)
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-length", str(len(body))))
        return httpio.Response(200, headers, body, after_send=record.release)

    def _decode(self, request):
        body = request.take_body()
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding == "identity":
            return body
        if encoding == "gzip":
            try:
                return defused_gzip_decode(body, limit=self.max_request)
            except ValueError:
                return httpio.error_response(400, "gzip body is invalid or larger than server.max_request")
        return httpio.error_response(501, f"Content-Encoding {encoding!r} is not supported; send the body "
                                        "as it is (identity) or gzip")

    def dispatch(self, data, client="-"):
        """(the XML-RPC answer body, the call's Record) for one request body; never raises."""
        record = Record()
        return self._answer(data, record, client), record

    def _answer(self, data, record, client):
        rid = f"{self.id_prefix}-{next(self.ids)}"
        record.request_id = rid
        start, started = time.monotonic(), time.time()
        method, outcome, kind = "?", "ok", "ok"
        try:
            method, params = parse_call(data)
            answer = record.answer = self.call(method, params, record)
            body = xmlrpc.client.dumps((answer,), methodresponse=True, allow_none=False)
            if record.failed or record.errors:
                kind, outcome = "unit_errors", "errors: " + "; ".join(
                    [f"{n}: {' / '.join(m)}" for n, m in record.failed.items()] + record.errors)
        except RequestError as e:
            kind, outcome = "bad_request", f"fault {e.fault_code}: {e}"
            record.answer = {"fault": e.fault_code, "message": str(e)}
            body = xmlrpc.client.dumps(xmlrpc.client.Fault(e.fault_code, str(e)), methodresponse=True)
        except Exception as e:
            log.exception("request %s: internal error in %s", rid, method)
            kind, outcome = "internal_error", f"fault {INTERNAL_FAULT_CODE}: internal error"
            body = xmlrpc.client.dumps(xmlrpc.client.Fault(
                INTERNAL_FAULT_CODE, f"internal proxy error ({type(e).__name__}); see the proxy log, "
                                     f"request {rid}"), methodresponse=True)
        seconds = time.monotonic() - start
        if self.journal is not None and method in PUBLISHED:
            self.journal.record(journal.make_entry(rid, started, client, method, record, record.answer,
                                                   seconds, self.journal.run))
            if record.shadows:
                self.shadows.submit(method, record)
        metrics.call_done(method if method in PUBLISHED + INTROSPECTION else "other", kind, seconds, record)
        log.info("request %s %s units=%s client=%s duration=%.1fms %s", rid, method,
                 ",".join(record.units) or "-", client, seconds * 1000, outcome, extra={  # JSON log keys (logs.py)
                     "request_id": rid, "client": client, "method": method, "units": record.units,
                     "duration_ms": round(seconds * 1000, 1), "outcome": kind, "detail": outcome})
        return body.encode("utf-8", "xmlcharrefreplace")

    def call(self, method, params, record):
        if method in INTROSPECTION:
            return self.introspect(method, params)
        if method not in PUBLISHED:
            raise UnknownMethod(f"no method {method!r}; the proxy serves " + ", ".join(PUBLISHED + INTROSPECTION))
        function = getattr(self.protocol, method)
        try:
            self.signatures[method].bind(record, *params)
        except TypeError:
            wanted = list(self.signatures[method].parameters)[1:]
            raise BadArguments(f"{method} takes {len(wanted)} argument(s) ({', '.join(wanted) or 'none'}), "
                               f"got {len(params)}") from None
        return function(record, *params)

    def introspect(self, method, params):
        if method == "system.listMethods":
            return list(PUBLISHED + INTROSPECTION)
        if len(params) != 1 or not isinstance(params[0], str):
            raise BadArguments(f"{method} takes one argument: a method name")
        name = params[0]
        if name not in PUBLISHED + INTROSPECTION:
            raise UnknownMethod(f"no method {name!r}")
        if method == "system.methodSignature":
            return "signatures not supported"
        if name in PUBLISHED:
            return inspect.getdoc(getattr(self.protocol, name)) or ""
        return {"system.listMethods": "List the methods the proxy serves.",
                "system.methodHelp": "Describe a method.",
                "system.methodSignature": "Not supported."}[name]
