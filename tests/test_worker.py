"""Inside a worker: the stdout capture, the legacy printed answer, how failures are typed.

Each test forks, because a worker owns its process (it points fd 1 elsewhere)."""
import os
import socket
import sys

import pytest
from hypothesis import given, strategies as st

from proxy import engine, messages, wire, worker
from proxy.errors import BadUnitOutput


def in_child(fn):
    """Run fn() in a forked child; return what it returned (JSON) or the error text it raised."""
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        ours.close()
        try:
            out = {"value": fn()}
        except BaseException as e:
            out = {"error": f"{type(e).__name__}: {e}"}
        wire.send_frame(theirs, out)
        os._exit(0)
    theirs.close()
    answer = wire.recv_frame(ours, 1 << 26)
    os.waitpid(pid, 0)
    return answer


def test_capture_keeps_what_was_printed_by_python_and_by_a_subprocess():
    def body():
        capture = worker.StdoutCapture(1000)
        print("from python")
        os.system("echo from a subprocess")
        return sorted(capture.text().splitlines())  # print() is buffered: the order may differ
    assert in_child(body) == {"value": ["from a subprocess", "from python"]}


def test_capture_refuses_more_than_the_limit_without_holding_it():
    def body():
        capture = worker.StdoutCapture(10_000)
        try:
            for _ in range(1000):
                sys.stdout.write("x" * 1000)  # 1 MB against a 10 kB limit
            sys.stdout.flush()
        except OSError:
            pass  # writes past the sealed end fail: the unit cannot fill memory
        return [capture.overflowed(), capture.printed() <= 10_000 + worker.StdoutCapture.SLACK]
    assert in_child(body) == {"value": [True, True]}

    def legacy_answer_too_long():
        capture = worker.StdoutCapture(10)
        print("x" * 100)
        return capture.text()
    assert "output limit of 10 bytes" in in_child(legacy_answer_too_long)["error"]


@pytest.mark.parametrize("text, value", [
    ("['h1', 'h2']\n", ["h1", "h2"]),
    ("debug line\n('vm', ['h1'])\n", ("vm", ["h1"])),
    ("", None), ("  \n", None),
])
def test_legacy_literal(text, value):
    assert worker.literal_from_stdout(text) == value


@given(st.text(max_size=200))
def test_legacy_literal_never_raises_anything_but_bad_output(text):
    try:
        worker.literal_from_stdout(text)
    except BadUnitOutput:
        pass


class Units:
    class ok:
        def do_filter(self, hosts, vm, args):
            return hosts[:1]

    class raises:
        def do_filter(self, hosts, vm, args):
            raise KeyError("missing")

    class engine_down:
        def do_filter(self, hosts, vm, args):
            with engine.connect():
                pass


def request(unit):
    return messages.Request(unit=unit, method="do_filter", args=[["h1", "h2"], "vm", {}], timeout=5, token="T")


@pytest.mark.parametrize("unit, result, kind", [
    ("ok", ["h1"], None), ("raises", None, "UnitRaised"),
    ("engine_down", None, "EngineUnavailable"), ("nope", None, "UnitNotFound"),
])
def test_run_call_types_every_outcome(unit, result, kind):
    units = {"ok": Units.ok, "raises": Units.raises, "engine_down": Units.engine_down}
    answer = in_child(lambda: wire.decode(worker.run_call(units, request(unit), engine.EngineSettings(), 1 << 20)))
    answer = messages.from_wire(answer["value"], messages.Answer)
    outcome = answer.outcome()
    if unit != "nope":  # found units bind the request's token, and hand it back
        assert answer.token == "T"
    if kind is None:
        assert outcome == result
        return
    assert type(outcome).__name__ == kind
    if unit == "raises":
        assert str(outcome).startswith("KeyError: 'missing' (at test_worker.py:")
        assert outcome.details == {"exception": "KeyError", "where": str(outcome).rsplit("(at ", 1)[1][:-1]}
    if unit == "engine_down":
        assert "no engine URL configured" in str(outcome)
