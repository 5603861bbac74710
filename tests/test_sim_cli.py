"""proxy.sim.cli: `ovirt-scheduler-proxy simulate`, run as a command."""

import hashlib
import json
import selectors
import signal
import subprocess
import sys

import ovirtsdk4 as sdk
import pytest

from proxy.sim import cli
from proxy.sim.generate import generate_snapshot
from proxy.snapshot import load_snapshot
from tests.support import ROOT

SIMULATE = [sys.executable, "-m", "proxy", "simulate"]


def first_line(proc, seconds):
    """The first line `proc` prints, or an AssertionError once `seconds` have passed."""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=seconds):
            raise AssertionError(f"nothing printed within {seconds} s")
    return proc.stdout.readline().strip()


def test_cli_serves_until_sigterm(tmp_path):
    password_file = tmp_path / "pw"
    password_file.write_text("s3cret\n")
    proc = subprocess.Popen([*SIMULATE, "--snapshot", str(ROOT / "config" / "cluster-small.json"),
                             "--host", "127.0.0.1", "--port", "0", "--password-file",
                             str(password_file)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = first_line(proc, 30)
        assert url.startswith("http://127.0.0.1:") and url.endswith("/ovirt-engine/api")
        with sdk.Connection(url=url, username="admin@internal", password="s3cret") as conn:
            assert len(conn.system_service().hosts_service().list()) == 4
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_writes_a_generated_snapshot(tmp_path):
    out = tmp_path / "big.json"
    done = subprocess.run([*SIMULATE, "--generate", "12", "150", "--out", str(out), "--seed", "3"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert load_snapshot(out) == generate_snapshot(12, 150, seed=3)


def test_generate_writes_affinity_groups_when_asked(tmp_path):
    out = tmp_path / "groups.json"
    assert cli.main(["--generate", "8", "60", "--affinity-groups", "5", "--out", str(out)]) == 0
    assert load_snapshot(out) == generate_snapshot(8, 60, affinity_groups=5)
    assert len(json.loads(out.read_text())["affinity_groups"]) == 5


def test_without_groups_a_written_snapshot_keeps_its_exact_text(tmp_path):
    # The hash of this file as written before affinity groups existed: they must not change
    # the snapshots (and benchmark figures) people already have for a seed.
    out = tmp_path / "g.json"
    assert cli.main(["--generate", "6", "40", "--seed", "5", "--out", str(out)]) == 0
    assert "affinity_groups" not in json.loads(out.read_text())
    assert hashlib.sha256(out.read_bytes()).hexdigest() == \
        "866a9d6f857c08ca2f07cf860bc0e0fa07759f086e9312ebe587151d0dfa322b"


def test_a_broken_snapshot_is_exit_status_2_with_the_reason(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"clusters": [}')
    assert cli.main(["--snapshot", str(bad)]) == 2
    assert "bad.json: not valid JSON" in capsys.readouterr().err


def test_out_needs_generate(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["--snapshot", "x.json", "--out", str(tmp_path / "y.json")])
    assert caught.value.code == 2
    assert "--out needs --generate" in capsys.readouterr().err
    assert not (tmp_path / "y.json").exists()
