"""`balance UNIT --snapshot FILE` and `balance UNIT --engine` (the simulated engine, over real
HTTP): the engine's balancing call as a dry run, hand-checked on config/cluster-small.json
(host1 has 400 MiB free; tiny1, 1 GiB, is its smallest VM)."""
import json

import pytest

from proxy import dryrun
from proxy.errors import ProxyError
from proxy.holding import load_file
from tests.support import ROOT, cli_outcome

CLUSTER = str(ROOT / "config" / "cluster-small.json")
HOSTS = [f"a0000000-0000-4000-8000-00000000000{i}" for i in (1, 2, 3, 4)]
TINY1 = "b0000000-0000-4000-8000-000000000004"


def balance(*args):
    return cli_outcome("balance", *args)


def test_host_memory_balance_moves_tiny1_to_the_three_other_hosts():
    code, out, err = balance("host_memory_balance", "--snapshot", CLUSTER, "--json")
    assert code == 0, err
    found = json.loads(out)
    assert found == {"vm": TINY1, "hosts": HOSTS[1:], "snapshot": 1, "reason": found["reason"]}
    assert found["reason"].startswith("host1 has 400 MiB free, at or under 500 MiB: move tiny1 (1024 MiB)")


def test_text_output_names_hosts_and_vm_and_migrates_nothing():
    code, out, _ = balance("host_memory_balance", "--snapshot", CLUSTER, "--prop", "minimum_host_memoryMB=500")
    assert code == 0
    assert f"decision: migrate tiny1 ({TINY1}) to one of: host2, host3, host4" in out
    assert "host1: free 400 MiB; source" in out and "nothing was migrated" in out


def test_a_lower_threshold_means_nothing_to_do_and_says_why():
    code, out, _ = balance("host_memory_balance", "--snapshot", CLUSTER, "--prop", "minimum_host_memoryMB=100",
                           "--json")
    assert code == 0
    assert json.loads(out) == {"vm": "", "hosts": [], "snapshot": 1,
                               "reason": "no host has 100 MiB free or less (minimum_host_memoryMB)"}


def test_vm_balance_and_given_hosts():
    code, out, _ = balance("vm_balance", "--snapshot", CLUSTER, "--prop", "maximum_vm_count=2",
                           "--hosts", ",".join(HOSTS[:2]), "--json")
    assert code == 0
    found = json.loads(out)
    assert found["vm"] == "" and "no host runs fewer than 2" in found["reason"]


def test_default_hosts_are_the_up_hosts_of_the_first_cluster():
    snap = load_file(CLUSTER)
    notes = []
    assert dryrun.default_hosts(snap, None, notes.append) == HOSTS
    assert notes == []
    with pytest.raises(ProxyError, match="the state has the clusters"):
        dryrun.default_hosts(snap, "nope", notes.append)


def test_properties_must_be_key_value():
    assert dryrun.properties(["a=1", "b="]) == {"a": "1", "b": ""}
    with pytest.raises(ProxyError, match="KEY=VALUE"):
        dryrun.properties(["oops"])


def engine_config(tmp_path, sim):
    """A configuration whose [engine] is the simulated engine, over real HTTP."""
    (tmp_path / "password").write_text(sim.password + "\n")
    path = tmp_path / "proxy.toml"
    path.write_text(f'[plugins]\nfolder = "{ROOT / "balancers"}"\n'
                    f'[engine]\nurl = "{sim.url}"\nuser = "{sim.user}"\npassword_file = "password"\n')
    return str(path)


@pytest.mark.e2e
def test_engine_decides_on_what_the_engine_serves(tmp_path, sim_engine):
    cfg = engine_config(tmp_path, sim_engine)
    code, out, err = balance("host_memory_balance", "--engine", "--config", cfg, "--json")
    assert code == 0, err
    found = json.loads(out)
    assert (found["vm"], found["hosts"]) == (TINY1, HOSTS[1:])
    assert found["reason"].startswith("host1 has 400 MiB free, at or under 500 MiB: move tiny1 (1024 MiB)")
    assert found["snapshot"] >= 1  # the proxy read the engine for the unit, as `serve` does

    code, out, err = balance("host_memory_balance", "--engine", "--config", cfg)
    assert code == 0, err
    assert f"decision: migrate tiny1 ({TINY1}) to one of: host2, host3, host4" in out
    assert "host1: free 400 MiB; source" in out and "nothing was migrated" in out


def test_engine_that_refuses_the_login_is_named_with_what_to_fix(tmp_path, sim_engine):
    cfg = engine_config(tmp_path, sim_engine)
    (tmp_path / "password").write_text("wrong\n")
    code, out, err = balance("host_memory_balance", "--engine", "--config", cfg)
    assert code == 1 and out == ""
    assert "refused the login for admin@internal" in err and "check [engine] user and password_file" in err
    assert "Traceback" not in err
