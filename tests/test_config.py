"""Configuration: one table, TOML file, flags, and errors that name the key."""
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from proxy import config
from proxy.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path, text):
    p = tmp_path / "proxy.toml"
    p.write_text(text)
    return p


def test_defaults_match_the_engine_defaults():
    cfg = config.load()
    assert (cfg.server.host, cfg.server.port) == ("127.0.0.1", 18781)
    assert cfg.plugins.timeout == 30.0
    assert cfg.plugin_folder == ROOT / "balancers"


def test_shipped_default_file_is_generated_from_the_table():
    assert (ROOT / "config" / "proxy.toml").read_text() == config.render_default_file()
    # and it loads to exactly the defaults
    assert config.load(ROOT / "config" / "proxy.toml").values == config.load().values


def test_file_then_flags(tmp_path):
    p = write(tmp_path, '[server]\nport = 9000\n[plugins]\ntimeout = 5\nfolder = "units"\n')
    cfg = config.load(p, {"server.port": "9001"})
    assert cfg.server.port == 9001
    assert cfg.plugins.timeout == 5.0
    assert cfg.plugin_folder == tmp_path / "units"  # relative to the file, not the cwd


@pytest.mark.parametrize("text, words", [
    ('[server]\nport = 70000\n', ["server.port", "between 1 and 65535"]),
    ('[server]\nport = "18781"\n', ["server.port", "whole number"]),
    ('[plugins]\ntimeout = -1\n', ["plugins.timeout", "greater than 0"]),
    ('[plugins]\ntimout = 3\n', ["timout", "timeout"]),
    ('[sever]\nport = 1\n', ["[sever]", "server"]),
    ('[log]\nlevel = "LOUD"\n', ["log.level", "DEBUG"]),
    ('[engine]\nurl = "engine.example.com"\n', ["engine.url", "https://"]),
    ('[engine]\ninsecure = "yes"\n', ["engine.insecure", "true or false"]),
    ('[server\nport = 1\n', ["not valid TOML"]),
    ('[server]\nmetrics_port = -1\n', ["server.metrics_port", "(0: off)"]),
    ('[log]\nformat = "xml"\n', ["log.format", "one of text, json"]),
    ('[server]\nallow = "192.0.2.10"\n', ["server.allow", "a list of strings"]),
    ('[server]\nallow = [1]\n', ["server.allow", "a list of strings"]),
    ('[server]\nallow = ["192.0.2.10/24"]\n', ["server.allow", "write the network (192.0.2.0/24)"]),
    ('[server]\nmax_connections = 0\n', ["server.max_connections", "at least 1"]),
    ('[server]\nread_timeout = 0\n', ["server.read_timeout", "greater than 0"]),
    ('[balancing]\ncooldown_minutes = -5\n', ["balancing.cooldown_minutes", "0 or greater (0: no cooldown)"]),
    ('[balancing]\ncooldown_minutes = "1h"\n', ["balancing.cooldown_minutes", "expected a number"]),
    ('[balancing]\nmax_migrations_per_hour = -1\n', ["balancing.max_migrations_per_hour", "(0: no budget)"]),
    ('[balancing]\nmax_migrations_per_hour = 2.5\n', ["balancing.max_migrations_per_hour", "a whole number"]),
    ('[balancing]\nbudget = 3\n', ["unknown key 'budget' in [balancing]", "max_migrations_per_hour"]),
])
def test_bad_values_name_the_key(tmp_path, text, words):
    with pytest.raises(ConfigError) as e:
        config.load(write(tmp_path, text))
    for w in words:
        assert w in str(e.value)


def test_the_balancing_settings_and_their_defaults(tmp_path):
    assert (config.load().balancing.cooldown_minutes, config.load().balancing.max_migrations_per_hour) == (60.0, 20)
    cfg = config.load(write(tmp_path, '[balancing]\ncooldown_minutes = 0\nmax_migrations_per_hour = 0\n'))
    assert (cfg.balancing.cooldown_minutes, cfg.balancing.max_migrations_per_hour) == (0.0, 0)


def test_the_allow_list_loads_as_an_immutable_tuple(tmp_path):
    cfg = config.load(write(tmp_path, '[server]\nallow = ["192.0.2.10", "10.1.0.0/16"]\n'))
    assert cfg.server.allow == ("192.0.2.10", "10.1.0.0/16")
    assert config.load().server.allow == () and "allow = []" in config.render_default_file()


def test_bad_flag_names_the_flag():
    with pytest.raises(ConfigError, match=r"server.port \(flag --port\): expected a number"):
        config.load(None, {"server.port": "eighty"})


def test_missing_file():
    with pytest.raises(ConfigError, match="does not exist"):
        config.load("/nonexistent/proxy.toml")


def test_password_file(tmp_path, monkeypatch):
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    assert config.load(write(tmp_path, '[engine]\npassword_file = "pw"\n')).engine_password() == "s3cret"
    monkeypatch.setenv("OVIRT_ENGINE_PASSWORD", "from-env")
    assert config.load().engine_password() == "from-env"
    with pytest.raises(ConfigError, match="engine.password_file"):
        config.load(write(tmp_path, '[engine]\npassword_file = "missing"\n')).engine_password()


def test_cli_exits_2_on_a_bad_config(tmp_path):
    p = write(tmp_path, '[plugins]\nconcurrency = 0\n')
    r = subprocess.run([sys.executable, "-m", "proxy", "serve", "--config", str(p)],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2
    assert "plugins.concurrency" in r.stderr and "at least 1" in r.stderr


def test_the_readme_settings_table_is_the_one_the_settings_table_renders():
    readme = (ROOT / "README.md").read_text()
    assert config.render_settings_table() in readme, \
        "README.md's settings table is stale: paste config.render_settings_table() into it"


def test_a_loaded_config_cannot_be_changed_in_place():
    cfg = config.load()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.plugins.timeout = 1.0
    with pytest.raises(AttributeError, match="read-only"):
        cfg.plugins = None
    changed = cfg.replace({"plugins.timeout": 2})
    assert (changed.plugins.timeout, cfg.plugins.timeout) == (2.0, 30.0)
    with pytest.raises(ConfigError, match="plugins.concurrency"):
        cfg.replace({"plugins.concurrency": 0})
