"""Connections: the limit when every connection is busy, TLS set-up errors, the open-file limit,
and a handler that fails."""
import logging
import resource
import subprocess
import sys
import threading
import time

import pytest

from proxy import config, httpio, listener
from proxy.errors import ConfigError
from tests.reliability import scenarios
from tests.support import ROOT, self_signed_cert, wait_until


def settings(**changes):
    return config.load().replace({"server.port": 0, **{f"server.{k}": v for k, v in changes.items()}}).server


@pytest.fixture
def listen():
    """listen(handle, **settings) -> a serving Listener whose handler is `handle(request)`."""
    started = []

    def start(handle, **changes):
        lst = listener.Listener(settings(**changes), handle, threads=4)
        threading.Thread(target=lst.serve_forever, daemon=True).start()
        started.append(lst)
        return lst, f"http://127.0.0.1:{lst.address[1]}/"

    yield start
    for lst in started:
        lst.shutdown()
        lst.server_close()


def ok(request):
    return httpio.Response(200, [("Content-type", "text/xml")], b"<ok/>")


def test_when_every_connection_is_being_answered_a_new_one_is_closed_at_once(listen, caplog):
    release = threading.Event()
    lst, url = listen(lambda request: release.wait(10) and ok(request), max_connections=2)
    busy = [scenarios.open_call(url) for _ in range(2)]
    wait_until(lambda: lst.busy == 2, what="two calls in progress")
    with caplog.at_level(logging.WARNING):
        start = time.monotonic()
        refused = scenarios.engine_call(url, connect_timeout=1, timeout=5)
    assert refused["status"] is None and time.monotonic() - start < 1  # closed at once, not left hanging
    assert "2 connections (server.max_connections) are all being answered" in caplog.text
    release.set()
    for s in busy:
        with s:
            assert scenarios.statuses(scenarios.read_answers_until(s, b"<ok/>", time.monotonic() + 5)) == [200]


def test_a_handler_that_raises_is_an_http_500(listen, caplog):
    lst, url = listen(lambda request: 1 / 0)
    with caplog.at_level(logging.ERROR):
        assert scenarios.engine_call(url)["status"] == 500
    assert "internal error answering a request from 127.0.0.1" in caplog.text


def test_tls_settings_that_cannot_work_are_configuration_errors(tmp_path):
    cert, key = self_signed_cert(tmp_path)
    with pytest.raises(ConfigError, match="server.tls_key is set but server.tls_cert is empty"):
        listener.tls_context("", str(key))
    with pytest.raises(ConfigError, match="server.tls_cert: cannot read .*missing.pem: No such file"):
        listener.tls_context(str(tmp_path / "missing.pem"), "")
    with pytest.raises(ConfigError, match="are not a PEM certificate and its private key"):
        listener.tls_context(str(key), str(cert))
    encrypted = tmp_path / "encrypted.pem"
    subprocess.run(["openssl", "pkey", "-in", str(key), "-out", str(encrypted), "-aes256", "-passout", "pass:x"],
                   check=True)
    with pytest.raises(ConfigError, match="server.tls_key is encrypted"):
        listener.tls_context(str(cert), str(encrypted))
    both = tmp_path / "both.pem"
    both.write_bytes(cert.read_bytes() + key.read_bytes())
    assert listener.tls_context(str(both), "")  # the key may be in the certificate's file


def test_a_budget_below_the_request_limit_is_a_configuration_error():
    with pytest.raises(ConfigError, match=r"server.body_budget \(65536\) is smaller than server.max_request"):
        listener.Listener(settings(body_budget=65536), ok, threads=1)


def test_max_connections_is_lowered_to_what_the_open_file_limit_allows(caplog):
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    with caplog.at_level(logging.WARNING):
        assert listener.connection_limit(10, 8) == 10
        fitted = listener.connection_limit(soft, 8)
    assert fitted == soft - listener.FD_RESERVE - 16
    assert f"server.max_connections is {soft} but the open-file limit {soft} leaves room for {fitted}" in caplog.text


def test_the_soft_open_file_limit_is_raised_to_the_hard_one():
    code = ("import logging, resource; logging.basicConfig(level=logging.INFO);"
            "from proxy.listener import raise_open_file_limit; raise_open_file_limit();"
            "print(resource.getrlimit(resource.RLIMIT_NOFILE))")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)))
    assert r.stdout.strip() == f"({hard}, {hard})"
    assert f"open-file limit raised from 256 to {hard}" in r.stderr


def test_a_body_holds_its_share_of_the_budget_until_its_call_is_answered(listen):
    seen = []
    lst, url = listen(lambda request: seen.append((len(request.body), lst.budget.used)) or ok(request),
                      max_request=65536, body_budget=131072)
    answer = scenarios.engine_call(url)
    assert answer["status"] == 200
    assert seen == [(len(scenarios.ENGINE_CALL), len(scenarios.ENGINE_CALL))]  # held while the handler ran
    wait_until(lambda: lst.budget.used == 0, what="the share given back once answered")
    too_big = scenarios.engine_call(url, body=b"<x/>" * (lst.settings.max_request // 4 + 1))
    assert too_big["status"] == 413 and lst.budget.used == 0 and len(seen) == 1
