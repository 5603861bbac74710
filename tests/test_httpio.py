"""HTTP/1.1 in and out (proxy/httpio.py): request heads, body lengths, the body budget, the bytes of an answer."""
import asyncio
import http.server

import pytest

from proxy import httpio
from proxy.access import Refusal


def head(text):
    return httpio.parse_head(text.encode("latin-1"), "192.0.2.1")


def refusal(function, *args):
    with pytest.raises(Refusal) as e:
        function(*args)
    return e.value.status, str(e.value)


ENGINE = "POST / HTTP/1.1\r\nContent-Type: text/xml\r\nHost: localhost:18781\r\nContent-Length: 12\r\n\r\n"


def test_a_request_head():
    r = head(ENGINE)
    assert (r.method, r.path, r.version, r.client) == ("POST", "/", "HTTP/1.1", "192.0.2.1")
    assert r.headers["Host"] == "localhost:18781" and httpio.body_length(r, 100) == 12
    assert r.keep_alive


@pytest.mark.parametrize("version, connection, keep", [
    ("HTTP/1.1", "", True), ("HTTP/1.1", "Connection: close\r\n", False),
    ("HTTP/1.0", "", False), ("HTTP/1.0", "Connection: Keep-Alive\r\n", True),
])
def test_keep_alive_as_http_server_decides(version, connection, keep):
    assert head(f"POST / {version}\r\n{connection}\r\n").keep_alive is keep


@pytest.mark.parametrize("text, status", [
    ("GARBAGE\r\n\r\n", 400), ("POST / HTTP/2.0\r\n\r\n", 505), ("POST /" + "a" * 9000 + " HTTP/1.1\r\n\r\n", 414),
    ("POST / HTTP/1.1\r\n" + "X-A: b\r\n" * 101 + "\r\n", 431),
])
def test_bad_heads_are_refused(text, status):
    assert refusal(head, text)[0] == status


@pytest.mark.parametrize("lengths, status, words", [
    ("Transfer-Encoding: chunked\r\n", 411, "send the body with a Content-Length"),
    ("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", 411, "chunked"),
    ("", 411, "Content-Length header is required"),
    ("Content-Length: +5\r\n", 400, "invalid Content-Length"),
    ("Content-Length: 5_0\r\n", 400, "invalid Content-Length"),
    ("Content-Length: 5\r\nContent-Length: 6\r\n", 400, "invalid Content-Length"),
    ("Content-Length: 101\r\n", 413, "larger than server.max_request (100 bytes)"),
])
def test_body_lengths_that_are_refused(lengths, status, words):
    got_status, message = refusal(httpio.body_length, head(f"POST / HTTP/1.1\r\n{lengths}\r\n"), 100)
    assert got_status == status and words in message


def test_a_repeated_equal_content_length_is_fine():
    assert httpio.body_length(head("POST / HTTP/1.1\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n"), 100) == 7


def test_expect():
    assert not httpio.expects_continue(head(ENGINE))
    assert httpio.expects_continue(head("POST / HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n"))
    assert refusal(httpio.expects_continue, head("POST / HTTP/1.1\r\nExpect: gold\r\n\r\n"))[0] == 417


def test_the_budget_holds_shares_until_released():
    budget = httpio.Budget(100)
    with budget.hold(60):
        assert budget.used == 60
        status, message = refusal(lambda: budget.hold(50).__enter__())
        assert status == 503 and "server.body_budget (100 bytes)" in message
        with budget.hold(40):
            assert budget.used == 100
    assert budget.used == 0


def test_the_bytes_of_an_answer():
    data = httpio.encode(httpio.Response(200, [("Content-type", "text/xml"), ("Content-length", "3")], b"abc"))
    lines = data.split(b"\r\n")
    handler = http.server.BaseHTTPRequestHandler
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert lines[1] == f"Server: {handler.server_version} {handler.sys_version}".encode()
    assert lines[2].startswith(b"Date: ") and lines[3:] == [b"Content-type: text/xml", b"Content-length: 3", b"", b"abc"]
    error = httpio.encode(httpio.error_response(503, "busy: retry later"))
    assert error.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Connection: close\r\nContent-Length: 18\r\n\r\nbusy: retry later\n" in error


def test_read_body_reads_exactly_the_length_or_fails():
    async def read(chunks, length):
        reader = asyncio.StreamReader()
        for chunk in chunks:
            reader.feed_data(chunk)
        reader.feed_eof()
        return await httpio.read_body(reader, length)

    assert asyncio.run(read([b"abc", b"defgh", b"next request"], 8)) == bytearray(b"abcdefgh")
    with pytest.raises(ConnectionResetError, match="in the middle of its body"):
        asyncio.run(read([b"abc"], 8))
