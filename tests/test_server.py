"""The XML-RPC server: hostile input, faults, introspection, keep-alive, bursts of connections,
and the bounds of the network edge (docs/RELIABILITY.md): connections, deadlines, bodies,
TLS, who may call."""
import gzip
import http.client
import logging
import socket
import ssl
import threading
import time
import xmlrpc.client

import pytest

from proxy import config, executor, protocol, server
from tests.reliability import scenarios
from tests.support import ENGINE_BALANCE_CALL, PLUGINS, self_signed_cert, wait_until


@pytest.fixture(scope="module")
def engine_protocol():
    cfg = config.load(None, {"plugins.folder": str(PLUGINS / "basic"), "plugins.timeout": "2"})
    ex = executor.Executor(cfg, password="")
    ex.start()
    yield protocol.EngineProtocol(ex, 2.0)
    ex.stop()


def start_server(engine_protocol, **settings):
    """A ProxyServer on a free loopback port with these [server] settings, serving in a thread."""
    cfg = config.load().replace({"server.port": 0, **{f"server.{k}": v for k, v in settings.items()}})
    srv = server.ProxyServer(cfg.server, engine_protocol)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture
def serve(engine_protocol):
    """serve(**settings) -> a started ProxyServer, stopped after the test."""
    started = []
    yield lambda **settings: started.append(start_server(engine_protocol, **settings)) or started[-1]
    for srv in started:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def proxy_url(engine_protocol):
    srv = start_server(engine_protocol)
    yield srv.url
    srv.shutdown()
    srv.server_close()


def post(url, body, headers=None):
    host, port = url.split("//")[1].strip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", "/", body, {"Content-Type": "text/xml", **(headers or {})})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def test_engine_shaped_request_with_ex_nil(proxy_url):
    status, body = post(proxy_url, ENGINE_BALANCE_CALL)
    assert status == 200
    (answer,), _ = xmlrpc.client.loads(body)
    assert answer == {"result_code": 0, "result": ["", []], "plugin_errors": {}, "errors": []}
    assert b"<nil" not in body and b"<double>" not in body


@pytest.mark.parametrize("body, words", [
    (b"<not xml", "not a well-formed XML-RPC call"),
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
     b"<methodCall><methodName>discover</methodName><params><param><value>&b;</value></param></params></methodCall>",
     "EntitiesForbidden"),
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
     b"<methodCall><methodName>discover</methodName><params><param><value>&e;</value></param></params></methodCall>",
     "Forbidden"),
    (b"<methodResponse><params/></methodResponse>", "no <methodName>"),
])
def test_hostile_or_malformed_bodies_get_a_fault_and_the_server_keeps_serving(proxy_url, body, words):
    status, data = post(proxy_url, body)
    assert status == 200
    with pytest.raises(xmlrpc.client.Fault) as e:
        xmlrpc.client.loads(data)
    assert e.value.faultCode == 2 and words in e.value.faultString
    assert xmlrpc.client.ServerProxy(proxy_url).discover()["filters"]


@pytest.mark.parametrize("call, code, words", [
    (lambda s: s.nope(), 3, "no method 'nope'"),
    (lambda s: s.runFilters(["keep_all"], ["h"]), 4, "takes 4 argument(s)"),
    (lambda s: s.runFilters("keep_all", ["h"], "vm", {}), 4, "filter names (argument 1)"),
    (lambda s: s.runFilters(["keep_all"], [1], "vm", {}), 4, "host ids (argument 2)"),
    (lambda s: s.runCostFunctions([["by_length", 1.5]], ["h"], "vm", {}), 4, "integer weight"),
    (lambda s: s.runLoadBalancing("first_vm", ["h"], {"k": 1}), 4, "struct of string values"),
    (lambda s: s.discover(1), 4, "takes 0 argument(s)"),
    (lambda s: s.system.methodHelp("_private"), 3, "no method"),
    (lambda s: getattr(s, "__init__.__globals__")(), 3, "no method"),
])
def test_bad_calls_are_faults_that_say_what_is_wrong(proxy_url, call, code, words):
    s = xmlrpc.client.ServerProxy(proxy_url)
    with pytest.raises(xmlrpc.client.Fault) as e:
        call(s)
    assert e.value.faultCode == code and words in e.value.faultString


def test_introspection(proxy_url):
    s = xmlrpc.client.ServerProxy(proxy_url)
    assert set(s.system.listMethods()) >= {"discover", "runFilters", "runCostFunctions", "runLoadBalancing"}
    assert "lower is better" in s.system.methodHelp("runCostFunctions")


def test_keep_alive_serves_many_calls_on_one_connection(proxy_url):
    host, port = proxy_url.split("//")[1].strip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    body = xmlrpc.client.dumps((["keep_all"], ["h1"], "vm", {}), "runFilters").encode()
    for _ in range(5):
        conn.request("POST", "/", body, {"Content-Type": "text/xml"})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Connection", "").lower() != "close"
        (answer,), _ = xmlrpc.client.loads(resp.read())
        assert answer["result"] == ["h1"]
    sock = conn.sock
    assert sock is not None  # still the same connection
    conn.close()


def test_gzip_body_and_size_limits(proxy_url):
    body = gzip.compress(xmlrpc.client.dumps((), "discover").encode())
    status, data = post(proxy_url, body, {"Content-Encoding": "gzip"})
    assert status == 200 and "filters" in xmlrpc.client.loads(data)[0][0]
    limit = config.load().server.max_request
    bomb = gzip.compress(b"<" * (limit + 10))
    assert post(proxy_url, bomb, {"Content-Encoding": "gzip"})[0] == 400
    host, port = proxy_url.split("//")[1].strip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\n"
                  b"Content-Length: %d\r\n\r\n" % (limit + 1))
        assert b" 413 " in s.recv(200)


def test_a_burst_of_100_callers_is_accepted_within_the_engine_connect_timeout(proxy_url):
    host, port = proxy_url.split("//")[1].strip("/").split(":")
    body = xmlrpc.client.dumps((["keep_all"], ["h1", "h2"], "vm", {}), "runFilters").encode()
    request = (b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\nConnection: close\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body)) + body
    barrier, failures, answers = threading.Barrier(100), [], []

    def caller():
        barrier.wait()
        try:
            s = socket.create_connection((host, int(port)), timeout=0.1)  # the engine's 100 ms
        except OSError as e:
            failures.append(e)
            return
        s.settimeout(30)
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        s.close()
        answers.append(data)

    threads = [threading.Thread(target=caller) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures
    assert len(answers) == 100
    assert all(b"<name>result_code</name>" in a and b"h2" in a for a in answers)


def test_ten_thousand_hosts_over_xmlrpc(proxy_url):
    """The original proxy put the arguments on a command line and broke at ~3,300 hosts."""
    hosts = [f"6a1e0000-0000-4000-8000-{i:012d}" for i in range(10_000)]
    s = xmlrpc.client.ServerProxy(proxy_url)
    assert s.runFilters(["keep_all"], hosts, "vm", {})["result"] == hosts
    scores = s.runCostFunctions([["by_position", 2]], hosts, "vm", {})["result"]
    assert [h for h, _ in scores] == hosts and scores[-1][1] == 2 * round(9_999.4)


# --- the network edge (docs/RELIABILITY.md) -----------------------------------------------------

def answer_of(call):
    (answer,), _ = xmlrpc.client.loads(call["body"])
    return answer


def open_idle(url):
    return socket.create_connection(scenarios.address(url), timeout=5)


def test_an_engine_answer_keeps_the_headers_http_server_sent(proxy_url):
    call = scenarios.engine_call(proxy_url)
    with socket.create_connection(scenarios.address(proxy_url), timeout=5) as s:
        s.sendall(scenarios.request(scenarios.ENGINE_CALL))
        head = scenarios.read_answers_until(s, b"</methodResponse>", time.monotonic() + 5).split(b"\r\n\r\n")[0]
    names = [line.split(b":")[0] for line in head.split(b"\r\n")[1:]]
    assert names == [b"Server", b"Date", b"Content-type", b"Content-length"]
    assert head.startswith(b"HTTP/1.1 200 OK\r\nServer: BaseHTTP/0.6 Python/")
    assert answer_of(call)["result"] == scenarios.HOSTS


def test_at_max_connections_the_longest_waiting_connection_makes_room(serve):
    srv = serve(max_connections=2)
    first, second = open_idle(srv.url), open_idle(srv.url)
    wait_until(lambda: len(srv.listener.connections) == 2, what="two connections accepted")
    call = scenarios.engine_call(srv.url)
    assert call["status"] == 200 and call["connect_ms"] < 100
    assert wait_until(lambda: scenarios.closed_by_peer(first), 5, "the oldest idle connection to be closed")
    assert not scenarios.closed_by_peer(second)
    first.close()
    second.close()


def test_a_slow_client_is_disconnected_at_read_timeout(serve):
    srv = serve(read_timeout=0.5)
    took = scenarios.slow_headers(srv.url, interval=0.05, give_up=5)
    assert took is not None and 0.4 < took < 1.5
    with socket.create_connection(scenarios.address(srv.url), timeout=5) as s:  # a body that stalls
        s.sendall(scenarios.request(b"<method", length=1000))
        start = time.monotonic()
        assert scenarios.read_answers(s, start + 5) == b"" and time.monotonic() - start < 1.5


def test_an_idle_keep_alive_connection_is_closed_at_idle_timeout(serve):
    srv = serve(idle_timeout=0.3)
    with socket.create_connection(scenarios.address(srv.url), timeout=5) as s:
        s.sendall(scenarios.request(scenarios.ENGINE_CALL))
        assert b"</methodResponse>" in scenarios.read_answers_until(s, b"</methodResponse>", time.monotonic() + 5)
        start = time.monotonic()
        assert wait_until(lambda: scenarios.closed_by_peer(s), 5, "the idle connection to be closed")
        assert 0.2 < time.monotonic() - start < 1.5


def test_a_body_beyond_the_budget_gets_503_before_it_is_sent(serve):
    srv = serve(max_request=64 * 1024, body_budget=100 * 1024)
    with socket.create_connection(scenarios.address(srv.url), timeout=5) as holder:
        holder.sendall(scenarios.request(b"", length=60 * 1024))  # holds 60 KiB of the budget, body not sent
        wait_until(lambda: srv.listener.budget.used, what="the first body to take its share")
        with socket.create_connection(scenarios.address(srv.url), timeout=5) as s:
            s.sendall(scenarios.request(b"", extra=b"Expect: 100-continue\r\n", length=60 * 1024))
            answer = scenarios.read_answers(s, time.monotonic() + 5)
        assert scenarios.statuses(answer) == [503] and b"server.body_budget" in answer
        with socket.create_connection(scenarios.address(srv.url), timeout=5) as s:  # no Expect: sent anyway
            s.sendall(scenarios.request(b"x" * 60 * 1024))
            assert scenarios.statuses(scenarios.read_answers(s, time.monotonic() + 5)) == [503]
    wait_until(lambda: srv.listener.budget.used == 0, what="the budget to be given back")
    assert answer_of(scenarios.engine_call(srv.url))["result"] == scenarios.HOSTS


def test_expect_100_continue_is_answered_before_the_body(proxy_url):
    results = []
    scenarios.send_with_continue(proxy_url, scenarios.ENGINE_CALL, results)
    assert results == [200]


def test_a_chunked_body_is_refused_and_the_connection_closed(proxy_url):
    assert scenarios.chunked(proxy_url) == (411, b"")


def test_deep_nesting_is_a_bad_arguments_fault(proxy_url):
    code, message = scenarios.deep_nesting(proxy_url)
    assert code == 4 and "nest arrays and structs more than 32 deep" in message


def test_requests_only_a_browser_sends_are_refused_and_not_run(proxy_url, caplog):
    with caplog.at_level(logging.INFO):
        answers = scenarios.browser_requests(proxy_url)
    assert answers == {"cross-site form (text/plain, Origin)": 403, "no-cors fetch (no Content-Type)": 403,
                       "DNS rebinding (foreign Host)": 403}
    assert not [r for r in caplog.records if r.name == "proxy.server"]  # nothing was run
    assert "refused a request from 127.0.0.1" in caplog.text and "Origin" in caplog.text


def test_the_engine_clients_content_types_and_hosts_pass(proxy_url):
    for content_type, host in [("text/xml", "localhost:18781"), ("text/xml; charset=utf-8", "127.0.0.1"),
                               ("TEXT/XML", "[::1]:18781")]:
        with socket.create_connection(scenarios.address(proxy_url), timeout=5) as s:
            s.sendall(scenarios.request(scenarios.ENGINE_CALL, content_type=content_type, host=host))
            assert scenarios.statuses(scenarios.read_answers_until(s, b"</methodResponse>", time.monotonic() + 5)) \
                == [200]


def test_each_call_is_logged_with_the_client_address(proxy_url, caplog):
    with caplog.at_level(logging.INFO, logger="proxy.server"), xmlrpc.client.ServerProxy(proxy_url) as s:
        s.system.listMethods()
    assert "system.listMethods units=- client=127.0.0.1 duration=" in caplog.text


def test_a_client_not_in_the_allow_list_is_closed_and_logged(serve, caplog):
    srv = serve(allow=["192.0.2.10", "10.1.0.0/16"])
    with caplog.at_level(logging.WARNING):
        call = scenarios.engine_call(srv.url, connect_timeout=1)
    assert call["status"] is None and "refused a connection from 127.0.0.1: not in server.allow" in caplog.text
    allowed = serve(allow=["127.0.0.0/8"])
    assert answer_of(scenarios.engine_call(allowed.url))["result"] == scenarios.HOSTS


def test_tls_with_a_certificate_the_client_verifies(serve, tmp_path):
    cert, key = self_signed_cert(tmp_path)
    srv = serve(tls_cert=str(cert), tls_key=str(key))
    assert srv.url.startswith("https://127.0.0.1:")
    trusting = ssl.create_default_context(cafile=str(cert))
    with xmlrpc.client.ServerProxy(srv.url, context=trusting) as s:
        assert s.discover()["filters"]
    with pytest.raises(ssl.SSLCertVerificationError), \
            xmlrpc.client.ServerProxy(srv.url, context=ssl.create_default_context()) as s:
        s.discover()
    plain = scenarios.engine_call(srv.url.replace("https", "http"), connect_timeout=1, timeout=5)
    assert plain["status"] is None  # plain HTTP to the TLS port: no answer, and the server goes on
    with xmlrpc.client.ServerProxy(srv.url.replace("127.0.0.1", "localhost"), context=trusting) as s:
        assert s.discover()["filters"]


def test_shutdown_closes_idle_connections_and_finishes_calls_in_progress(serve):
    srv = serve()
    idle = open_idle(srv.url)
    wait_until(lambda: srv.listener.connections, what="the idle connection to be accepted")
    busy = socket.create_connection(scenarios.address(srv.url), timeout=5)
    busy.sendall(scenarios.request(scenarios.ENGINE_CALL)[:-10])  # a request being read
    wait_until(lambda: srv.listener.busy, what="the request to be started")
    srv.shutdown()
    assert wait_until(lambda: scenarios.closed_by_peer(idle), 5, "the idle connection to be closed")
    busy.sendall(scenarios.request(scenarios.ENGINE_CALL)[-10:])
    busy.setblocking(True)
    answer = scenarios.read_answers(busy, time.monotonic() + 5)
    assert scenarios.statuses(answer) == [200] and srv.wait_idle(5)
    idle.close()
    busy.close()
