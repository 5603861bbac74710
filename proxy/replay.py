"""`ovirt-scheduler-proxy replay --plugins DIR`: recorded engine calls again, with other units.

Each call of the decision journal (proxy/journal.py) runs again, through the real execution
path, on the engine state it was recorded with, with the units in DIR; the calls whose answer
changed are shown, old and new, with a count of same / changed / failed.  A call is `failed`
when it cannot run again (no recorded state, a fault) or its new answer has unit errors.
Calls run in recorded order, those on one state together (the fork server holds one state
at a time, and takes each state once unless two proxy runs' calls interleave in the journal).

Where the time goes (bench_whatif, 10,000 calls on 200 hosts / 4,000 VMs): ~8.9 ms of CPU a
call in the fork server and its workers (the fork, copy-on-write faults, the unit, the exit)
and ~2.3 ms here (the journal's JSON, the answers' checks, sockets): on two cores, ~56 s at
best.  Here it was ~3.2 ms, and the journal was read whole before the first call ran (1.3 GB
resident for 10,000 calls; now ~70 MB whatever the journal's size).
"""

import collections
import concurrent.futures
import json

from . import config as config_mod
from . import logs, state, views
from .protocol import EngineProtocol, Record

METHODS = ("runFilters", "runCostFunctions", "runLoadBalancing")
_NO_RESULT = object()  # a recorded fault or internal error: its answer had no result
IN_FLIGHT = 4  # calls submitted ahead, per slot of plugins.concurrency: workers never wait for the reading


def add_parser(sub):
    p = sub.add_parser("replay", help="re-run recorded calls on their recorded state with the units of a "
                                      "folder; show the calls whose answer changed")
    p.add_argument("--journal", metavar="PATH", help="the journal file (default: the configuration's journal.path)")
    p.add_argument("--config", metavar="FILE", help="the configuration `serve` uses")
    p.add_argument("--since", metavar="WHEN", help="only calls since WHEN: 10m, 2h, 1d, or an ISO time")
    p.add_argument("--unit", metavar="NAME", help="only calls that ran this unit")
    p.add_argument("--plugins", metavar="DIR", required=True, help="the folder of the units to run them with")
    p.add_argument("--json", action="store_true",
                   help='{"same", "changed", "failed", "calls": [{"id", "method", "units", "status", "old", "new"}]}')


def call_args(entry):
    """The engine's arguments of a recorded call, after the Record argument."""
    hosts, vm, props = entry["hosts"], entry["vm"], entry["properties"]
    if entry["method"] == "runLoadBalancing":
        return [entry["units"][0], hosts, props]
    if entry["method"] == "runCostFunctions":
        return [[[o["unit"], o["weight"]] for o in entry["outcomes"]], hosts, vm, props]
    return [list(entry["units"]), hosts, vm, props]


def _lists(value):
    """value with tuples as lists, as the journal holds them (JSON has no tuples)."""
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value


def rerun(protocol, entry):
    """(status, new answer or error text) of one recorded call."""
    record = Record()
    try:
        new = getattr(protocol, entry["method"])(record, *call_args(entry))
    except Exception as e:  # a fault (bad arguments) or the proxy's own failure: this call only
        return "failed", f"{type(e).__name__}: {e}"
    finally:
        record.release()
    if new["plugin_errors"] or new["errors"]:
        return "failed", new
    old = entry["answer"]
    old = old.get("result") if isinstance(old, dict) else _NO_RESULT
    # Converted only when unequal: a tuple never equals the journal's list.
    return ("same" if old == new["result"] or old == _lists(new["result"]) else "changed"), new


def replay(executor, reader, entries, on_result):
    """Run each entry again on its recorded state; on_result(entry, status, new) in the
    entries' order.

    Entries come decoded one at a time and leave once settled, so the journal is read while
    earlier calls run and memory holds a window of them, not the journal.  The fork server
    holds one state at a time: at each change of state the calls in flight finish first,
    but the next state is decoded and built before that wait, not after it.
    """
    cfg = executor.config
    protocol = EngineProtocol(Pinned(executor), cfg.plugins.timeout, cfg.protocol.score_rows)
    window = collections.deque()  # (entry, future or (status, new)), oldest first

    def settle(keep):
        while len(window) > keep:
            e, found = window.popleft()
            on_result(e, *(found.result() if isinstance(found, concurrent.futures.Future) else found))

    current, snap = None, None
    # Concurrently, as the engine's calls come: a worker is forked while others run.
    with concurrent.futures.ThreadPoolExecutor(cfg.plugins.concurrency) as pool:
        for e in entries:
            if (e["run"], e["version"]) != current:
                current = (e["run"], e["version"])
                snap = recorded_state(reader, *current)
                settle(0)
                executor.state = snap
            window.append((e, pool.submit(rerun, protocol, e) if snap is not None
                           else ("failed", "no recorded engine state to run it on")))
            settle(IN_FLIGHT * cfg.plugins.concurrency)
        settle(0)


class Pinned:
    """The executor, with the plugin code it started with for the whole replay: one set of
    units is compared with the journal, even if DIR changes meanwhile, and no call pays for
    looking at DIR again (what a served call does, to reload changed plugins)."""

    # No balancing limits: a replay re-asks what each unit decided on its recorded state;
    # the live proxy's cooldown and budget were applied (and journaled) when it answered.
    ledger = None

    def __init__(self, executor):
        self.executor, self.config = executor, executor.config

    def catalog(self):
        return self.executor.generation.catalog

    def run(self, calls, deadline):
        return self.executor.run(calls, deadline)


def recorded_state(reader, run, version):
    """The Snapshot a call ran on, or None when the journal holds none."""
    doc = reader.snapshot(run, version) if version else None
    return None if doc is None else state.from_document(doc, version=version, source=f"journal {run}/{version}")


class Tally:
    """The counts, and the calls to show (a same call is counted, not kept)."""

    def __init__(self):
        self.counts = dict.fromkeys(("same", "changed", "failed"), 0)
        self.shown = []

    def __call__(self, entry, status, new):
        self.counts[status] += 1
        if status != "same":
            self.shown.append((entry, status, new))


def run(args):
    logs.configure("WARNING", "")
    cfg = config_mod.load(args.config, {"plugins.folder": args.plugins})
    cfg = cfg.replace({"log.level": "WARNING", "engine.url": "", "journal.path": ""})
    reader = views.open_reader(args)
    since = views.parse_when(args.since) if args.since else None
    tally = Tally()
    from .whatif_cli import fed_executor  # here: it loads the SDK, which `serve` never needs
    try:
        with fed_executor(cfg) as executor:
            replay(executor, reader, reader.calls(since, args.unit, METHODS), tally)
    finally:
        reader.close()
    return report(tally, args.json)


def report(tally, as_json):
    counts, shown = tally.counts, tally.shown
    if as_json:
        print(json.dumps({**counts, "calls": [{"id": e["id"], "method": e["method"], "units": e["units"],
                                               "status": status, "old": e["answer"], "new": new}
                                              for e, status, new in shown]}))
        return 1 if counts["failed"] else 0
    for e, status, new in shown:
        print(f"{e['id']}  {e['method']}  {','.join(e['units'])}  {status}")
        print(f"  old: {_short(e['answer'])}")
        print(f"  new: {_short(new)}")
    print(f"{sum(counts.values())} call(s) replayed: {counts['same']} same, {counts['changed']} changed, "
          f"{counts['failed']} failed")
    return 1 if counts["failed"] else 0


def _short(answer):
    if isinstance(answer, dict) and "result" in answer:
        errors = [m for msgs in answer.get("plugin_errors", {}).values() for m in msgs] + answer.get("errors", [])
        return json.dumps(answer["result"]) + (f"  errors: {'; '.join(errors)}" if errors else "")
    return str(answer)
