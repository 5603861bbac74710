"""Shared fixtures. The simulated-engine fixtures live in tests/sim_fixtures.py."""
pytest_plugins = ["tests.sim_fixtures"]
