"""Commands that show decisions: `journal`, `explain REQUEST-ID` and `balance UNIT`.

`journal` and `explain` read the decision journal (proxy/journal.py) that `serve` writes;
`balance` makes, as a dry run, exactly the call the engine would make, through the real
execution path (an Executor, a fork server, a worker), and migrates nothing.
"""

import datetime
import json
import re
import time
from pathlib import Path

from . import config as config_mod
from . import shadow
from . import journal as journal_mod
from .errors import ConfigError, ProxyError

SERVICE_JOURNAL = Path("/var/lib/ovirt-scheduler-proxy/journal.sqlite")  # the installed service's
_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_when(text, now=None):
    """A time.time() value from "10m", "2h", "1d" (that long ago) or an ISO time."""
    now = time.time() if now is None else now
    m = _SPAN.fullmatch(text.strip())
    if m:
        return now - float(m.group(1)) * _SECONDS[m.group(2)]
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ProxyError(f"--since {text!r}: give a span like 10m, 2h, 1d or an ISO time "
                         "like 2026-12-02T07:00") from None
    if when.tzinfo is None:
        when = when.astimezone()  # a time without offset is local time, as a person types it
    return when.timestamp()


def journal_path(args):
    """--journal, else the configuration's journal.path (the service's journal as a fallback)."""
    if args.journal:
        return Path(args.journal)
    cfg = config_mod.load(args.config)
    path = journal_mod.resolve(cfg.journal.path)
    if path is None:
        raise ConfigError("journal.path is empty: the journal is off; give --journal FILE")
    if not path.exists() and not args.config and SERVICE_JOURNAL.exists():
        return SERVICE_JOURNAL
    return path


def open_reader(args):
    path = journal_path(args)
    try:
        return journal_mod.Reader(path)
    except (FileNotFoundError, OSError) as e:
        raise ProxyError(f"cannot read the journal: {e}; is serve running with journal.path set, "
                         "and may this user read it? (--journal FILE names another)") from None


def _when(t):
    return datetime.datetime.fromtimestamp(t).astimezone().isoformat(timespec="milliseconds")


def summary(entry):
    """One short text of what the engine got."""
    answer = entry["answer"]
    if not isinstance(answer, dict):
        return "internal error"
    if "fault" in answer:
        return f"fault {answer['fault']}: {answer['message']}"
    result, method = answer["result"], entry["method"]
    if method == "runLoadBalancing":
        text = f"migrate {result[0]} to {len(result[1])} candidate(s)" if result[0] else "nothing to do"
        held = [o["limits"]["dropped"]["why"] for o in entry.get("outcomes", ())
                if (o.get("limits") or {}).get("dropped")]
        text += f" (held by the {held[0]} limit)" if held else ""
    elif method == "runFilters":
        text = f"{len(result)}/{len(entry['hosts'])} hosts pass"
    elif method == "runCostFunctions":
        best = min(result, key=lambda pair: pair[1], default=None)
        text = f"{len(result)} hosts scored, best {best[0]} ({best[1]})" if best else "no host"
    else:
        text = "ok"
    failed = [f"{name}: {' / '.join(msgs)}" for name, msgs in answer.get("plugin_errors", {}).items()]
    return text + ("; errors: " + "; ".join(failed + answer.get("errors", [])) if failed or
                   answer.get("errors") else "")


def show_journal(args):
    reader = open_reader(args)
    since = parse_when(args.since) if args.since else None
    entries = [e for e in reader.recent(since, args.unit, args.method, args.limit) if "shadow_of" not in e]
    for e in entries:  # a shadow unit's decision beside the live one ([units.NAME] shadow)
        found = reader.call(f"{e['id']}~shadow")
        if found is not None:
            e["shadow"] = {"unit": ",".join(found["units"]), "agreement": shadow.agreement(e, found),
                           "answer": found["answer"]}
    if args.json:
        print(json.dumps({"calls": entries}, indent=2))
        return 0
    for e in entries:
        side = f"  [shadow {e['shadow']['unit']}: {e['shadow']['agreement']}]" if "shadow" in e else ""
        print(f"{_when(e['time'])}  {e['id']:<10} {e['method']:<17} {','.join(e['units']) or '-':<28} "
              f"v{e['version']:<4} {e['duration_ms']:>7.1f}ms  {summary(e)}{side}")
    if not entries:
        print("(no call recorded" + (" matching" if since or args.unit or args.method else "") + ")")
    shadowed = [e["shadow"]["agreement"] for e in entries if "shadow" in e]
    if shadowed:
        print(f"shadow agreement: {shadowed.count('agrees')} of {len(shadowed)} calls agree, "
              f"{shadowed.count('differs')} differ, {shadowed.count('failed')} failed")
    return 0


def explanation(reader, rid):
    """{"call": the journal entry, "snapshot": the hosts sent and the VM, as the call saw them}."""
    entry = reader.call(rid)
    if entry is None:
        raise ProxyError(f"no call {rid!r} in the journal (`ovirt-scheduler-proxy journal` lists them; "
                         "old ones are pruned at journal.max_days and journal.max_mb)")
    doc = reader.snapshot(entry["run"], entry["version"]) if entry["version"] else None
    seen = None
    if doc is not None:
        wanted = set(entry["hosts"])
        vm = next((v for v in doc["vms"] if v["id"] == entry["vm"]), None)
        seen = {"version": entry["version"], "hosts": [h for h in doc["hosts"] if h["id"] in wanted],
                "vm": vm}
    return {"call": entry, "snapshot": seen}


def show_explain(args):
    found = explanation(open_reader(args), args.request_id)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    e, snap = found["call"], found["snapshot"]
    print(f"request {e['id']}: {e['method']} at {_when(e['time'])} from {e['client']}, "
          f"{e['duration_ms']:.1f} ms, snapshot version {e['version'] or 'none'}")
    print(f"  hosts sent: {len(e['hosts'])}" + (f"; VM {e['vm']}" if e["vm"] else ""))
    print(f"  properties: {json.dumps(e['properties'], sort_keys=True) if e['properties'] else '(none)'}")
    names = _names(snap)
    for o in e["outcomes"]:
        weight = f" (weight {o['weight']})" if o["weight"] is not None else ""
        took = f"{o['seconds'] * 1000:.1f} ms" if o["seconds"] is not None else "not run"
        print(f"unit {o['unit']}{weight}, {took}:")
        if o["error"]:
            print(f"  failed: {o['error']['message']}")
        else:
            print(f"  answer: {json.dumps(o['answer'])}")
        if o.get("limits"):
            print(f"  limits: {limits_text(o['limits'])}")
            dropped = o["limits"].get("dropped")
            if dropped:
                print(f"  {dropped['text']}")
        reasons = o["reasons"] or {}
        if reasons.get("decision"):
            print(f"  because: {reasons['decision']}")
        for host, text in reasons.get("hosts", {}).items():
            print(f"  {names.get(host, host)}: {text}")
    print(f"engine got: {summary(e)}")
    print(f"  {json.dumps(e['answer'])}")
    _print_seen(snap)
    return 0


def limits_text(limits):
    """One line of the balancing limits a call ran under (the outcome's `limits`, moves.shown)."""
    if not limits["applies"]:
        return "none (the unit opted out: balancing_limits = False)"
    cooldown = (f"cooldown {limits['cooldown_minutes']:g} min, {len(limits['cooling'])} VM(s) cooling"
                if limits["cooldown_minutes"] else "no cooldown")
    budget = (f"budget {limits['budget_left']} of {limits['max_migrations_per_hour']} migrations left this hour"
              if limits["max_migrations_per_hour"] else "no budget")
    return f"{cooldown}; {budget}; {limits['recent_moves']} move(s) of this cluster remembered"


def _names(snap):
    return {h["id"]: f"{h['name']} ({h['id']})" for h in snap["hosts"]} if snap else {}


def _print_seen(snap):
    if snap is None:
        print("state: no snapshot recorded for this call (no shared engine state, or pruned)")
        return
    print(f"state (snapshot version {snap['version']}):")
    for h in snap["hosts"]:
        print(f"  host {h['name']:<12} {h['status']:<8} free {h['free_memory_mb']} of {h['memory_mb']} MiB, "
              f"max scheduling {h['max_scheduling_memory_mb']} MiB, CPU {h['cpu_load']}%")
    vm = snap["vm"]
    if vm:
        print(f"  VM {vm['name']} {vm['status']} on {vm['host']}: {vm['memory_mb']} MiB, "
              f"{vm['vcpus']} vCPUs, CPU {vm['cpu_usage']}%")


def add_parsers(sub):
    """The journal and explain subcommands (balance: proxy/dryrun.py)."""
    jr = sub.add_parser("journal", help="the recent engine calls the decision journal holds, a line each")
    jr.add_argument("--since", metavar="WHEN", help="only calls since WHEN: 10m, 2h, 1d, or an ISO time")
    jr.add_argument("--unit", metavar="NAME", help="only calls that ran this unit")
    jr.add_argument("--method", metavar="M", help="only calls of this method, e.g. runLoadBalancing")
    jr.add_argument("--limit", metavar="N", type=int, default=50, help="at most N calls (default 50)")
    ex = sub.add_parser("explain", help="one recorded call in full: inputs, each unit's answer and reasons, "
                                        "what the engine got, the state it ran on")
    ex.add_argument("request_id", metavar="REQUEST-ID", help="the id in the proxy's log line and in `journal`")
    for p in (jr, ex):
        p.add_argument("--journal", metavar="PATH", help="the journal file (default: the configuration's "
                                                         "journal.path)")
        p.add_argument("--config", metavar="FILE", help="the configuration `serve` uses")
        p.add_argument("--json", action="store_true", help="machine-readable output")
