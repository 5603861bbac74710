"""HTTP/1.1 on one connection: reading a request within bounds, and the bytes of an answer.

Only what the engine's client sends is read: a request line, headers, and a body with a
Content-Length.  Every bound is checked before the memory is spent: the header block is at
most HEADER_LIMIT bytes, the body at most server.max_request, all bodies being read or run
together at most server.body_budget (Budget).  A chunked body is refused with 411 and the
connection closed, so the chunks can never be read as a next request.
"""

import contextlib
import dataclasses
import email.utils
import http.client
import http.server
import io
import re
import time

from .access import Refusal

HEADER_LIMIT = 64 * 1024  # the engine's headers are ~200 bytes
REQUEST_LINE_LIMIT = 8 * 1024
READ_CHUNK = 256 * 1024
SERVER_HEADER = f"{http.server.BaseHTTPRequestHandler.server_version} {http.server.BaseHTTPRequestHandler.sys_version}"
_LENGTH = re.compile(r"[0-9]{1,19}")  # int() would also take "+5", " 5" and "5_0"
# A header on one line, as the email parser behind http.client.parse_headers reads it: a name
# of visible characters but ":", then the value without its leading blanks.
_ONE_LINE_HEADER = re.compile(r"([\x21-\x39\x3b-\x7e]+):[ \t]*([^\r\n]*)")
_MAX_HEADERS = 100  # http.client refuses more lines than this, the blank one counted,
_MAX_LINE = 65536  # and a line longer than this
_date = (0, "")  # (the second, the Date header's value for it)


@dataclasses.dataclass
class Request:
    method: str
    path: str
    version: str
    headers: http.client.HTTPMessage
    client: str  # the client's address, for logs
    body: bytearray = None

    @property
    def keep_alive(self):
        """As http.server decides: HTTP/1.1 unless `Connection: close`; HTTP/1.0 only on request."""
        tokens = {t.strip().lower() for t in self.headers.get("Connection", "").split(",")}
        if self.version == "HTTP/1.1":
            return "close" not in tokens
        return "keep-alive" in tokens

    def take_body(self):
        """The body, no longer referenced here, so it can be freed as soon as the caller is done."""
        body, self.body = self.body, None
        return body


@dataclasses.dataclass
class Response:
    status: int
    headers: list  # [(name, value)], in order
    body: bytes
    close: bool = False  # close the connection once this answer is sent
    after_send: object = None  # called (in a handler thread) once the answer is on the wire


def error_response(status, message):
    """A plain-text error that says what is wrong; the connection is closed after it."""
    body = (message.rstrip() + "\n").encode("utf-8", "replace")
    return Response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Connection", "close")],
                    body, close=True)


def encode(response):
    """The bytes of an answer: status line, Server and Date as http.server sends them, headers, body."""
    reason = http.HTTPStatus(response.status).phrase
    lines = [f"HTTP/1.1 {response.status} {reason}", f"Server: {SERVER_HEADER}", f"Date: {http_date()}"]
    lines += [f"{name}: {value}" for name, value in response.headers]
    if not any(name.lower() == "content-length" for name, _ in response.headers):
        lines.append(f"Content-Length: {len(response.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body


def http_date():
    """The Date header's value, made once a second: formatdate takes ~4 us, every answer
    needs it, and it changes once a second."""
    global _date
    second = int(time.time())
    if _date[0] != second:
        _date = (second, email.utils.formatdate(second, usegmt=True))  # one assignment: safe from any thread
    return _date[1]


def parse_head(head, client):
    """A Request (without body) from the bytes of a request line and headers, or Refusal."""
    line, _, rest = head.partition(b"\r\n")
    if len(line) > REQUEST_LINE_LIMIT:
        raise Refusal(414, f"request line longer than {REQUEST_LINE_LIMIT} bytes")
    words = line.decode("latin-1").split()
    if len(words) != 3 or not words[2].startswith("HTTP/"):
        raise Refusal(400, f"bad request line {line[:100]!r}; expected e.g. 'POST / HTTP/1.1'")
    method, path, version = words
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise Refusal(505, f"HTTP version {version!r} is not supported; use HTTP/1.1")
    return Request(method, path, version, parse_headers(rest), client)


def parse_headers(block):
    """The headers of a head's block (after the request line), as http.client.parse_headers
    gives them.  Headers each on one line (what HTTP clients send) are read here, ~10 times
    faster than the email parser http.client uses (~25 us a request, in the thread every
    connection shares); a block with anything else (a folded line, a bare CR or LF, too
    many headers, a block that could hold a line too long) is left to http.client, so the
    result is the same for any block."""
    lines = block.decode("iso-8859-1").split("\r\n") if len(block) <= _MAX_LINE else []
    headers = http.client.HTTPMessage()
    for n, line in enumerate(lines):
        if n >= _MAX_HEADERS:
            break
        if not line:
            return headers
        m = _ONE_LINE_HEADER.fullmatch(line)
        if m is None:
            break
        headers[m[1]] = m[2]  # appends, as the parser does for a repeated name
    try:
        return http.client.parse_headers(io.BytesIO(block))
    except http.client.HTTPException as e:
        raise Refusal(431, f"request headers refused: {e}") from None


def body_length(request, max_request):
    """The body's length from Content-Length; 411 without one (chunked included), 413 above max_request."""
    if "Transfer-Encoding" in request.headers:
        raise Refusal(411, f"Transfer-Encoding {request.headers['Transfer-Encoding']!r} is not supported: "
                           "send the body with a Content-Length")
    values = {v.strip() for v in request.headers.get_all("Content-Length", [])}
    if not values:
        raise Refusal(411, "a Content-Length header is required")
    if len(values) > 1 or not _LENGTH.fullmatch(next(iter(values))):
        raise Refusal(400, f"invalid Content-Length {', '.join(sorted(values))!r}")
    length = int(values.pop())
    if length > max_request:
        raise Refusal(413, f"request body of {length} bytes is larger than server.max_request "
                           f"({max_request} bytes)")
    return length


def expects_continue(request):
    """True for `Expect: 100-continue` (curl sends it); any other expectation is refused."""
    expect = request.headers.get("Expect")
    if expect is None:
        return False
    if expect.strip().lower() != "100-continue":
        raise Refusal(417, f"Expect {expect!r} is not supported")
    return True


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Budget:
    """Bytes all request bodies in flight may take together (server.body_budget).

    Used from the event loop's thread only, so it needs no lock.  A request takes its share
    before its body is read and gives it back once its call has been answered."""

    def __init__(self, total):
        self.total = total
        self.used = 0

    @contextlib.contextmanager
    def hold(self, n):
        if self.used + n > self.total:
            raise Refusal(503, f"busy: request bodies in flight would exceed server.body_budget "
                               f"({self.total} bytes); retry later")
        self.used += n
        try:
            yield
        finally:
            self.used -= n


async def read_body(reader, length):
    """Exactly `length` bytes, into one buffer allocated once (no second copy of a large body)."""
    body = bytearray(length)
    view, done = memoryview(body), 0
    while done < length:
        chunk = await reader.read(min(READ_CHUNK, length - done))
        if not chunk:
            raise ConnectionResetError("the client closed the connection in the middle of its body")
        view[done:done + len(chunk)] = chunk
        done += len(chunk)
    view.release()
    return body
