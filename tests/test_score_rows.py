"""protocol.score_rows: [host, score, unit] rows with raw scores, against the summed 2-element
form, through the real execution path on config/cluster-small.json."""
import pytest

from proxy import config as config_mod
from proxy import holding, score_rows, whatif_cli
from proxy.protocol import FAILED, EngineProtocol, Record
from tests.support import ROOT

CLUSTER = str(ROOT / "config" / "cluster-small.json")
HOSTS = [f"a0000000-0000-4000-8000-00000000000{i}" for i in (1, 2, 3, 4)]
TINY1 = "b0000000-0000-4000-8000-000000000004"
UNITS = [["even_vm_distribution", 3], ["ksm_same_os_score", 2]]


@pytest.fixture(scope="module")
def answers():
    cfg = config_mod.load(None, {"plugins.folder": str(ROOT / "balancers")}).replace({"plugins.spare_workers": 1})
    found = {}
    with whatif_cli.fed_executor(cfg, holding.load_file(CLUSTER)) as executor:
        for rows in (False, True):
            record = Record()
            found[rows] = EngineProtocol(executor, 30, rows).runCostFunctions(record, UNITS, HOSTS, TINY1, {})
            record.release()
    return found


def test_rows_carry_each_units_raw_score_and_the_sum_applies_the_weights(answers):
    rows, summed = answers[True]["result"], answers[False]["result"]
    assert all(len(r) == 3 for r in rows) and all(len(p) == 2 for p in summed)
    assert [(r[0], r[2]) for r in rows] == [(h, u) for u, _ in UNITS for h in HOSTS]  # every host, per unit
    weights = dict(UNITS)
    for host, total in summed:
        assert total == sum(weights[u] * score for h, score, u in rows if h == host)
    assert answers[True]["result_code"] == answers[False]["result_code"] == 0


def test_a_failed_unit_sends_no_rows_and_is_reported():
    record = Record()
    record.fail("broken", "UnitRaised", "UnitRaised: no")
    rows = score_rows.unit_rows(["h1", "h2"], [("good", 5, [("h1", 1), ("h2", 7)]), ("broken", 1, FAILED)], record)
    assert rows == [["h1", 1, "good"], ["h2", 7, "good"]]  # raw: the engine applies the factor 5


def test_no_working_unit_falls_back_to_the_summed_form_every_engine_parses():
    record = Record()
    rows = score_rows.unit_rows(["h1", "h2"], [("broken", 1, FAILED), ("bad", 1, "nonsense")], record)
    assert rows == [["h1", 0], ["h2", 0]]
    assert "bad" in record.failed  # the malformed answer is reported as usual


def test_the_setting_is_off_by_default():
    assert config_mod.load().protocol.score_rows is False
