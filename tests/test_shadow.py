"""Shadow units: their runs never block a live call, and their agreement is read right."""
import threading

from proxy import protocol, shadow
from tests.support import wait_until


class _Journal:
    run = "r1"

    def __init__(self):
        self.entries = []

    def record(self, entry):
        self.entries.append(entry)


class _Protocol:
    """Answers shadow runs; blocks them until released, as a hanging unit would."""

    def __init__(self):
        self.release = threading.Event()

    def run_shadow(self, live, s):
        self.release.wait(10)
        record = protocol.Record(request_id=f"{live.request_id}~shadow", inputs=live.inputs)
        record.units = [s.candidate]
        return record, ["h1"]


def live_record(rid):
    record = protocol.Record(request_id=rid, inputs={"hosts": ["h1", "h2"], "vm": "", "properties": {}})
    record.shadows = [protocol.Shadow("live_unit", "candidate", "filter", [["h1", "h2"], "", {}])]
    return record


def test_submitting_never_blocks_and_drops_what_does_not_fit():
    journal, slow = _Journal(), _Protocol()
    runner = shadow.ShadowRunner(slow, journal)
    for i in range(shadow.QUEUE_SIZE + 10):  # the first run hangs; the queue fills; the rest drop
        runner.submit("runFilters", live_record(f"r-{i}"))
    assert runner.dropped >= 9
    slow.release.set()
    entry = wait_until(lambda: journal.entries and journal.entries[0], 10, "the first shadow entry")
    assert entry["id"] == "r-0~shadow" and entry["shadow_of"] == {"id": "r-0", "unit": "live_unit"}
    assert entry["units"] == ["candidate"] and entry["answer"] == ["h1"]


def test_agreement_compares_the_answers_the_engine_would_get():
    live = {"answer": {"result": ["h1"]}, "outcomes": []}
    assert shadow.agreement(live, {"answer": ["h1"], "outcomes": [{"error": None}]}) == "agrees"
    assert shadow.agreement(live, {"answer": ["h2"], "outcomes": [{"error": None}]}) == "differs"
    assert shadow.agreement(live, {"answer": None, "outcomes": [{"error": {"kind": "UnitRaised"}}]}) == "failed"
    assert shadow.agreement(live, None) is None
