"""proxy.sim.httpd: content types, path clean-up, keep-alive latency, and simulator bugs as 500s."""

import time

import ovirtsdk4 as sdk

from tests.sim_fixtures import connection, login, raw


def test_content_types(sim_engine):
    _, _, reply = login(sim_engine)
    status, headers, body = raw(sim_engine, "GET", "/ovirt-engine/api/hosts",
                                token=reply["access_token"])
    assert status == 200 and headers["Content-Type"].startswith("application/xml")
    assert body.startswith(b"<hosts>")


def test_double_slashes_are_tolerated(sim_engine):
    with sdk.Connection(url=sim_engine.url + "/", username=sim_engine.user,
                        password=sim_engine.password) as conn:
        assert len(conn.system_service().hosts_service().list()) == 4
    assert sim_engine.requests[-1].path == "/ovirt-engine/api/hosts"


def test_keep_alive_requests_are_not_delayed_by_nagle(sim_engine):
    """Regression: http.server's two send()s plus delayed ACK cost 40 ms per warm request."""
    with connection(sim_engine) as conn:
        hosts = conn.system_service().hosts_service()
        hosts.list()
        start = time.monotonic()
        for _ in range(10):
            hosts.list(follow="statistics")
        assert time.monotonic() - start < 0.3


def test_a_simulator_bug_is_a_500_fault_not_a_hang(sim_engine, monkeypatch):
    def broken(*args):
        raise KeyError("oops")

    monkeypatch.setattr(sim_engine, "_api", broken)
    status, headers, body = raw(sim_engine, "GET", "/ovirt-engine/api/hosts")
    assert status == 500 and headers["Content-Type"].startswith("application/xml")
    assert b"simulated engine bug: KeyError" in body
    assert login(sim_engine)[0] == 200  # SSO is answered apart from the API
