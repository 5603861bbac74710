"""HTTP/1.1 in and out (proxy/httpio.py): request heads, body lengths, the body budget, the bytes of an answer."""
import asyncio
import email.utils
import http.client
import http.server
import io
import time

import pytest
from hypothesis import example, given, settings, strategies as st

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


def stdlib_headers(block):
    """What http.client makes of a header block (the reference), or the Refusal status."""
    try:
        return http.client.parse_headers(io.BytesIO(block)).items()
    except http.client.HTTPException:
        return 431


def our_headers(block):
    try:
        return httpio.parse_headers(block).items()
    except Refusal as e:
        return e.status


NAMES = st.sampled_from(["Host", "Content-Length", "content-length", "X-A", "From", "Expect", "", "Bad Name",
                         "Na\x7fme", "\xe9t\xe9"])
VALUES = st.text(st.sampled_from(["a", "1", " ", "\t", ":", "\r", "\n", "\xe9", "\x00", "\xff"]), max_size=6)
LINES = st.one_of(st.builds(lambda n, v: f"{n}:{v}", NAMES, VALUES),
                  st.builds(lambda v: " " + v, VALUES),  # a folded line
                  st.text(st.sampled_from(["a", ":", " ", "\r", "\n", "\t", "\xe9"]), max_size=8))


@settings(max_examples=500, deadline=None)
@given(st.lists(LINES, max_size=8), st.sampled_from(["\r\n\r\n", "\r\n", "", "\n\n", "\r\n\r\nX: y\r\n\r\n"]))
@example(["X-A: b"] * 101, "\r\n\r\n")
@example(["X-A: b"] * 100, "\r\n\r\n")
@example(["X-A: b"] * 99, "\r\n\r\n")
@example(["X-A: " + "b" * 65540], "\r\n\r\n")
@example(["Host:   spaced \t "], "\r\n\r\n")
def test_headers_are_read_as_http_client_reads_them(lines, end):
    block = ("\r\n".join(lines) + end).encode("latin-1")
    assert our_headers(block) == stdlib_headers(block)


def test_an_engine_head_takes_the_quick_way_and_a_folded_one_the_parser():
    quick = httpio.parse_headers(ENGINE.partition("\r\n")[2].encode())
    assert quick.get_payload() is None  # made here; the email parser leaves "" as the body
    folded = httpio.parse_headers(b"X-A: b\r\n c\r\nHost: h\r\n\r\n")
    assert folded.get_payload() == "" and folded["X-A"] == "b\r\n c"


def test_the_date_header_is_http_servers_and_follows_the_clock():
    before = int(time.time())
    got = httpio.http_date()
    assert got in {email.utils.formatdate(t, usegmt=True) for t in range(before, int(time.time()) + 1)}
    assert httpio.http_date() is httpio.http_date() or int(time.time()) != before  # made once a second
    httpio._date = (before - 10, "stale")
    assert httpio.http_date() != "stale"


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
