"""`journal` and `explain`: a real call through the served proxy, then the commands read it back."""
import json
import re
import xmlrpc.client

import pytest

from proxy import views
from proxy.errors import ProxyError
from tests.support import ROOT, run_cli, wait_until

CLUSTER = ROOT / "config" / "cluster-small.json"
HOSTS = [f"a0000000-0000-4000-8000-00000000000{i}" for i in (1, 2, 3, 4)]
TINY1 = "b0000000-0000-4000-8000-000000000004"


def cli(*args):
    done = run_cli(*args, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.e2e
def test_explain_shows_a_served_call_with_its_reasons_and_state(start_proxy, tmp_path):
    p = start_proxy(ROOT / "balancers", "--snapshot", str(CLUSTER))
    answer = xmlrpc.client.ServerProxy(p.url).runLoadBalancing(
        "host_memory_balance", HOSTS, {"minimum_host_memoryMB": "500"})
    assert answer["result"] == [TINY1, HOSTS[1:]]
    rid = re.search(r"request (\S+) runLoadBalancing", p.log()).group(1)
    path = str(tmp_path / "journal.sqlite")  # STATE_DIRECTORY is the test's folder (conftest)

    listed = wait_until(lambda: json.loads(cli("journal", "--journal", path, "--json"))["calls"],
                        what="the call in the journal")
    assert [c["id"] for c in listed] == [rid]
    assert rid in cli("journal", "--journal", path, "--unit", "host_memory_balance", "--since", "1h")

    found = json.loads(cli("explain", rid, "--journal", path, "--json"))
    call = found["call"]
    assert (call["method"], call["hosts"], call["properties"]) == (
        "runLoadBalancing", HOSTS, {"minimum_host_memoryMB": "500"})
    assert call["answer"]["result"] == [TINY1, HOSTS[1:]] and call["version"] == 1
    [unit] = call["outcomes"]
    assert unit["unit"] == "host_memory_balance" and unit["error"] is None and unit["seconds"] > 0
    assert "host1 has 400 MiB free" in unit["reasons"]["decision"]
    assert set(unit["reasons"]["hosts"]) == set(HOSTS)
    assert [h["name"] for h in found["snapshot"]["hosts"]] == ["host1", "host2", "host3", "host4"]

    text = cli("explain", rid, "--journal", path)
    assert f"request {rid}: runLoadBalancing" in text and "because: host1 has 400 MiB free" in text
    assert "host host1" in text and f"migrate {TINY1} to 3 candidate(s)" in text


def test_parse_when_reads_spans_and_iso_times():
    assert views.parse_when("10m", now=10_000) == 9_400
    assert views.parse_when("2h", now=10_000) == 10_000 - 7200
    assert views.parse_when("1d", now=100_000) == 100_000 - 86400
    assert views.parse_when("2026-12-02T07:00:00+00:00") == 1796194800
    with pytest.raises(ProxyError, match="10m, 2h, 1d"):
        views.parse_when("yesterday")


def test_summary_says_what_the_engine_got():
    base = {"hosts": ["a", "b"], "method": "runFilters",
            "answer": {"result": ["a"], "plugin_errors": {"x": ["UnitRaised: boom"]}, "errors": []}}
    assert views.summary(base) == "1/2 hosts pass; errors: x: UnitRaised: boom"
    fault = dict(base, answer={"fault": 2, "message": "bad"})
    assert views.summary(fault) == "fault 2: bad"


def test_explain_of_an_unknown_id_says_how_to_find_one(tmp_path):
    from proxy import journal
    journal.Journal(tmp_path / "j.sqlite", 14, 10).close()
    with pytest.raises(ProxyError, match="journal. lists them"):
        views.explanation(journal.Reader(tmp_path / "j.sqlite"), "nope")
