"""Who may call: the allow-list, loopback names, and the requests only a browser sends."""
import http.client
import io
import logging

import pytest

from proxy import access
from proxy.access import Refusal


def headers(text):
    return http.client.parse_headers(io.BytesIO(text.encode("latin-1") + b"\r\n"))


# What the engine's Java client (HttpURLConnection under Apache XML-RPC) and Python's
# xmlrpc.client send (docs/ENGINE_PROTOCOL.md §1.1).
ENGINE_JAVA = ("Content-Type: text/xml\r\nUser-Agent: Apache XML RPC 3.1.3 (Sun HTTP Transport)\r\n"
               "Host: localhost:18781\r\nAccept: text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2\r\n"
               "Connection: keep-alive\r\nContent-Length: 300\r\n")
PYTHON = ("Host: 127.0.0.1:18781\r\nAccept-Encoding: gzip\r\nContent-Type: text/xml\r\n"
          "User-Agent: Python-xmlrpc/3.11\r\nContent-Length: 300\r\n")


@pytest.mark.parametrize("entry", ["192.0.2.10", "10.1.0.0/16", "::1", "fd00::/8", "127.0.0.0/8"])
def test_allow_entries_that_are_addresses_or_networks(entry):
    assert access.allow_problem(entry) is None


@pytest.mark.parametrize("entry, words", [
    ("10.1.2.3/16", "write the network (10.1.0.0/16)"),
    ("engine.example.com", "not an IP address or network"),
    ("10.0.0.0/33", "not an IP address or network"),
])
def test_bad_allow_entries_say_what_to_write(entry, words):
    assert words in access.allow_problem(entry)


def test_the_allow_list():
    assert access.AllowList(()).allows("203.0.113.9")  # empty: whoever can reach the port
    allow = access.AllowList(["192.0.2.10", "10.1.0.0/16", "fd00::/8"])
    assert allow.allows("192.0.2.10") and allow.allows("10.1.200.3") and allow.allows("fd00::5")
    assert allow.allows("::ffff:10.1.0.7")  # an IPv4 client on a dual-stack socket
    assert not allow.allows("192.0.2.11") and not allow.allows("127.0.0.1") and not allow.allows("::1")


@pytest.mark.parametrize("host, loopback", [
    ("localhost", True), ("LOCALHOST.", True), ("engine.localhost", True), ("127.0.0.1", True),
    ("127.8.0.1", True), ("::1", True), ("evil.example", False), ("0.0.0.0", False), ("10.0.0.1", False),
    ("localhost.evil.example", False),
])
def test_loopback_names_and_addresses(host, loopback):
    assert access.is_loopback(host) is loopback


@pytest.mark.parametrize("sent", [ENGINE_JAVA, PYTHON, PYTHON.replace("text/xml", "text/xml; charset=utf-8"),
                                  ENGINE_JAVA.replace("localhost:18781", "[::1]:18781")])
def test_what_the_engine_and_python_send_passes(sent):
    access.check_request("POST", headers(sent), loopback_bound=True)


@pytest.mark.parametrize("change, status, words", [
    (lambda h: h + "Origin: http://evil.example\r\n", 403, "Origin header comes from a web browser"),
    (lambda h: h + "Sec-Fetch-Site: cross-site\r\n", 403, "Sec-Fetch-Site"),
    (lambda h: h.replace("localhost:18781", "evil.example:18781"), 403, "not a loopback name"),
    (lambda h: h.replace("text/xml", "text/plain"), 415, "Content-Type 'text/plain'"),
    (lambda h: h.replace("Content-Type: text/xml\r\n", ""), 415, "Content-Type None"),
    (lambda h: h.replace("text/xml", "application/x-www-form-urlencoded"), 415, "sent as text/xml"),
])
def test_what_only_a_browser_sends_is_refused(change, status, words):
    with pytest.raises(Refusal) as e:
        access.check_request("POST", headers(change(ENGINE_JAVA)), loopback_bound=True)
    assert e.value.status == status and words in str(e.value)


def test_a_foreign_host_is_fine_when_not_bound_to_loopback_and_only_post_is_served():
    access.check_request("POST", headers(ENGINE_JAVA.replace("localhost", "proxy.example")), loopback_bound=False)
    with pytest.raises(Refusal) as e:
        access.check_request("GET", headers(ENGINE_JAVA), loopback_bound=True)
    assert e.value.status == 501


def test_the_warning_for_a_reachable_proxy():
    assert access.exposure_warning(True, False, False) is None
    assert access.exposure_warning(False, True, True) is None
    both = access.exposure_warning(False, False, False)
    assert "without TLS (server.tls_cert, server.tls_key) or an allow-list (server.allow)" in both
    assert "anyone who can reach the port" in both
    assert "clear text" in access.exposure_warning(False, False, True)


def test_refusals_are_logged_once_per_interval_per_client(caplog):
    throttled = access.Throttled(logging.getLogger("proxy.test"), interval=3600)
    with caplog.at_level(logging.WARNING, logger="proxy.test"):
        for _ in range(5):
            throttled.warning("allow", "192.0.2.1", "refused 192.0.2.1")
        throttled.warning("allow", "192.0.2.2", "refused 192.0.2.2")
        throttled.interval = 0
        throttled.warning("allow", "192.0.2.1", "refused 192.0.2.1")
    assert [r.getMessage() for r in caplog.records] == [
        "refused 192.0.2.1", "refused 192.0.2.2", "refused 192.0.2.1 (4 more like it not logged)"]


def test_the_host_check_remembers_at_most_256_answers_and_stays_right_beyond():
    access.is_loopback.cache_clear()
    names = [f"host-{n}.example" for n in range(300)] + ["localhost", "127.0.0.2", "::1"]
    assert [access.is_loopback(h) for h in names] == [False] * 300 + [True, True, True]
    assert access.is_loopback.cache_info().currsize == 256
    assert access.is_loopback("host-0.example") is False and access.is_loopback("LOCALHOST.") is True
