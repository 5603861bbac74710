"""`check`: one line per finding, exit code 0/1; the good case against the simulated engine,
and each kind of bad configuration and engine."""
import io
import subprocess
import sys

import pytest

from proxy import check, config
from proxy.sim import SimulatedEngine
from tests.support import PLUGINS, ROOT, free_port


def write_config(tmp_path, sim=None, **engine):
    """A config file on the basic plugins; [engine] from the simulated engine, then `engine`."""
    values = {"url": sim.url, "user": sim.user} if sim else {}
    if sim:
        (tmp_path / "password").write_text(sim.password + "\n")
        values["password_file"] = "password"
    values.update(engine)
    lines = ["[plugins]", f'folder = "{PLUGINS / "basic"}"', "[engine]"]
    lines += [f'{k} = "{v}"' for k, v in values.items()]
    path = tmp_path / "proxy.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def checked(path, overrides=None):
    out = io.StringIO()
    code = check.run(path, overrides or {}, out=out)
    return code, out.getvalue().splitlines()


def test_a_good_configuration_and_engine_pass_every_check(tmp_path, sim_engine):
    path = write_config(tmp_path, sim_engine)
    r = subprocess.run([sys.executable, "-m", "proxy", "check", "--config", str(path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"ok    config: {path} loads"
    assert lines[1] == "ok    log: log.file is empty: standard error (the journal under systemd)"
    assert lines[2].startswith(f"ok    plugins: 11 unit(s) in {PLUGINS / 'basic'}: legacy_balance (balance), ")
    assert lines[3] == (f"ok    engine: {sim_engine.url}: logged in as admin@internal; "
                        "oVirt Engine (simulated) 4.5-sim; read host host1")
    assert lines[4:] == ["Everything checked is ok."]
    assert r.stderr == ""


def test_the_check_logs_out_of_its_own_session(tmp_path, sim_engine):
    path = write_config(tmp_path, sim_engine)
    assert checked(path)[0] == 0
    assert (sim_engine.logins, sim_engine.logouts) == (1, 1)


@pytest.mark.parametrize("engine, words", [
    ({"url": ""}, "engine.url is empty"),
    ({"password": "wrong"}, "refused the login for admin@internal"),
    ({"port": "closed"}, "cannot connect to the engine at http://127.0.0.1:"),
    ({"ca_file": "missing-ca.pem"}, "missing-ca.pem does not exist; put the engine's CA there"),
    ({"password_file": "no-such-file"}, "engine.password_file: cannot read"),
    ({"password_file": ""}, "no engine password"),
    ({"tls": True}, "TLS with the engine at https://127.0.0.1:"),
])
def test_each_wrong_engine_setting_is_one_failed_finding(tmp_path, sim_engine, monkeypatch, engine, words):
    monkeypatch.delenv("OVIRT_ENGINE_PASSWORD", raising=False)
    if engine.pop("password", None):
        (tmp_path / "wrong").write_text("not the password")
        engine["password_file"] = "wrong"
    if engine.pop("port", None):
        engine["url"] = f"http://127.0.0.1:{free_port()}/ovirt-engine/api"
    if engine.pop("tls", None):  # an https URL to a plain-HTTP engine: the TLS handshake fails
        engine["url"] = sim_engine.url.replace("http://", "https://")
    code, lines = checked(write_config(tmp_path, sim_engine, **engine))
    assert code == 1
    [failed] = [line for line in lines if line.startswith("FAIL")]
    assert failed.startswith("FAIL  engine: ") and words in failed, lines
    assert lines[-1] == "1 problem(s) found."


def test_a_bad_config_file_stops_at_the_config_finding(tmp_path):
    path = tmp_path / "proxy.toml"
    path.write_text("[plugins]\nconcurrency = 0\n")
    assert checked(path) == (1, ["FAIL  config: plugins.concurrency (in %s): must be at least 1, got 0" % path,
                                 "1 problem(s) found."])


def test_a_log_file_in_a_missing_folder_fails(tmp_path, sim_engine):
    path = write_config(tmp_path, sim_engine)
    code, lines = checked(path, {"log.file": str(tmp_path / "missing" / "proxy.log")})
    assert code == 1
    assert f"FAIL  log: log.file: the folder {tmp_path / 'missing'} does not exist" in lines[1]
    code, lines = checked(path, {"log.file": str(tmp_path / "proxy.log")})
    assert (code, lines[1]) == (0, f"ok    log: log.file {tmp_path / 'proxy.log'} is writable")


def test_rejected_plugins_fail_with_the_reasons_list_gives(tmp_path, sim_engine):
    path = write_config(tmp_path, sim_engine)
    code, lines = checked(path, {"plugins.folder": str(PLUGINS / "misbehaving"), "plugins.timeout": "1"})
    assert code == 1
    assert "FAIL  plugins: rejected import_hangs.py: did not finish importing within 1 s (plugins.timeout); killed" in lines
    assert any(line.startswith("FAIL  plugins: rejected bad_params.py:bad_params: properties_validation") for line in lines)
    assert lines[-2].startswith("ok    engine: ")


def test_an_empty_or_missing_plugin_folder_fails(tmp_path, sim_engine):
    path = write_config(tmp_path, sim_engine)
    (tmp_path / "empty").mkdir()
    _, lines = checked(path, {"plugins.folder": str(tmp_path / "empty")})
    assert f"FAIL  plugins: no policy unit in {tmp_path / 'empty'}; set plugins.folder (--plugins)" in lines
    _, lines = checked(path, {"plugins.folder": str(tmp_path / "missing")})
    assert f"FAIL  plugins: plugins.folder: {tmp_path / 'missing'} is not a folder" in lines


def test_an_engine_without_hosts_is_reported(small_snapshot):
    with SimulatedEngine(dict(small_snapshot, hosts=[], vms=[])) as sim:
        cfg = config.load().replace({"engine.url": sim.url})
        finding = check.engine_finding(cfg, sim.password)
    assert finding.ok and "but admin@internal sees no host" in finding.text
