"""The moves ledger (proxy/moves.py): which moves belong to a call's cluster, the limits they
give, its bounds, and how it is filled (the journal, the engine's migration events)."""
import datetime
import json
import re
import time
import xmlrpc.client

from hypothesis import given, settings, strategies as st

from proxy import journal, moves
from proxy.balancing import Limits, Move
from proxy import state
from tests.sim_fixtures import by_name, connection
from tests.support import PLUGINS, ROOT, cli_outcome

A, B, C, D = "host-a", "host-b", "host-c", "host-d"


class Clock:
    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def test_a_move_is_in_the_cluster_whose_hosts_hold_its_source_or_a_candidate():
    clock = Clock()
    ledger = moves.Ledger(60, 20, clock=clock)
    ledger.add(Move("vm1", A, (B,), clock.now - 10))
    ledger.add(Move("vm2", None, (C,), clock.now - 5))  # source unknown: the candidate decides
    ledger.add(Move("vm3", D, (), clock.now - 1))
    assert [m.vm_id for m in ledger.recent([A])] == ["vm1"]
    assert [m.vm_id for m in ledger.recent([B, C])] == ["vm1", "vm2"]  # oldest first
    assert [m.vm_id for m in ledger.recent([D])] == ["vm3"]
    assert ledger.recent(["elsewhere"]) == ()


def test_cooling_vms_and_the_budget_left_follow_the_clock():
    clock = Clock()
    ledger = moves.Ledger(30, 3, clock=clock)
    ledger.add(Move("old", A, (B,), clock.now - 40 * 60))  # outside the cooldown, inside the hour
    ledger.add(Move("new", A, (B,), clock.now - 10 * 60))
    limits = ledger.limits([A, B])
    assert limits == Limits(cooldown_minutes=30.0, max_migrations_per_hour=3, cooling=frozenset({"new"}),
                            budget_left=1, applies=True)
    clock.now += 21 * 60  # "new" leaves the cooldown; "old" leaves the hour
    assert ledger.limits([A, B]).cooling == frozenset()
    assert ledger.limits([A, B]).budget_left == 2
    assert ledger.limits(["other-cluster"]).budget_left == 3


def test_zero_settings_mean_no_cooldown_and_no_budget_and_opting_out_is_carried():
    clock = Clock()
    ledger = moves.Ledger(0, 0, clock=clock)
    ledger.add(Move("vm1", A, (B,), clock.now))
    limits = ledger.limits([A], applies=False)
    assert limits.cooling == frozenset() and limits.budget_left is None and not limits.applies
    assert len(ledger.recent([A])) == 1  # still remembered, for units that ask


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=4 * 3600), max_size=80), st.integers(1, 30),
       st.floats(min_value=0, max_value=180))
def test_the_ledger_stays_bounded_by_its_lookback_and_its_size(ages, max_entries, cooldown):
    clock = Clock()
    ledger = moves.Ledger(cooldown, 5, max_entries=max_entries, clock=clock)
    for i, age in enumerate(ages):
        ledger.add(Move(f"vm{i}", A, (B,), clock.now - age))
    kept = ledger.recent([A])
    assert len(ledger) <= max_entries
    assert all(m.at >= clock.now - max(3600, cooldown * 60) for m in kept)
    assert [m.at for m in kept] == sorted(m.at for m in kept)
    within = sorted(a for a in ages if a <= max(3600, cooldown * 60))
    assert len(kept) == min(len(within), max_entries)  # the newest are the ones kept


def test_wire_form_round_trips():
    limits = Limits(60.0, 20, frozenset({"vm1"}), 19, True)
    recent = [Move("vm1", A, (B, C), 5.0, "journal")]
    assert moves.from_wire(moves.to_wire(limits, recent)) == (limits, recent)


# --- the engine's migration events --------------------------------------------------------

def _event(index, code, vm="vm1", source=A, destination=B, at=None):
    return {"index": index, "code": code, "vm_id": vm, "source_id": source, "destination_id": destination,
            "at": time.time() if at is None else at}


def test_a_migration_counts_once_from_its_start_or_its_completion_alone():
    ledger = moves.Ledger(60, 20, events=True)
    now = time.time()
    ledger.take_events([_event(7, 63, at=now - 30), _event(5, 67, at=now - 60),  # start, then its done
                        _event(9, 63, vm="vm2", at=now - 20),  # done, its start not seen
                        _event(10, 65, vm="vm3"), _event(11, 30, vm=None)])  # failed; not a migration
    found = ledger.recent([A])
    assert [(m.vm_id, m.candidates, m.origin) for m in found] == [("vm1", (B,), "events"),
                                                                  ("vm2", (B,), "events")]
    assert ledger.events_after == 11
    ledger.take_events([])  # a refresh with no new events keeps the index
    assert ledger.events_after == 11


def test_the_ledger_follows_events_only_when_the_journal_is_off():
    assert moves.Ledger(events=True).events_after == 0
    assert moves.Ledger(events=False).events_after is None


def test_read_events_takes_migrations_and_resolves_the_destination_by_name(affinity_engine, affinity_snapshot):
    snap = state.from_document(affinity_snapshot, version=1, source="sim")
    vms, hosts = by_name(affinity_snapshot, "vms"), by_name(affinity_snapshot, "hosts")
    with connection(affinity_engine) as conn:
        first = moves.read_events(conn, 0, snap)
        assert first and {e["code"] for e in first} <= {62, 63, 67}
        last = max(e["index"] for e in first)
        affinity_engine.add_event(67, "Migration initiated by system (VM: web1, Source: host1, "
                                      "Destination: host5, Reason: Load balancing).",
                                  vm=vms["web1"]["id"], host=hosts["host1"]["id"])
        affinity_engine.add_event(30, "User admin@internal-authz logged in.")
        [new] = moves.read_events(conn, last, snap)
    assert new["index"] > last and new["code"] == 67
    assert (new["vm_id"], new["source_id"], new["destination_id"]) == (
        vms["web1"]["id"], hosts["host1"]["id"], hosts["host5"]["id"])
    assert abs(new["at"] - time.time()) < 600


# --- the decision journal -----------------------------------------------------------------

def _entry(rid, at, result, outcomes=None, **more):
    return {"id": rid, "time": at, "run": "r1", "client": "-", "method": "runLoadBalancing",
            "units": ["u"], "hosts": [A, B], "vm": "", "properties": {}, "version": 0,
            "outcomes": outcomes or [{"unit": "u", "source": A}],
            "answer": {"result_code": 0, "result": result, "plugin_errors": {}, "errors": []},
            "duration_ms": 1.0, **more}


def test_a_restart_refills_the_ledger_from_the_journals_recent_balance_answers(tmp_path):
    path, now = tmp_path / "journal.sqlite", time.time()
    writer = journal.Journal(path, 14, 256)
    for e in (_entry("1", now - 7200, ["vm-old", [B]]),  # before the lookback
              _entry("2", now - 600, ["vm1", [B]]),
              _entry("3", now - 300, ["", []]),  # no migration
              _entry("3~shadow", now - 300, ["vm9", [B]], shadow_of={"id": "3", "unit": "u"}),
              _entry("4", now - 60, ["vm2", [A, B]], outcomes=[{"unit": "u"}])):
        writer.record(e)
    writer.close()
    ledger = moves.Ledger(60, 20)
    reader = journal.Reader(path)
    try:
        assert ledger.fill_from_journal(reader) == 2
    finally:
        reader.close()
    assert [(m.vm_id, m.source_id, m.candidates, m.origin) for m in ledger.recent([A, B])] == [
        ("vm1", A, (B,), "journal"), ("vm2", None, (A, B), "journal")]
    assert ledger.limits([A]).cooling == {"vm1", "vm2"} and ledger.limits([A]).budget_left == 18


# --- through a served proxy ---------------------------------------------------------------

HOST1, HOST3 = "a0000000-0000-4000-8000-000000000001", "a0000000-0000-4000-8000-000000000003"
HOSTS = [HOST1, "a0000000-0000-4000-8000-000000000002", HOST3, "a0000000-0000-4000-8000-000000000004"]
TINY1, WEB2 = "b0000000-0000-4000-8000-000000000004", "b0000000-0000-4000-8000-000000000005"


def _balance(proxy, vm):
    return xmlrpc.client.ServerProxy(proxy.url).runLoadBalancing("named_vm_mover", HOSTS, {"vm": vm})["result"]


def test_a_restarted_proxy_remembers_its_moves_and_explain_shows_the_limits(start_proxy, tmp_path):
    proxy = start_proxy(PLUGINS / "moves")
    assert _balance(proxy, TINY1)[0] == TINY1
    proxy.stop()
    proxy = start_proxy(PLUGINS / "moves")
    assert "moves: 1 proposed within the last 60 min, from the journal" in proxy.log()
    assert _balance(proxy, TINY1) == ["", []]  # within the cooldown, across the restart
    proxy.stop()
    path = str(tmp_path / "journal.sqlite")
    code, out, _ = cli_outcome("journal", "--journal", path, "--json")
    newest = json.loads(out)["calls"][0]
    code, out, err = cli_outcome("explain", newest["id"], "--journal", path)
    assert code == 0, err
    assert "limits: cooldown 60 min, 1 VM(s) cooling; budget 19 of 20 migrations left this hour" in out
    assert re.search(f"dropped: VM {TINY1} moved \\d+ s ago, within balancing.cooldown_minutes \\(60\\); "
                     "answered no migration", out)
    code, out, _ = cli_outcome("journal", "--journal", path)
    assert "nothing to do (held by the cooldown limit)" in out


def test_with_the_journal_off_the_engines_migration_events_are_the_memory(start_proxy, tmp_path):
    snap = json.loads((ROOT / "config" / "cluster-small.json").read_text())
    moved_at = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    snap["events"] = [{"id": 41, "code": 67, "time": moved_at.isoformat(), "vm": TINY1, "host": HOST1,
                       "description": "Migration initiated by system (VM: tiny1, Source: host1, "
                                      "Destination: host3, Reason: Load balancing)."}]
    (tmp_path / "cluster.json").write_text(json.dumps(snap))
    (tmp_path / "proxy.toml").write_text('[journal]\npath = ""\n[balancing]\nmax_migrations_per_hour = 2\n')
    proxy = start_proxy(PLUGINS / "moves", "--simulate", str(tmp_path / "cluster.json"),
                        "--config", str(tmp_path / "proxy.toml"))
    assert "following the engine's migration events" in proxy.log()
    assert _balance(proxy, TINY1) == ["", []]  # the engine moved it 5 minutes ago
    assert _balance(proxy, WEB2)[0] == WEB2  # the second of a budget of 2: the event is the first
    assert _balance(proxy, "b0000000-0000-4000-8000-000000000006") == ["", []]


def test_the_engines_event_of_a_move_the_proxy_proposed_does_not_count_twice():
    clock = Clock(time.time())
    ledger = moves.Ledger(60, 20, clock=clock, events=True)
    ledger.add(Move("vm1", A, (B, C), clock.now - 1000))  # the proxy's answer
    ledger.take_events([_event(3, 67, at=clock.now - 995), _event(4, 63, at=clock.now - 900),  # its migration
                        _event(5, 62, at=clock.now - 10)])  # a user moved it again later: that counts
    assert [(m.origin, m.at) for m in ledger.recent([A])] == [("journal", clock.now - 1000),
                                                              ("events", clock.now - 10)]


def test_with_both_limits_off_the_ledger_keeps_nothing_older_than_now():
    clock = Clock()
    ledger = moves.Ledger(0, 0, clock=clock)
    for i in range(50):
        ledger.add(Move(f"vm{i}", A, (B,), clock.now))
        clock.now += 60  # a pass a minute, as the engine balances
    assert len(ledger) <= 1  # an hour of answers, and nothing to remember them for


def test_a_unit_is_sent_the_moves_of_cooling_vms_only_and_at_most_sent_max():
    clock = Clock()
    ledger = moves.Ledger(10, 0, clock=clock)  # a 10-minute cooldown, no budget
    ledger.add(Move("old", A, (B,), clock.now - 20 * 60))  # past the cooldown, and no budget: not kept
    for i in range(moves.SENT_MAX + 5):
        ledger.add(Move(f"vm{i}", A, (B,), clock.now - 60 + i * 0.01))
    recent = ledger.recent([A])
    limits = ledger.limits([A], moves=recent)
    sent = moves.to_wire(limits, recent)["moves"]
    assert len(sent) == moves.SENT_MAX
    assert {m["vm_id"] for m in sent} <= limits.cooling and sent[-1]["vm_id"] == f"vm{moves.SENT_MAX + 4}"
    cooled = moves.Ledger(10, 5, clock=clock)  # the budget keeps an hour: a cooled VM stays remembered
    cooled.add(Move("old", A, (B,), clock.now - 20 * 60))
    recent = cooled.recent([A])
    assert [m.vm_id for m in recent] == ["old"]
    assert moves.to_wire(cooled.limits([A], moves=recent), recent)["moves"] == []
