"""The network edge under hostile clients, against the real proxy process: each test is a row of
docs/RELIABILITY.md and asserts its bound.  `python -m tests.reliability.measure` prints the
same figures without asserting (and for another checkout, to compare)."""
import resource
import xmlrpc.client

import pytest

from proxy.listener import FD_RESERVE
from tests.reliability import scenarios
from tests.support import PLUGINS, wait_until

pytestmark = pytest.mark.reliability


@pytest.fixture
def many_files():
    """Lets this process open the 1,100 client sockets of row 2 (soft limit up to the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1400:
        pytest.skip(f"needs an open-file hard limit of 1,400 for the client side, not {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def config_file(tmp_path, text):
    path = tmp_path / "proxy.toml"
    path.write_text(text)
    return str(path)


def engine_result(url):
    call = scenarios.engine_call(url)
    assert call["status"] == 200 and call["connect_ms"] < 100, call
    (answer,), _ = xmlrpc.client.loads(call["body"])
    assert answer == {"result_code": 0, "result": scenarios.HOSTS, "plugin_errors": {}, "errors": []}
    return call


def test_row2_idle_connections_past_the_open_file_limit(start_proxy, many_files):
    p = start_proxy(PLUGINS / "basic", nofile=(1024, 1024))
    figures = scenarios.idle_flood(p.url, p.proc.pid, n=1100)
    assert figures["status"] == 200 and figures["connect_ms"] < 100 and figures["answer_ms"] < 2000, figures
    assert figures["proxy_fds"] <= 256 + FD_RESERVE, figures  # server.max_connections and the proxy's own
    assert figures["closed_by_proxy"] >= 1100 - 256, figures
    assert figures["proxy_cpu_percent_after"] < 10, figures  # no busy loop
    engine_result(p.url)


def test_row2_the_soft_open_file_limit_is_raised_at_start(start_proxy):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    p = start_proxy(PLUGINS / "basic", nofile=(512, hard))
    assert f"open-file limit raised from 512 to {hard}" in p.log()
    with open(f"/proc/{p.proc.pid}/limits") as f:
        assert any(line.startswith("Max open files") and line.split()[3] == str(hard) for line in f)


def test_row2_out_of_file_descriptors_lowers_the_limit_without_spinning(start_proxy):
    p = start_proxy(PLUGINS / "basic")
    pid, hard = p.proc.pid, resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (scenarios.open_fds(pid) + 80, hard))  # as if fds leaked
    figures = scenarios.idle_flood(p.url, pid, n=300)
    assert figures["status"] == 200 and figures["proxy_cpu_percent_after"] < 10, figures
    engine_result(p.url)  # the lowered limit left the call room for its worker sockets
    assert p.log().count("out of file descriptors while accepting") == 1  # at most once a minute


def test_row3_a_client_sending_headers_slowly_is_disconnected_at_read_timeout(start_proxy, tmp_path):
    p = start_proxy(PLUGINS / "basic", "--config", config_file(tmp_path, "[server]\nread_timeout = 2\n"))
    took = scenarios.slow_headers(p.url, interval=1.0, give_up=30)
    assert took is not None and 1.5 < took < 3.5
    engine_result(p.url)


def test_row5_bodies_beyond_the_budget_get_503_and_memory_stays_bounded(start_proxy):
    p = start_proxy(PLUGINS / "basic")  # server.max_request 64 MiB, server.body_budget 128 MiB
    figures = scenarios.big_bodies(p.url, p.proc.pid, n=8, size=50 * scenarios.MIB)
    assert figures["statuses"] == [200] * 2 + [503] * 6, figures  # two fit the budget
    assert figures["peak_rss_mb"] < 600, figures  # 1,197 MB before (docs/RELIABILITY.md)
    engine_result(p.url)


def test_row8_requests_a_browser_would_send_are_refused_and_not_run(start_proxy):
    p = start_proxy(PLUGINS / "basic")
    assert set(scenarios.browser_requests(p.url).values()) == {403}
    log = p.log()
    assert "proxy.server" not in log  # no call was run (each call logs a proxy.server line)
    assert "refused a request from 127.0.0.1: refused: a request with an Origin header" in log


def test_row10_deep_nesting_is_fault_4_and_chunked_is_refused_without_desync(start_proxy):
    p = start_proxy(PLUGINS / "basic")
    code, message = scenarios.deep_nesting(p.url, depth=100_000)
    assert code == 4 and "more than 32 deep" in message
    assert scenarios.chunked(p.url) == (411, b"")
    engine_result(p.url)


def test_load_100_concurrent_callers_connect_within_100_ms_and_are_answered(start_proxy):
    p = start_proxy(PLUGINS / "basic")
    figures = scenarios.burst(p.url, n=100)
    assert figures["connected"] == figures["answered"] == 100, figures
    assert figures["max_connect_ms"] < 100, figures
    wait_until(lambda: "request " in p.log(), what="the calls to be logged")
