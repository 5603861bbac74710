"""Fixtures and helpers around the simulated engine (the fixtures are registered by tests/conftest.py).

sim_engine: a started SimulatedEngine serving config/cluster-small.json on a free loopback
port, stopped after the test.  small_snapshot: that snapshot (validated, defaults filled in).
affinity_engine and affinity_snapshot: the same for config/cluster-affinity.json (affinity
groups, a label and events).
bound_engine: sim_engine with proxy.engine bound to it (its URL and credentials, no
deadline), unbound after the test.  connection(), raw() and login() talk to a simulated
engine through the SDK or plain HTTP.
"""

import http.client
import json
from pathlib import Path

import ovirtsdk4 as sdk
import pytest

from proxy import engine
from proxy.sim import SimulatedEngine
from proxy.snapshot import load_snapshot

SMALL_SNAPSHOT = Path(__file__).resolve().parent.parent / "config" / "cluster-small.json"
AFFINITY_SNAPSHOT = SMALL_SNAPSHOT.with_name("cluster-affinity.json")


@pytest.fixture
def small_snapshot():
    return load_snapshot(SMALL_SNAPSHOT)


@pytest.fixture
def affinity_snapshot():
    return load_snapshot(AFFINITY_SNAPSHOT)


def _serve(snapshot):
    sim = SimulatedEngine(snapshot).start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def sim_engine(small_snapshot):
    yield from _serve(small_snapshot)


@pytest.fixture
def affinity_engine(affinity_snapshot):
    yield from _serve(affinity_snapshot)


@pytest.fixture
def bound_engine(sim_engine):
    engine.bind(engine.EngineSettings(url=sim_engine.url, user=sim_engine.user,
                                      password=sim_engine.password))
    try:
        yield sim_engine
    finally:
        engine.bind(None)


def connection(sim, **kwargs):
    """An SDK connection to `sim` with its credentials; kwargs override them."""
    return sdk.Connection(**{"url": sim.url, "username": sim.user, "password": sim.password,
                             **kwargs})


def names(entities):
    return sorted(e.name for e in entities)


def by_name(snapshot, kind):
    return {e["name"]: e for e in snapshot[kind]}


def raw(sim, method, path, *, token=None, body=None, headers=None):
    """(status, headers, body) of one plain HTTP request."""
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
    headers = dict(headers or {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, r.headers, data


def login(sim, password=None):
    """(status, headers, JSON reply) of an SSO password login."""
    status, headers, body = raw(
        sim, "POST", "/ovirt-engine/sso/oauth/token",
        body=f"grant_type=password&scope=ovirt-app-api&username=admin%40internal"
             f"&password={password or sim.password}",
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    return status, headers, json.loads(body)
