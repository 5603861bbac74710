"""`ovirt-scheduler-proxy replay --plugins DIR`: recorded engine calls again, with other units.

Each call of the decision journal (proxy/journal.py) runs again, through the real execution
path, on the engine state it was recorded with, with the units in DIR; the calls whose answer
changed are shown, old and new, with a count of same / changed / failed.  A call is `failed`
when it cannot run again (no recorded state, a fault) or its new answer has unit errors.
Calls are grouped by the state they ran on, so the fork server takes each state once.
"""

import concurrent.futures
import json

from . import config as config_mod
from . import logs, state, views
from .protocol import EngineProtocol, Record
from .whatif_cli import fed_executor

METHODS = ("runFilters", "runCostFunctions", "runLoadBalancing")


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


def _normal(answer):
    return json.loads(json.dumps(answer))  # tuples as lists, as the journal holds them


def rerun(protocol, entry):
    """(status, new answer or error text) of one recorded call."""
    record = Record()
    try:
        new = _normal(getattr(protocol, entry["method"])(record, *call_args(entry)))
    except Exception as e:  # a fault (bad arguments) or the proxy's own failure: this call only
        return "failed", f"{type(e).__name__}: {e}"
    finally:
        record.release()
    if new["plugin_errors"] or new["errors"]:
        return "failed", new
    old = entry["answer"]
    return ("same" if isinstance(old, dict) and old.get("result") == new["result"] else "changed"), new


def replay(executor, reader, entries):
    """[(entry, status, new)] in the entries' order."""
    cfg = executor.config
    protocol = EngineProtocol(executor, cfg.plugins.timeout, cfg.protocol.score_rows)
    outcome = {}
    groups = {}
    for e in entries:
        groups.setdefault((e["run"], e["version"]), []).append(e)
    for (run, version), group in groups.items():
        doc = reader.snapshot(run, version) if version else None
        if doc is None:
            for e in group:
                outcome[e["id"]] = ("failed", "no recorded engine state to run it on")
            continue
        executor.state = state.from_document(doc, version=version, source=f"journal {run}/{version}")
        # Concurrently, as the engine's calls come: a worker is forked while others run.
        with concurrent.futures.ThreadPoolExecutor(executor.config.plugins.concurrency) as pool:
            for e, found in zip(group, pool.map(lambda e: rerun(protocol, e), group)):
                outcome[e["id"]] = found
    return [(e, *outcome[e["id"]]) for e in entries]


def run(args):
    logs.configure("WARNING", "")
    cfg = config_mod.load(args.config, {"plugins.folder": args.plugins})
    cfg = cfg.replace({"log.level": "WARNING", "engine.url": "",
                       "journal.path": ""})
    reader = views.open_reader(args)
    since = views.parse_when(args.since) if args.since else None
    entries = [e for e in reversed(reader.recent(since, args.unit, None, -1)) if e["method"] in METHODS]
    try:
        with fed_executor(cfg) as executor:
            results = replay(executor, reader, entries)
    finally:
        reader.close()
    return report(results, args.json)


def report(results, as_json):
    counts = {k: sum(1 for _, status, _ in results if status == k) for k in ("same", "changed", "failed")}
    shown = [(e, status, new) for e, status, new in results if status != "same"]
    if as_json:
        print(json.dumps({**counts, "calls": [{"id": e["id"], "method": e["method"], "units": e["units"],
                                               "status": status, "old": e["answer"], "new": new}
                                              for e, status, new in shown]}))
        return 1 if counts["failed"] else 0
    for e, status, new in shown:
        print(f"{e['id']}  {e['method']}  {','.join(e['units'])}  {status}")
        print(f"  old: {_short(e['answer'])}")
        print(f"  new: {_short(new)}")
    print(f"{len(results)} call(s) replayed: {counts['same']} same, {counts['changed']} changed, "
          f"{counts['failed']} failed")
    return 1 if counts["failed"] else 0


def _short(answer):
    if isinstance(answer, dict) and "result" in answer:
        errors = [m for msgs in answer.get("plugin_errors", {}).values() for m in msgs] + answer.get("errors", [])
        return json.dumps(answer["result"]) + (f"  errors: {'; '.join(errors)}" if errors else "")
    return str(answer)
