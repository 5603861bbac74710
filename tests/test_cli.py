"""The command line: `list`, `config`, and `serve`'s start-up errors (exit codes, messages)."""
import json
import subprocess
import sys

import tomllib

from proxy import config
from tests.support import PLUGINS, ROOT


def cli(*args):
    return subprocess.run([sys.executable, "-m", "proxy", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_list_shows_units_and_rejections():
    r = cli("list", "--plugins", str(PLUGINS / "misbehaving"), "--timeout", "1")
    assert r.returncode == 0, r.stderr
    assert "balance  hangs  (runtime.py)" in r.stdout
    assert "Rejected:" in r.stdout and "import_hangs.py: did not finish importing" in r.stdout
    assert "bad_params.py:bad_params: properties_validation" in r.stdout
    data = json.loads(cli("list", "--plugins", str(PLUGINS / "basic"), "--json").stdout)
    assert {"type": "filter", "name": "drop_marked", "module": "units.py",
            "description": "Drops hosts whose id contains the drop_marker property (default 'bad').",
            "properties": "drop_marker=.*"} in data["units"]
    assert not any(u["module"].startswith("_") for u in data["units"])


def test_list_shows_the_shipped_balancers_by_default():
    r = cli("list")
    assert r.returncode == 0, r.stderr
    assert "host_memory_balance" in r.stdout and "Rejected" not in r.stdout


def test_port_in_use_is_a_clear_error(start_proxy):
    p = start_proxy(PLUGINS / "basic")
    port = p.url.rsplit(":", 1)[1].strip("/")
    r = cli("serve", "--port", port, "--plugins", str(PLUGINS / "basic"))
    assert r.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in r.stderr


def test_config_prints_the_default_file_which_loads_to_the_defaults():
    r = cli("config")
    assert r.returncode == 0 and r.stdout == config.render_default_file()
    assert tomllib.loads(r.stdout)["plugins"]["timeout"] == 30.0


def test_a_missing_plugin_folder_is_a_configuration_error(tmp_path):
    r = cli("serve", "--plugins", str(tmp_path / "missing"), "--port", "0")
    assert r.returncode == 2 and "plugins.folder" in r.stderr and "is not a folder" in r.stderr


def test_a_bad_snapshot_file_is_a_configuration_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"clusters": [], "hosts": []}')
    r = cli("serve", "--snapshot", str(bad), "--port", "0")
    assert r.returncode == 2 and "--snapshot" in r.stderr and "at least one cluster" in r.stderr


def test_snapshot_and_simulate_cannot_be_combined():
    r = cli("serve", "--snapshot", "a.json", "--simulate", "b.json")
    assert r.returncode == 2 and "not allowed with argument" in r.stderr
