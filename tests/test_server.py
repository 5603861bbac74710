"""The XML-RPC server: hostile input, faults, introspection, keep-alive, bursts of connections."""
import gzip
import http.client
import socket
import threading
import xmlrpc.client

import pytest
from hypothesis import given, settings, strategies as st

from proxy import config, executor, protocol, server
from proxy.errors import MalformedRequest
from tests.support import PLUGINS

ENGINE_BALANCE_CALL = b"""<?xml version="1.0" encoding="UTF-8"?>
<methodCall xmlns:ex="http://ws.apache.org/xmlrpc/namespaces/extensions"><methodName>runLoadBalancing</methodName>
<params><param><value>first_vm</value></param>
<param><value><array><data><value>6a1e0000-0000-0000-0000-000000000001</value>
<value>6a1e0000-0000-0000-0000-000000000002</value></data></array></value></param>
<param><value><ex:nil/></value></param></params></methodCall>"""


@pytest.fixture(scope="module")
def proxy_url():
    cfg = config.load(None, {"plugins.folder": str(PLUGINS / "basic"), "plugins.timeout": "2"})
    ex = executor.Executor(cfg, password="")
    ex.start()
    srv = server.ProxyServer("127.0.0.1", 0, protocol.EngineProtocol(ex, 2.0), backlog=1024)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.port}/"
    srv.shutdown()
    srv.server_close()
    ex.stop()


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


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_parse_call_only_ever_raises_malformed_request(body):
    try:
        server.parse_call(body)
    except MalformedRequest:
        pass


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
    bomb = gzip.compress(b"<" * (server.MAX_REQUEST + 10))
    assert post(proxy_url, bomb, {"Content-Encoding": "gzip"})[0] == 400
    host, port = proxy_url.split("//")[1].strip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (server.MAX_REQUEST + 1))
        assert b" 413 " in s.recv(200)


def test_a_burst_of_100_callers_is_accepted_within_the_engine_connect_timeout(proxy_url):
    host, port = proxy_url.split("//")[1].strip("/").split(":")
    body = xmlrpc.client.dumps((["keep_all"], ["h1", "h2"], "vm", {}), "runFilters").encode()
    request = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nConnection: close\r\n"
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
