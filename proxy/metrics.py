"""Prometheus metrics: what the proxy counts, and the few calls that feed them.

Every metric is in REGISTRY, which health.py's listener serves at /metrics (server.metrics_port),
and every name starts with ovirt_scheduler_proxy_ (plus the client library's process_*
metrics of the server process).  The feeds, one or two calls each:

    call_done(method, outcome, seconds, record)  server.py, once per XML-RPC call
    units_timed(calls, replies)                   executor.py, once per batch of unit calls
    engine_request(source, failed)                each engine operation the proxy process makes
    set_snapshot(version, read_at)                whoever reads the engine's state for the units
    watch(executor)                               cli.py; slots, workers and units are read from
                                                  executor.status() when scraped, never pushed

Units reach the engine from inside their worker processes, where the proxy does not see
their requests: what it sees is a unit call failing with EngineUnavailable, counted as
engine_errors_total{source="units"}.  engine_requests_total counts only the proxy's own
engine operations (the start-up check; one login, API and host read is one operation).
"""

import numbers
import time

from prometheus_client import (CONTENT_TYPE_LATEST as CONTENT_TYPE, CollectorRegistry, Counter, Histogram,
                               ProcessCollector, disable_created_metrics, generate_latest)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# A _created series per label set doubles what is scraped, and Prometheus's own text
# format parser ignores it; rate() over the _total series is what dashboards use.
disable_created_metrics()
PREFIX = "ovirt_scheduler_proxy_"
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # the server process's CPU, memory, open files (process_*)

# Engine calls take milliseconds; a unit may take up to plugins.timeout (30 s by default).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# The label for a unit name the proxy does not serve: names come from the caller, and a
# label per name sent would let any caller grow the metrics without bound.
UNKNOWN_UNIT = "_unknown_"
OUTCOMES = ("ok", "unit_errors", "bad_request", "internal_error")

CALLS = Counter(PREFIX + "calls", "XML-RPC calls by method and outcome: ok, unit_errors (an answer "
                "with plugin_errors or errors), bad_request (a fault) or internal_error.",
                ["method", "outcome"], registry=REGISTRY)
CALL_SECONDS = Histogram(PREFIX + "call_duration_seconds", "Time from a call's body read to its answer.",
                         ["method"], buckets=BUCKETS, registry=REGISTRY)
UNIT_CALLS = Counter(PREFIX + "unit_calls", "Unit calls requested, by unit and type.",
                     ["unit", "type"], registry=REGISTRY)
UNIT_FAILURES = Counter(PREFIX + "unit_failures", "Failed unit calls by kind (the UnitError class name).",
                        ["unit", "type", "kind"], registry=REGISTRY)
UNIT_TIMEOUTS = Counter(PREFIX + "unit_timeouts", "Unit calls killed at plugins.timeout.",
                        ["unit", "type"], registry=REGISTRY)
UNIT_SECONDS = Histogram(PREFIX + "unit_duration_seconds",
                         "Time from a unit call's start in its worker to its answer (or its kill).",
                         ["unit", "type"], buckets=BUCKETS, registry=REGISTRY)
ENGINE_REQUESTS = Counter(PREFIX + "engine_requests", "Engine operations the proxy process made itself.",
                          ["source"], registry=REGISTRY)
ENGINE_ERRORS = Counter(PREFIX + "engine_errors", "Failed engine operations: the proxy's own, and unit "
                        "calls that failed with EngineUnavailable (source=units).", ["source"],
                        registry=REGISTRY)
BALANCE_HELD = Counter(PREFIX + "balance_held", "Balance calls answered with no migration because of the "
                       "balancing limits: reason=budget (the unit was not run), cooldown (its VM was "
                       "dropped).", ["reason"], registry=REGISTRY)


def call_done(method, outcome, seconds, record):
    """One XML-RPC call: `method` already narrowed to the published names (or "other"),
    `outcome` one of OUTCOMES, `record` the call's protocol.Record."""
    CALLS.labels(method, outcome).inc()
    CALL_SECONDS.labels(method).observe(seconds)
    if not record.utype:
        return  # discover and introspection run no unit
    unknown = {name for name, kind in record.kinds if kind == "UnitNotFound"}
    for name in record.units:
        UNIT_CALLS.labels(UNKNOWN_UNIT if name in unknown else name, record.utype).inc()
    for name, kind in record.kinds:
        unit = UNKNOWN_UNIT if name in unknown else name
        UNIT_FAILURES.labels(unit, record.utype, kind).inc()
        if kind == "UnitTimeout":
            UNIT_TIMEOUTS.labels(unit, record.utype).inc()
        elif kind == "EngineUnavailable":
            ENGINE_ERRORS.labels("units").inc()


def units_timed(calls, replies):
    """The time each unit of a batch took (executor.Call, generation.Reply with .seconds)."""
    for call, reply in zip(calls, replies):
        if reply.seconds is not None:
            UNIT_SECONDS.labels(call.unit.name, call.unit.type).observe(reply.seconds)


def balance_held(reason):
    BALANCE_HELD.labels(reason).inc()


def engine_request(source, failed):
    ENGINE_REQUESTS.labels(source).inc()
    if failed:
        ENGINE_ERRORS.labels(source).inc()


def set_snapshot(version, read_at):
    """The engine state the units see was read at `read_at` (time.time()); `version` is its
    number.  snapshot_age_seconds grows from then on, until the next set_snapshot."""
    _state.snapshot = (version, read_at)


def watch(executor):
    """Report this executor's slots, workers and units (None: stop reporting them)."""
    _state.executor = executor


def exposition():
    """The metrics in Prometheus's text format."""
    return generate_latest(REGISTRY)


def worker_processes(pid):
    """Live children of process pid (the fork server's workers, trial imports and the
    grandchildren it reaps), from /proc; None when the kernel does not list them."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return len(f.read().split())
    except OSError:
        return None


class _State(Collector):
    """Values read when scraped: the executor's state, the snapshot's age."""

    def __init__(self):
        self.executor = None
        self.snapshot = None

    def describe(self):
        return []  # nothing to check at registration; the names are fixed below

    def collect(self):
        if self.snapshot is not None:
            version, read_at = self.snapshot
            yield _gauge("snapshot_age_seconds", "Seconds since the engine state the units see was read.",
                         max(0.0, time.time() - read_at))
            if isinstance(version, numbers.Real):
                yield _gauge("snapshot_version", "Number of the engine state the units see.", version)
        executor = self.executor
        if executor is None:
            return
        s = executor.status()
        yield _gauge("slots", "Unit calls that may run at once (plugins.concurrency).", s["slots"])
        yield _gauge("slots_in_use", "Unit calls running now.", s["slots_in_use"])
        yield _gauge("fork_server_up", "1 while the fork server runs.", int(s["fork_server_alive"]))
        yield _gauge("workers_spare", "Forked workers waiting for a call.", s["spare_workers"])
        yield _gauge("workers_warm", "Workers that answered a call and wait for their unit's next one "
                     "(units with reuse_worker = True).", s["warm_workers"])
        alive = worker_processes(s["fork_server_pid"]) if s["fork_server_alive"] else 0
        if alive is not None:
            yield _gauge("workers_alive", "Processes under the fork server: spare and busy workers, "
                         "trial imports, what units left behind.", alive)
        catalog = s["catalog"]
        if catalog is not None:
            yield _gauge("units_loaded", "Policy units served.", len(catalog.units))
            yield _gauge("units_rejected", "Modules or units rejected at discovery.", len(catalog.rejections))


def _gauge(name, documentation, value):
    return GaugeMetricFamily(PREFIX + name, documentation, value=value)


_state = _State()
REGISTRY.register(_state)
