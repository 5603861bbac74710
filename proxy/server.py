"""The XML-RPC server the engine talks to.

Standard-library `xmlrpc.server` for HTTP and marshalling, with three changes that the
engine needs: request bodies are parsed with defusedxml (they come from the network),
HTTP/1.1 keep-alive with TCP_NODELAY (the engine's client reuses connections), and a deep
listen backlog (the engine gives up on a connection not accepted within 100 ms).
Bad requests become XML-RPC faults here, with the codes of errors.py; each call is
logged once, with a request id.
"""

import inspect
import itertools
import logging
import os
import socketserver
import threading
import time
import xmlrpc.client
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

from defusedxml.xmlrpc import DefusedExpatParser, defused_gzip_decode

from . import metrics
from .errors import INTERNAL_FAULT_CODE, BadArguments, MalformedRequest, RequestError, UnknownMethod
from .protocol import PUBLISHED, Record

log = logging.getLogger("proxy.server")

MAX_REQUEST = 64 * 1024 * 1024  # 10,000 hosts are ~0.6 MB; anything near this is not the engine
INTROSPECTION = ("system.listMethods", "system.methodHelp", "system.methodSignature")


def parse_call(data):
    """(method name, params) from an XML-RPC request body, through defusedxml."""
    unmarshaller = xmlrpc.client.Unmarshaller()
    parser = DefusedExpatParser(unmarshaller)
    try:
        parser.feed(data)
        parser.close()
        params = unmarshaller.close()
    except Exception as e:  # expat, defusedxml and the unmarshaller each raise their own kinds
        raise MalformedRequest(f"the request is not a well-formed XML-RPC call: {type(e).__name__}: {e}") from None
    method = unmarshaller.getmethodname()
    if not method:
        raise MalformedRequest("the request is not an XML-RPC call: no <methodName>")
    return method, params


class RequestHandler(SimpleXMLRPCRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    rpc_paths = ()  # any path: the engine posts to whatever path its URL has
    timeout = 300  # an idle keep-alive connection is closed after this many seconds

    def do_POST(self):
        """Read the call, answer it, then release what the call kept alive for speed."""
        data = self._read_body()
        if data is None:
            return  # an error answer was sent
        response, record = self.server.dispatch(data, self.client_address[0])
        try:
            self._send_answer(response)
        finally:
            record.release()

    def _read_body(self):
        try:
            length = int(self.headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_REQUEST:
            self.send_error(413 if length > 0 else 411,
                            f"request body must have a Content-Length up to {MAX_REQUEST} bytes")
            return None
        data = self.rfile.read(length)
        if len(data) < length:
            self.close_connection = True  # the client went away mid-body
            return None
        return self.decode_request_content(data)

    def _send_answer(self, response):
        self.send_response(200)
        self.send_header("Content-type", "text/xml")
        # As xmlrpc.server does: large answers are gzipped for clients that accept it.
        if len(response) > self.encode_threshold and self.accept_encodings().get("gzip", 0):
            response = xmlrpc.client.gzip_encode(response)
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-length", str(len(response)))
        self.end_headers()
        self.wfile.write(response)

    def decode_request_content(self, data):
        if self.headers.get("content-encoding", "identity").lower() == "gzip":
            try:
                return defused_gzip_decode(data, limit=MAX_REQUEST)
            except ValueError:
                self.send_error(400, "gzip body is invalid or too large")
                return None
        return super().decode_request_content(data)

    def log_message(self, fmt, *args):
        log.debug("%s %s", self.address_string(), fmt % args)


class ProxyServer(socketserver.ThreadingMixIn, SimpleXMLRPCServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, host, port, protocol, backlog):
        self.request_queue_size = backlog
        super().__init__((host, port), requestHandler=RequestHandler, logRequests=False,
                         allow_none=False, bind_and_activate=True)
        self.protocol = protocol
        self.signatures = {m: inspect.signature(getattr(protocol, m)) for m in PUBLISHED}
        self.ids = itertools.count(1)
        self.id_prefix = os.urandom(2).hex()
        self.active = 0
        self.idle = threading.Condition()

    @property
    def port(self):
        return self.server_address[1]

    def dispatch(self, data, client=""):
        """(the XML-RPC answer body, the call's Record) for one request body; never raises."""
        record = Record()
        return self._answer(data, record, client), record

    def _answer(self, data, record, client):
        rid = f"{self.id_prefix}-{next(self.ids)}"
        start = time.monotonic()
        method, outcome, kind = "?", "ok", "ok"
        with self.idle:
            self.active += 1
        try:
            method, params = parse_call(data)
            answer = self.call(method, params, record)
            body = xmlrpc.client.dumps((answer,), methodresponse=True, allow_none=False)
            if record.failed or record.errors:
                kind, outcome = "unit_errors", "errors: " + "; ".join(
                    [f"{n}: {' / '.join(m)}" for n, m in record.failed.items()] + record.errors)
        except RequestError as e:
            kind, outcome = "bad_request", f"fault {e.fault_code}: {e}"
            body = xmlrpc.client.dumps(xmlrpc.client.Fault(e.fault_code, str(e)), methodresponse=True)
        except Exception as e:
            log.exception("request %s: internal error in %s", rid, method)
            kind, outcome = "internal_error", f"fault {INTERNAL_FAULT_CODE}: internal error"
            body = xmlrpc.client.dumps(xmlrpc.client.Fault(
                INTERNAL_FAULT_CODE, f"internal proxy error ({type(e).__name__}); see the proxy log, "
                                     f"request {rid}"), methodresponse=True)
        finally:
            with self.idle:
                self.active -= 1
                self.idle.notify_all()
        seconds = time.monotonic() - start
        metrics.call_done(method if method in PUBLISHED + INTROSPECTION else "other", kind, seconds, record)
        log.info("request %s %s units=%s duration=%.1fms %s", rid, method, ",".join(record.units) or "-",
                 seconds * 1000, outcome, extra={  # the JSON log format's keys (logs.py)
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

    def wait_idle(self, timeout):
        """True when no call is in progress (any more) within timeout seconds."""
        with self.idle:
            return self.idle.wait_for(lambda: self.active == 0, timeout)
