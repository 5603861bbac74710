"""proxy.engine against the simulated engine, with the real ovirtsdk4 (nothing mocked)."""

import socket
import time

import ovirtsdk4 as sdk
import pycurl
import pytest

from proxy import engine, sdk_internals, state
from proxy.sim import SimulatedEngine
from proxy.sim.generate import generate_snapshot

MIB = 1024 * 1024


def ids(snapshot, kind):
    return {e["name"]: e["id"] for e in snapshot[kind]}


def rebind(sim, *, password=None, token=None, seconds=None, url=None):
    engine.bind(engine.EngineSettings(url=url or sim.url, user=sim.user,
                                      password=password or sim.password),
                token=token, deadline=None if seconds is None else time.monotonic() + seconds)


@pytest.fixture
def closed_port():
    """A loopback port nothing listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


# --- binding and connections -------------------------------------------------------------------

@pytest.mark.parametrize("settings", [None, engine.EngineSettings(url="")])
def test_connect_without_url_says_what_to_set(settings):
    engine.bind(settings)
    with pytest.raises(engine.EngineError, match=r"no engine URL configured: set url in the \[engine\]"):
        engine.connect()


def test_first_call_logs_in_and_later_calls_reuse_the_token(bound_engine):
    assert engine.token() is None
    with engine.connect() as conn:
        engine.hosts(conn)
    first = engine.token()
    assert first in bound_engine.tokens and bound_engine.logins == 1
    with engine.connect() as conn:
        engine.vms(conn)
    assert engine.token() == first and bound_engine.logins == 1


def test_a_bound_token_is_used_without_a_login(bound_engine):
    with engine.connect() as conn:
        engine.hosts(conn)
    carried = engine.token()
    bound_engine.reset_counters()
    rebind(bound_engine, token=carried, seconds=5)  # what the proxy does before the next call
    with engine.connect() as conn:
        engine.hosts(conn)
    assert bound_engine.logins == 0 and bound_engine.api_requests == 1


def test_a_revoked_token_is_renewed_and_the_new_one_reported(bound_engine):
    with engine.connect() as conn:
        engine.hosts(conn)
    old = engine.token()
    bound_engine.revoke_tokens()
    with engine.connect() as conn:
        assert len(engine.hosts(conn)) == 4
    assert engine.token() != old and engine.token() in bound_engine.tokens
    assert bound_engine.logins == 2


def test_closing_never_revokes_the_shared_token(bound_engine):
    with engine.connect() as conn:
        engine.hosts(conn)
    conn.close()  # a unit closing by hand, twice
    assert bound_engine.logouts == 0 and engine.token() in bound_engine.tokens
    assert isinstance(conn, sdk.Connection)


def test_a_trailing_slash_in_the_url_is_harmless(bound_engine):
    rebind(bound_engine, url=bound_engine.url + "/")
    with engine.connect() as conn:
        assert len(engine.hosts(conn)) == 4
    assert bound_engine.requests[-1].path == "/ovirt-engine/api/hosts"


# --- readers -----------------------------------------------------------------------------------

def test_hosts_reads_memory_cpu_and_counts(bound_engine, small_snapshot):
    with engine.connect() as conn:
        hosts = engine.hosts(conn)
    h1 = hosts[ids(small_snapshot, "hosts")["host1"]]
    assert h1 == engine.Host(
        id=h1.id, name="host1", status="up", cluster_id=small_snapshot["clusters"][0]["id"],
        memory=16384 * MIB, max_scheduling_memory=512 * MIB, free_memory=400 * MIB,
        cpu_usage=72.0, cpu_cores=8, cpu_threads=16, active_vms=4)
    assert [h.name for h in hosts.values()] == ["host1", "host2", "host3", "host4"]


def test_hosts_filters_to_ids_in_their_order_in_one_request(bound_engine, small_snapshot):
    wanted = ids(small_snapshot, "hosts")
    ask = [wanted["host3"], "a0000000-0000-4000-8000-000000000099", wanted["host1"], wanted["host3"]]
    with engine.connect() as conn:
        bound_engine.reset_counters()
        found = engine.hosts(conn, ask)
    assert list(found) == [wanted["host3"], wanted["host1"]]
    assert bound_engine.api_requests == 1
    assert bound_engine.requests[0].query == {"follow": "statistics"}


def test_hosts_is_one_request_for_many_hosts():
    snapshot = generate_snapshot(300, 3000, seed=2, pressure_hosts=5)
    with SimulatedEngine(snapshot) as sim:
        rebind(sim, seconds=30)
        try:
            with engine.connect() as conn:
                sim.reset_counters()
                found = engine.hosts(conn, [h["id"] for h in snapshot["hosts"]][::-1])
        finally:
            engine.bind(None)
    assert sim.api_requests == 1 and len(found) == 300
    assert sum(h.free_memory < 500 * MIB for h in found.values()) == 5


def test_unknown_free_memory_reads_as_none(bound_engine, small_snapshot):
    host = ids(small_snapshot, "hosts")["host2"]
    bound_engine.update_host(host, free_memory_mb=None)
    with engine.connect() as conn:
        assert engine.hosts(conn, [host])[host].free_memory is None


def test_vms_running_only_by_default(bound_engine, small_snapshot):
    with engine.connect() as conn:
        bound_engine.reset_counters()
        running = engine.vms(conn)
        everything = engine.vms(conn, running_only=False)
        with_stats = engine.vms(conn, with_stats=True)
    assert len(running) == 8 and all(v.status == "up" and v.host_id for v in running)
    assert len(everything) == 10
    old1 = next(v for v in everything if v.name == "old1")
    assert (old1.status, old1.host_id, old1.cpu_usage) == ("down", None, None)
    db1 = next(v for v in with_stats if v.name == "db1")
    assert db1 == engine.Vm(id=ids(small_snapshot, "vms")["db1"], name="db1", status="up",
                            host_id=ids(small_snapshot, "hosts")["host1"], memory=8192 * MIB,
                            guaranteed_memory=4096 * MIB, os_type="rhel_9x64", cpu_usage=55.0,
                            vcpus=4, cluster_id=small_snapshot["clusters"][0]["id"])
    assert [r.query for r in bound_engine.requests] == [
        {"search": "status=up"}, {}, {"follow": "statistics", "search": "status=up"}]


def test_vm_by_id_or_none(bound_engine, small_snapshot):
    with engine.connect() as conn:
        bound_engine.reset_counters()
        found = engine.vm(conn, ids(small_snapshot, "vms")["win2"])
        missing = engine.vm(conn, "b0000000-0000-4000-8000-000000000099")
        with_stats = engine.vm(conn, ids(small_snapshot, "vms")["win2"], with_stats=True)
    assert (found.name, found.os_type, found.cpu_usage) == ("win2", "windows_2019x64", None)
    assert missing is None and with_stats.cpu_usage == 40.0
    assert bound_engine.api_requests == 3


def test_a_moved_vm_is_seen_by_the_next_call(bound_engine, small_snapshot):
    host, vm = ids(small_snapshot, "hosts"), ids(small_snapshot, "vms")
    with engine.connect() as conn:
        before = engine.hosts(conn)
        bound_engine.move_vm(vm["tiny1"], host["host2"])
        after = engine.hosts(conn)
        placed = {v.name: v.host_id for v in engine.vms(conn)}
    assert placed["tiny1"] == host["host2"]
    assert after[host["host1"]].free_memory == before[host["host1"]].free_memory + 1024 * MIB
    assert after[host["host2"]].active_vms == before[host["host2"]].active_vms + 1


# --- failures ----------------------------------------------------------------------------------

def test_bad_password_names_the_fix(bound_engine):
    rebind(bound_engine, password="wrong", seconds=5)
    with pytest.raises(engine.EngineError) as caught:
        with engine.connect() as conn:
            engine.hosts(conn)
    message = str(caught.value)
    assert f"engine at {bound_engine.url} refused the login for admin@internal" in message
    assert "access_denied" in message and "check [engine] user and password_file" in message
    assert isinstance(caught.value.__cause__, sdk.AuthError)


def test_unreachable_engine_fails_fast(closed_port):
    url = f"http://127.0.0.1:{closed_port}/ovirt-engine/api"
    try:
        for token in (None, "carried"):  # the login fails, or the first API request does
            engine.bind(engine.EngineSettings(url=url, password="x"), token=token,
                        deadline=time.monotonic() + 10)
            start = time.monotonic()
            with pytest.raises(engine.EngineError, match=f"cannot connect to the engine at {url}.*"
                                                         r"check \[engine\] url"):
                with engine.connect() as conn:
                    engine.hosts(conn)
            assert time.monotonic() - start < 1.0
    finally:
        engine.bind(None)


def test_server_error_is_an_engine_error(bound_engine):
    bound_engine.fail_next(500)
    with pytest.raises(engine.EngineError, match="failed with HTTP 500"):
        with engine.connect() as conn:
            engine.vms(conn)


@pytest.mark.parametrize("carry_token", [True, False], ids=["api-request", "sso-login"])
def test_slow_engine_stops_at_the_deadline(bound_engine, carry_token):
    token = None
    if carry_token:
        with engine.connect() as conn:
            engine.hosts(conn)
        token = engine.token()
    bound_engine.delay = 5
    rebind(bound_engine, token=token, seconds=0.5)
    start = time.monotonic()
    with pytest.raises(engine.EngineError, match="did not answer before the call's deadline"):
        with engine.connect() as conn:
            engine.hosts(conn)
    assert time.monotonic() - start < 0.5 + 1.0


def test_no_request_is_sent_once_the_deadline_has_passed(bound_engine):
    rebind(bound_engine, token="whatever", seconds=-1)
    with pytest.raises(engine.EngineError, match="deadline"):
        with engine.connect() as conn:
            engine.hosts(conn)
    assert bound_engine.api_requests == 0 and bound_engine.logins == 0


def test_the_renewal_after_a_401_is_bounded_too(bound_engine):
    with engine.connect() as conn:
        engine.hosts(conn)
    bound_engine.revoke_tokens()
    rebind(bound_engine, token=engine.token(), seconds=0.5)
    bound_engine.delay = 0.2  # 401 at 0.2 s, new token at 0.4 s, the retry would end at 0.6 s
    start = time.monotonic()
    with pytest.raises(engine.EngineError, match="did not answer before the call's deadline"):
        with engine.connect() as conn:
            engine.hosts(conn)
    assert time.monotonic() - start < 0.5 + 1.0
    assert bound_engine.logins == 2  # the renewal happened, and its token is kept for later
    assert engine.token() in bound_engine.tokens


# --- describe_error ----------------------------------------------------------------------------

def test_describe_error_covers_sdk_errors_a_unit_meets_directly(bound_engine):
    with engine.connect() as conn:
        with pytest.raises(sdk.NotFoundError) as caught:
            conn.system_service().hosts_service().host_service("missing").get()
    assert engine.describe_error(caught.value) == (
        f"the engine at {bound_engine.url} does not know what was asked for: "
        "HTTP response code is 404.")


def test_describe_error_kinds(bound_engine):
    where = f"engine at {bound_engine.url}"
    cases = {
        sdk.Error("Failed to read response: [(<pycurl.Curl object at 0x7f00>, 28, "
                  "'Operation timed out after 499 milliseconds')]"): "did not answer before the call's deadline",
        pycurl.error(7, "Failed to connect"): "cannot connect to the " + where,
        pycurl.error(60, "SSL certificate problem"): r"check [engine] ca_file",
        TimeoutError("timed out"): "did not answer before",
        engine.EngineError("as is"): "as is",
        sdk.Error("Fault detail is x. HTTP response code is 400.", code=400): "answered with an error",
    }
    for exc, expected in cases.items():
        assert expected in engine.describe_error(exc)


def test_describe_error_ignores_a_units_own_errors():
    for exc in (ValueError("bad property"), KeyError("x"), ZeroDivisionError(), RuntimeError("no")):
        try:
            raise exc
        except Exception as e:
            assert engine.describe_error(e) is None


def test_describe_error_recognises_an_sdk_parse_error(bound_engine):
    with pytest.raises(ValueError) as caught:
        sdk.reader.Reader.parse_integer("1.6E10")  # what a float in an integer element gives
    assert "sent a reply the SDK cannot read" in engine.describe_error(caught.value)


def test_vms_on_many_hosts_falls_back_to_one_listing_that_fits_a_request_line():
    snapshot = generate_snapshot(400, 2000, seed=4)
    with SimulatedEngine(snapshot) as sim:
        engine.bind(engine.EngineSettings(url=sim.url, user=sim.user, password=sim.password))
        try:
            with engine.connect() as conn:
                hosts = list(engine.hosts(conn).values())
                sim.reset_counters()
                few = engine.vms(conn, on_hosts=hosts[:3])
                many = engine.vms(conn, on_hosts=hosts)
        finally:
            engine.bind(None)
    assert sim.api_requests == 2
    assert all(len(r.path) + len(str(r.query)) < 8000 for r in sim.requests)
    up = {v["id"] for v in snapshot["vms"] if v["status"] == "up"}
    assert {v.id for v in many} == up
    few_hosts = {h.id for h in hosts[:3]}
    assert {v.id for v in few} == {v["id"] for v in snapshot["vms"] if v["status"] == "up" and v["host"] in few_hosts}


# --- the shared snapshot ------------------------------------------------------------------------

@pytest.fixture
def held(small_snapshot):
    """A snapshot of config/cluster-small.json held as the fork server holds one; released after."""
    snap = state.from_document(small_snapshot, version=5, source="test")
    engine.hold(snap, stale_limit=60)
    engine.bind(engine.EngineSettings())
    try:
        yield snap
    finally:
        engine.hold(None)
        engine.bind(None)


def test_hosts_vms_and_vm_answer_from_the_held_snapshot_without_a_connection(held, small_snapshot):
    host_ids = [h["id"] for h in small_snapshot["hosts"]]
    assert list(engine.hosts(None, host_ids[::-1])) == host_ids[::-1]
    assert len(engine.vms(None)) == 8 and len(engine.vms(None, running_only=False)) == 10
    on = engine.vms(None, on_hosts=[held.hosts[host_ids[0]]])
    assert sorted(v.name for v in on) == ["app1", "db1", "tiny1", "web1"]
    assert engine.vm(None, small_snapshot["vms"][0]["id"]).name == small_snapshot["vms"][0]["name"]
    assert engine.snapshot() is held


def test_a_snapshot_older_than_the_units_max_age_is_read_again(bound_engine, small_snapshot):
    old = state.from_document(small_snapshot, version=5, source="test", read_at=time.time() - 30)
    engine.hold(old, stale_limit=60)
    try:
        assert engine.snapshot() is old  # within stale_limit, what the proxy shares
        bound_engine.reset_counters()
        fresh = engine.snapshot(max_age=5)
        assert fresh.version == 0 and bound_engine.api_requests >= 4
    finally:
        engine.hold(None)


def test_past_stale_limit_the_snapshot_is_refused_with_the_engines_reason(small_snapshot):
    old = state.from_document(small_snapshot, version=5, source="test", read_at=time.time() - 90)
    engine.hold(old, stale_limit=60)
    engine.bind(engine.EngineSettings(), refresh_error="cannot connect to the engine at X")
    try:
        with pytest.raises(engine.EngineError, match=r"90 s old, past engine.stale_limit \(60 s\): cannot connect"):
            engine.snapshot()
    finally:
        engine.hold(None)
        engine.bind(None)


def test_a_snapshot_file_never_gets_old(small_snapshot):
    old = state.from_document(small_snapshot, version=1, source="file", read_at=0)
    engine.hold(old, static=True)
    try:
        assert engine.snapshot() is old and engine.snapshot(max_age=1) is old
    finally:
        engine.hold(None)


def test_no_snapshot_yet_and_a_failed_read_is_an_engine_error():
    engine.bind(engine.EngineSettings(url="http://x/ovirt-engine/api"), refresh_error="the engine refused")
    try:
        with pytest.raises(engine.EngineError, match="the engine refused"):
            engine.hosts(None, ["h"])
    finally:
        engine.bind(None)


def test_describe_error_says_whether_the_credentials_the_server_or_the_url_failed(bound_engine):
    url = bound_engine.url
    sso = f"{url.rsplit('/api', 1)[0]}/sso/oauth/token"
    cases = [
        (sdk_internals.SsoReplyError(f"the SSO service at {sso} answered HTTP 401 with text/html, not JSON",
                                     401), "the credentials are wrong", "check [engine] user and password_file"),
        (sdk_internals.SsoReplyError(f"the SSO service at {sso} answered HTTP 500 with text/html, not JSON",
                                     500), "the engine server failed", "see the engine's log"),
        (sdk.Error("HTTP response code is 503.", code=503), "the engine server failed", "see the engine's log"),
        (pycurl.error(7, "Connection refused"), f"the engine is not reachable at {url}", "check [engine] url"),
        (sdk_internals.SsoReplyError(f"the SSO service at {sso} answered HTTP 200 with text/html, not JSON",
                                     200), "check [engine] url", "/ovirt-engine/api"),
    ]
    for exc, who, fix in cases:
        message = engine.describe_error(exc)
        assert who in message and fix in message, message
    for exc, _, _ in cases[:2]:
        assert "check [engine] url" not in engine.describe_error(exc)
