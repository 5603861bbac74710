"""Fixtures around the simulated engine (registered by tests/conftest.py).

sim_engine: a started SimulatedEngine serving config/cluster-small.json on a free loopback
port, stopped after the test.  small_snapshot: that snapshot (validated, defaults filled in).
bound_engine: sim_engine with proxy.engine bound to it (its URL and credentials, no
deadline), unbound after the test.
"""

from pathlib import Path

import pytest

from proxy import engine
from proxy.simengine import SimulatedEngine
from proxy.simsnapshot import load_snapshot

SMALL_SNAPSHOT = Path(__file__).resolve().parent.parent / "config" / "cluster-small.json"


@pytest.fixture
def small_snapshot():
    return load_snapshot(SMALL_SNAPSHOT)


@pytest.fixture
def sim_engine(small_snapshot):
    sim = SimulatedEngine(small_snapshot).start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def bound_engine(sim_engine):
    engine.bind(engine.EngineSettings(url=sim_engine.url, user=sim_engine.user,
                                      password=sim_engine.password))
    try:
        yield sim_engine
    finally:
        engine.bind(None)
