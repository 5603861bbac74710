"""Metrics: counters that move with real calls (scraped over HTTP and parsed as Prometheus
does), the gauges read from the executor, the snapshot age, names by the conventions, and
the shipped Grafana dashboard asking only for metrics that exist."""
import json
import re
import threading
import time
import xmlrpc.client

import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy import executor, metrics, protocol
from tests import executor_support
from tests.support import PLUGINS, ROOT, free_port, http_get, wait_until

P = metrics.PREFIX
DASHBOARD = ROOT / "config" / "grafana-dashboard.json"


def parse(text):
    """{(sample name, ((label, value), ...)): value} of an exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples, name, **labels):
    return samples.get((P + name, tuple(sorted(labels.items()))), 0.0)


def local():
    return parse(metrics.exposition().decode())


@pytest.fixture
def monitored(start_proxy):
    """A proxy on the misbehaving units with its metrics listener, and a scrape function."""
    p = start_proxy(PLUGINS / "misbehaving", "--timeout", "1", "--metrics-port", str(free_port()))
    url = wait_until(lambda: re.search(r"metrics on (http://\S+/metrics)", p.log()), 10, "the metrics listener")[1]

    def scrape():
        status, headers, body = http_get(url)
        assert status == 200 and headers["Content-Type"].startswith("text/plain; version=")
        return parse(body.decode())
    return p, scrape


def test_counters_move_with_real_calls(monitored):
    p, scrape = monitored
    s = xmlrpc.client.ServerProxy(p.url)
    s.discover()
    s.runFilters(["raises", "keep_all_missing"], ["h1"], "vm", {})
    s.runLoadBalancing("hangs", ["h1"], {})
    with pytest.raises(xmlrpc.client.Fault):
        s.no_such_method()
    m = scrape()
    assert value(m, "calls_total", method="discover", outcome="ok") == 1
    assert value(m, "calls_total", method="runFilters", outcome="unit_errors") == 1
    assert value(m, "calls_total", method="runLoadBalancing", outcome="unit_errors") == 1
    assert value(m, "calls_total", method="other", outcome="bad_request") == 1  # never the name sent
    assert value(m, "call_duration_seconds_count", method="runLoadBalancing") == 1
    assert value(m, "call_duration_seconds_sum", method="runLoadBalancing") >= 1.0  # the timeout
    assert value(m, "unit_calls_total", unit="raises", type="filter") == 1
    assert value(m, "unit_failures_total", unit="raises", type="filter", kind="UnitRaised") == 1
    assert value(m, "unit_failures_total", unit=metrics.UNKNOWN_UNIT, type="filter", kind="UnitNotFound") == 1
    assert value(m, "unit_timeouts_total", unit="hangs", type="balance") == 1
    assert value(m, "unit_failures_total", unit="hangs", type="balance", kind="UnitTimeout") == 1
    assert value(m, "unit_duration_seconds_count", unit="raises", type="filter") == 1
    assert 1.0 <= value(m, "unit_duration_seconds_sum", unit="hangs", type="balance") < 2.0
    assert value(m, "unit_duration_seconds_bucket", unit="raises", type="filter", le="+Inf") == 1


def test_gauges_show_slots_workers_and_units(monitored):
    p, scrape = monitored
    m = wait_until(lambda: (lambda m: m if value(m, "workers_spare") == 4 else None)(scrape()), 10,
                   "four spare workers")
    assert (value(m, "slots"), value(m, "slots_in_use"), value(m, "fork_server_up")) == (8, 0, 1)
    assert value(m, "workers_alive") == 4  # the spares: nothing else runs under the fork server
    assert value(m, "workers_warm") == 0  # no unit has been called
    assert value(m, "units_loaded") > 10 and value(m, "units_rejected") >= 5
    assert value(m, "engine_requests_total", source="startup") == 0  # no engine URL: nothing to ask
    assert ("process_resident_memory_bytes", ()) in m


def test_slots_in_use_while_a_unit_runs():
    ex = executor_support.make(PLUGINS / "misbehaving")
    try:
        metrics.watch(ex)
        unit = ex.catalog().find("balance", "hangs")
        ran = []
        t = threading.Thread(target=lambda: ran.append(ex.run([executor.Call(unit, [["h"], {}])],
                                                              time.monotonic() + 1)))
        t.start()
        wait_until(lambda: value(local(), "slots_in_use") == 1, 5, "one slot in use")
        t.join()
        ran[0][1].release()
        assert value(local(), "slots_in_use") == 0
    finally:
        metrics.watch(None)
        ex.stop()
    assert not any(name == P + "slots" for name, _ in local())


def test_unit_engine_failures_count_as_engine_errors():
    before = local()
    record = protocol.Record(units=["a", "b"], utype="score")
    record.fail("a", "EngineUnavailable", "EngineUnavailable: cannot connect to the engine")
    metrics.call_done("runCostFunctions", "unit_errors", 0.01, record)
    after = local()
    assert value(after, "engine_errors_total", source="units") - value(before, "engine_errors_total", source="units") == 1
    assert value(after, "unit_calls_total", unit="b", type="score") - value(before, "unit_calls_total", unit="b", type="score") == 1


def test_snapshot_age_grows_from_the_read_time():
    try:
        metrics.set_snapshot(7, time.time() - 30)
        m = local()
        assert 30 <= value(m, "snapshot_age_seconds") < 40 and value(m, "snapshot_version") == 7
    finally:
        metrics._state.snapshot = None  # as before any snapshot: no age to report


def test_names_follow_the_prometheus_conventions():
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        assert family.name.startswith((P, "process_")), family.name
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name


@pytest.fixture(scope="module")
def exported():
    """Every series name the proxy can export (the executor's and the snapshot's included)."""
    ex = executor_support.make(PLUGINS / "basic")
    try:
        metrics.watch(ex)
        metrics.set_snapshot(1, time.time())
        families = list(text_string_to_metric_families(metrics.exposition().decode()))
    finally:
        metrics.watch(None)
        metrics._state.snapshot = None
        ex.stop()
    # Counters and histograms with no sample yet are exported without samples: their series names.
    names = {s.name for f in families for s in f.samples} | {f.name + "_total" for f in families if f.type == "counter"}
    return names | {f"{f.name}_{end}" for f in families if f.type == "histogram" for end in ("bucket", "sum", "count")}


def mentioned(text):
    return set(re.findall(r"\b(?:ovirt_scheduler_proxy|process)_[a-z_]*[a-z]", text))


def test_the_dashboard_uses_only_metrics_the_proxy_exports(exported):
    dashboard = json.loads(DASHBOARD.read_text())
    used = mentioned(" ".join(t["expr"] for panel in dashboard["panels"] for t in panel["targets"]))
    assert used and used <= exported, sorted(used - exported)
    assert {P + "calls_total", P + "unit_failures_total", P + "snapshot_age_seconds"} <= used


def test_the_readme_names_only_metrics_the_proxy_exports(exported):
    named = mentioned((ROOT / "README.md").read_text())
    histograms = {n[:-len("_count")] for n in exported if n.endswith("_count")}
    assert named and named <= exported | histograms, sorted(named - exported - histograms)


def test_a_warm_worker_shows_in_its_gauge():
    ex = executor_support.make(PLUGINS / "warm")
    try:
        metrics.watch(ex)
        assert executor_support.call(ex, "reused", "filter", [["h1"], "vm", {}])
        assert value(local(), "workers_warm") == 1
    finally:
        ex.stop()
