"""The command line: `list` (a folder, or a running proxy), `config`, and `serve`'s start-up:
errors (exit codes, messages) and the engine check."""
import json
import os
import re
import shutil
import signal
import time
import xmlrpc.client

import pytest
import tomllib

from proxy import cli as cli_mod
from proxy import config
from tests.support import PLUGINS, ROOT, alive, execution_processes, free_port, run_cli, wait_until


cli = run_cli


def test_list_shows_units_and_rejections():
    r = cli("list", "--plugins", str(PLUGINS / "misbehaving"), "--timeout", "1")
    assert r.returncode == 0, r.stderr
    assert "balance  hangs  (runtime.py)" in r.stdout
    assert "Rejected:" in r.stdout and "import_hangs.py: did not finish importing" in r.stdout
    assert "bad_params.py:bad_params: properties_validation" in r.stdout
    data = json.loads(cli("list", "--plugins", str(PLUGINS / "basic"), "--json").stdout)
    assert {"type": "filter", "name": "drop_marked", "module": "units.py",
            "description": "Drops hosts whose id contains the drop_marker property (default 'bad').",
            "properties": "drop_marker=.*", "balancing_limits": True, "reuse_worker": False} in data["units"]
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


def test_a_metrics_port_in_use_exits_2_naming_the_key(start_proxy):
    p = start_proxy(PLUGINS / "basic")
    taken = p.url.rsplit(":", 1)[1].strip("/")
    r = cli("serve", "--port", "0", "--metrics-port", taken, "--plugins", str(PLUGINS / "basic"))
    assert r.returncode == 2 and f"server.metrics_port: cannot listen on 127.0.0.1:{taken}" in r.stderr


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


@pytest.mark.parametrize("how", ["flag", "config"])
def test_a_log_file_in_a_missing_folder_exits_2_naming_log_file(tmp_path, how):
    missing = tmp_path / "missing" / "x.log"
    path = tmp_path / "proxy.toml"
    path.write_text(f'[log]\nfile = "{missing}"\n')
    args = ["--log-file", str(missing)] if how == "flag" else ["--config", str(path)]
    r = cli("serve", "--port", "0", *args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"ovirt-scheduler-proxy: configuration error: log.file: cannot open {missing}: "
                               "No such file or directory")
    assert "Traceback" not in r.stderr


def test_list_server_shows_what_the_running_proxy_serves(start_proxy):
    p = start_proxy(PLUGINS / "basic")
    r = cli("list", "--server", p.url)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"Policy units served by {p.url}:\n")
    assert "  filter   drop_marked\n           Drops hosts whose id contains" in r.stdout
    assert "(units.py)" not in r.stdout  # discover does not say which module
    data = json.loads(cli("list", "--server", p.url, "--json").stdout)
    assert data["server"] == p.url
    assert {"type": "filter", "name": "drop_marked", "properties": "drop_marker=.*",
            "description": "Drops hosts whose id contains the drop_marker property (default 'bad')."} in data["units"]
    folder = json.loads(cli("list", "--plugins", str(PLUGINS / "basic"), "--json").stdout)
    assert sorted(u["name"] for u in data["units"]) == sorted(u["name"] for u in folder["units"])


def test_list_server_names_an_unreachable_proxy():
    url = f"http://127.0.0.1:{free_port()}/"
    r = cli("list", "--server", url)
    assert r.returncode == 1
    assert f"cannot list the units of the proxy at {url}: [Errno 111] Connection refused; is it running" in r.stderr


def test_serve_checks_the_engine_at_start_and_serves_anyway(start_proxy, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/ovirt-engine/api"
    config_file = tmp_path / "proxy.toml"
    config_file.write_text(f'[engine]\nurl = "{url}"\n')
    p = start_proxy(PLUGINS / "basic", "--config", str(config_file), env={"OVIRT_ENGINE_PASSWORD": "pw"})
    line = wait_until(lambda: re.search(r"ERROR proxy\[\d+\]: engine check failed .*", p.log()), 30,
                      "the engine check's log line")
    assert f"cannot connect to the engine at {url}" in line.group(0)
    assert xmlrpc.client.ServerProxy(p.url).discover()["filters"]


def test_serve_logs_a_good_engine_check(start_proxy):
    p = start_proxy(PLUGINS / "basic", "--simulate", str(ROOT / "config" / "cluster-small.json"))
    line = wait_until(lambda: re.search(r"INFO proxy\[\d+\]: engine check: (.*)", p.log()), 30,
                      "the engine check's log line")
    assert line.group(1).endswith("logged in as admin@internal; oVirt Engine (simulated) 4.5-sim; read host host1")


def test_an_engine_check_past_its_time_is_logged_and_never_holds_the_server(monkeypatch, caplog, tmp_path):
    """The check runs in a child bounded by ENGINE_CHECK_TIMEOUT: a check that does not finish
    in time (here: the child cannot even import the SDK in 0.1 s) costs one log line, never a
    server thread for ever."""
    monkeypatch.setattr(cli_mod, "ENGINE_CHECK_TIMEOUT", 0.1)
    cfg = config.load(None, {"engine.url": f"http://127.0.0.1:{free_port()}/ovirt-engine/api"})
    started = time.monotonic()
    cli_mod._check_engine(cfg, "pw")
    assert time.monotonic() - started < 5
    assert "engine check: it did not finish" in caplog.text and "timed out after 0.1 seconds" in caplog.text


def test_the_server_never_loads_the_sdk(start_proxy):
    """The engine check runs in a child, units in workers, reads in the fork server's
    children: the SDK (~19 MiB) stays out of the server, whose memory nothing shares."""
    p = start_proxy(ROOT / "balancers", "--simulate", str(ROOT / "config" / "cluster-small.json"))
    wait_until(lambda: "engine check: " in p.log(), 30, "the engine check's log line")
    hosts = [h["id"] for h in json.loads((ROOT / "config" / "cluster-small.json").read_text())["hosts"]]
    assert xmlrpc.client.ServerProxy(p.url).runLoadBalancing("host_memory_balance", hosts, {})["result_code"] == 0
    with open(f"/proc/{p.proc.pid}/maps") as f:
        assert "ovirtsdk4" not in f.read()


def test_a_slow_reload_never_delays_a_stop(start_proxy, tmp_path):
    plugins = tmp_path / "plugins"
    shutil.copytree(PLUGINS / "basic", plugins)
    p = start_proxy(plugins, "--timeout", "30")
    server = p.proc.pid
    (plugins / "hangs_on_import.py").write_text("import time\ntime.sleep(3600)\n")
    os.kill(server, signal.SIGHUP)  # its trial import hangs until plugins.timeout (30 s)
    below = wait_until(lambda: len(d := execution_processes(server)) > 6 and d, 10,
                       "the reload's fork server to start importing")
    start = time.monotonic()
    assert p.stop(signal.SIGTERM, timeout=10) == 0
    assert time.monotonic() - start < 5
    assert "stopped" in p.log()
    assert not [pid for pid in below if alive(pid)]  # the reload's fork server and its imports too
