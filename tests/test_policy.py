"""Per-unit policy: [units.NAME] tables read, checked against the units found, and applied."""
import time

import pytest

from proxy import config, executor, policy, protocol, registry
from proxy.errors import ConfigError, UnitTimeout
from tests.executor_support import HOSTS, make
from tests.support import PLUGINS


def catalog(*units):
    return registry.Catalog(tuple(registry.Unit(t, n, "m.py", "", "") for t, n in units))


def test_tables_become_policies_with_defaults():
    got = policy.parse({"a": {"timeout": 5}, "b": {"on_failure": "closed", "shadow": "c"}, "d": {}}, "f")
    assert got["a"] == policy.UnitPolicy(timeout=5.0)
    assert got["b"] == policy.UnitPolicy(on_failure="closed", shadow="c")
    assert got["d"] == policy.UnitPolicy()


@pytest.mark.parametrize("table, words", [
    ({"a": {"timeout": 0}}, "[units.a]: timeout must be a number of seconds greater than 0"),
    ({"a": {"timeout": True}}, "[units.a]: timeout must be"),
    ({"a": {"on_failure": "maybe"}}, '[units.a]: on_failure must be "open"'),
    ({"a": {"retries": 3}}, "[units.a]: unknown key 'retries'; known: timeout, on_failure, shadow"),
    ({"a": 3}, "[units.a] must be a table"),
])
def test_a_wrong_table_is_a_config_error_naming_it(table, words):
    with pytest.raises(ConfigError) as e:
        policy.parse(table, "proxy.toml")
    assert words in str(e.value)


def test_names_are_checked_against_the_units_found():
    units = catalog(("filter", "f"), ("balance", "b"), ("balance", "b2"), ("score", "s"))
    good = policy.parse({"f": {"on_failure": "closed"}, "b": {"shadow": "b2", "timeout": 3}}, "x")
    assert policy.problems(good, units) == []
    bad = policy.parse({"nope": {}, "s": {"on_failure": "closed"}, "b": {"shadow": "f"}}, "x")
    assert policy.problems(bad, units) == [
        "[units.nope]: no unit named 'nope' was discovered (units: b, b2, f, s)",
        "[units.s]: on_failure applies to filters; s is a score unit",
        "[units.b]: shadow 'f' is not a balance unit that was discovered"]


def test_a_config_file_carries_its_unit_tables(tmp_path):
    path = tmp_path / "proxy.toml"
    path.write_text('[plugins]\ntimeout = 9\n[units.keep_all]\ntimeout = 2\n')
    cfg = config.load(path)
    assert cfg.unit("keep_all").timeout == 2.0 and cfg.unit("other") == policy.UnitPolicy()
    assert cfg.replace({"plugins.timeout": 3}).unit("keep_all").timeout == 2.0


def test_a_closed_filter_that_fails_removes_every_host():
    record = protocol.Record()
    outcomes = [("ok", ["h1", "h2"]), ("strict", protocol.FAILED)]
    assert protocol.combine_filters(["h1", "h2"], outcomes, record, closed={"strict"}) == []
    assert "on_failure is closed" in record.errors[0]
    assert protocol.combine_filters(["h1", "h2"], outcomes, protocol.Record()) == ["h1", "h2"]


def test_a_units_own_timeout_ends_its_call_first(tmp_path):
    (tmp_path / "slow.py").write_text(
        "import time\nclass slow:\n    def do_filter(self, hosts, vm, args):\n"
        "        time.sleep(30)\n        return hosts\n")
    ex = make(tmp_path)
    try:
        unit = ex.catalog().find("filter", "slow")
        started = time.monotonic()
        [value], _ = ex.run([executor.Call(unit, [HOSTS, "vm", {}], timeout=0.5)], time.monotonic() + 10)
        assert time.monotonic() - started < 2
        assert isinstance(value, UnitTimeout) and "0.5 s ([units.slow] timeout)" in str(value)
    finally:
        ex.stop()


def test_serve_refuses_a_table_for_a_unit_it_does_not_have(tmp_path):
    import subprocess
    import sys
    path = tmp_path / "proxy.toml"
    path.write_text('[units.no_such_unit]\ntimeout = 2\n')
    r = subprocess.run([sys.executable, "-m", "proxy", "serve", "--config", str(path), "--port", "0",
                        "--plugins", str(PLUGINS / "basic")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "[units.no_such_unit]: no unit named 'no_such_unit'" in r.stderr
