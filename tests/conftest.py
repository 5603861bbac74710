"""Fixtures: a real proxy process per test, and the simulated engine (tests/sim_fixtures.py).

Helpers that several test files use live in tests/support.py, a plain module.
"""
import pytest

from tests.support import PLUGINS, ProxyProcess

pytest_plugins = ["tests.sim_fixtures"]


@pytest.fixture(autouse=True)
def _state_directory(monkeypatch, tmp_path):
    """Proxies a test starts keep their journal (journal.path) in the test's folder."""
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))


@pytest.fixture
def start_proxy(tmp_path):
    started = []

    def start(plugins=PLUGINS / "basic", *args, env=None, nofile=None):
        p = ProxyProcess(tmp_path, plugins, *args, env=env, nofile=nofile)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()
