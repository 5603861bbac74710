"""What a balance unit sees through proxy/balancing.py, and the limits the proxy enforces on
its answers (proxy/protocol.py): through a real Executor, fork server and workers."""
import json

import pytest

from proxy import balancing, holding, moves, protocol
from proxy import config as config_mod
from proxy.balancing import Limits, Move, Reading
from proxy.protocol import EngineProtocol, Record
from proxy import whatif_cli
from tests import executor_support
from tests.support import PLUGINS, ROOT

HOSTS = ["a0000000-0000-4000-8000-000000000001", "a0000000-0000-4000-8000-000000000002"]
VM = "b0000000-0000-4000-8000-000000000004"
OTHER_VM = "b0000000-0000-4000-8000-000000000005"


def test_outside_a_call_nothing_is_cooling_and_there_is_no_budget_or_history():
    balancing.bind()
    assert balancing.limits() == Limits() and balancing.limits().budget_left is None
    assert balancing.recent_moves() == ()
    history = (Reading(1, 5.0, {"h": 10.0}, {"h": 1}),)
    balancing.bind(history=history)
    balancing.bind(Limits(cooling=frozenset({"vm"})), [Move("vm", "h", ("g",), 1.0)])
    assert balancing.load_history() == history  # a call's bind keeps the inherited history
    assert balancing.limits().cooling == {"vm"} and len(balancing.recent_moves()) == 1
    balancing.bind(history=())


@pytest.fixture
def served():
    """(protocol, ledger) on the moves test units; budget 2 per hour, cooldown 60 minutes."""
    ex = executor_support.make(PLUGINS / "moves", balancing__max_migrations_per_hour=2)
    ex.ledger = moves.Ledger.from_config(ex.config)
    try:
        yield EngineProtocol(ex, executor_support.TIMEOUT * 4), ex.ledger
    finally:
        ex.stop()


def _balance(proto, unit, vm):
    record = Record()
    answer = proto.runLoadBalancing(record, unit, HOSTS, {"vm": vm})
    record.release()
    [outcome] = record.outcomes
    seen = json.loads(outcome["reasons"]["decision"]) if outcome["reasons"] else None
    return answer["result"], outcome, seen


def test_a_vm_moved_is_not_moved_again_within_the_cooldown(served):
    proto, ledger = served
    result, outcome, seen = _balance(proto, "named_vm_mover", VM)
    assert result == [VM, HOSTS] and seen["cooling"] == 0 and seen["budget_left"] == 2
    assert outcome["limits"]["dropped"] is None
    result, outcome, seen = _balance(proto, "named_vm_mover", VM)
    assert result == ["", []]  # the unit proposed it again; the proxy dropped it
    assert seen["cooling"] == 1 and seen["moves"] == 1 and seen["last"] == [VM[-2:], None, 2, "journal"]
    assert outcome["limits"]["dropped"]["why"] == "cooldown"
    assert "within balancing.cooldown_minutes (60)" in outcome["limits"]["dropped"]["text"]
    assert len(ledger) == 1  # a dropped answer is not a move


def test_once_the_budget_is_used_the_unit_is_not_run(served):
    proto, ledger = served
    assert _balance(proto, "named_vm_mover", VM)[0][0] == VM
    assert _balance(proto, "named_vm_mover", OTHER_VM)[0][0] == OTHER_VM
    result, outcome, seen = _balance(proto, "named_vm_mover", "b0000000-0000-4000-8000-000000000006")
    assert result == ["", []] and seen is None and outcome["seconds"] is None
    assert outcome["limits"]["budget_left"] == 0 and outcome["limits"]["dropped"]["why"] == "budget"
    assert "balancing.max_migrations_per_hour" in outcome["limits"]["dropped"]["text"]
    assert _balance(proto, "named_vm_mover", VM)[0] == ["", []]  # the next call too


def test_a_unit_that_opts_out_is_neither_limited_nor_told_of_limits(served):
    proto, ledger = served
    for _ in range(3):  # past the budget of 2, and the same VM each time
        result, outcome, seen = _balance(proto, "unlimited_mover", VM)
        assert result == [VM, HOSTS] and not seen["applies"] and outcome["limits"]["applies"] is False
    assert len(ledger) == 3  # its moves are still remembered, and count for the others
    result, outcome, _ = _balance(proto, "named_vm_mover", OTHER_VM)
    assert result == ["", []] and outcome["limits"]["dropped"]["why"] == "budget"


def test_a_shadow_units_proposals_never_enter_the_ledger(served):
    proto, ledger = served
    live = Record(request_id="r1", inputs={"hosts": HOSTS})
    record, answer = proto.run_shadow(live, protocol.Shadow("named_vm_mover", "named_vm_mover", "balance",
                                                            [HOSTS, {"vm": VM}]))
    assert answer == [VM, HOSTS] and len(ledger) == 0


def test_workers_inherit_the_load_history_of_earlier_snapshots_without_the_current_one():
    cfg = config_mod.load(None, {"plugins.folder": str(PLUGINS / "moves")}).replace({"plugins.spare_workers": 1})
    snap = holding.load_file(str(ROOT / "config" / "cluster-small.json"))
    seen = []
    with whatif_cli.fed_executor(cfg, snap) as executor:
        proto = EngineProtocol(executor, 30)
        for n in range(3):
            executor.state = snap = whatif_cli.whatif.apply_move(snap, VM, HOSTS[n % 2 == 0])
            record = Record()
            proto.runLoadBalancing(record, "named_vm_mover", HOSTS, {})
            record.release()
            seen.append((record.version, json.loads(record.outcomes[0]["reasons"]["decision"])["history"]))
        executor.ledger = moves.Ledger.from_config(cfg)
        record = Record()
        assert proto.runLoadBalancing(record, "named_vm_mover", HOSTS, {"vm": VM})["result"][0] == VM
        record.release()
    # the VM's host in the snapshot the call ran on: the move's source, in the journal and the ledger
    assert record.outcomes[0]["source"] == snap.vms[VM].host_id
    assert [m.source_id for m in executor.ledger.recent(HOSTS)] == [snap.vms[VM].host_id]
    (v1, h1), (v2, h2), (v3, h3) = seen
    assert (h1, h2, h3) == ([], [v1], [v1, v2])
