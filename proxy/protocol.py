"""The engine protocol: the four methods the oVirt engine calls, and what it may be answered.

Every answer here is shaped so the engine's parser cannot throw (docs/ENGINE_PROTOCOL.md §2):
the envelope always carries an int `result_code`, a `result`, a struct `plugin_errors`
of string arrays and an `errors` string array; scores are 32-bit ints; a balance answer
always has two elements; nothing is ever None; no host id the engine did not send is
ever returned.  A failed unit becomes a `plugin_errors` entry here, and only here.
"""

import dataclasses
import math
import re
import time

from . import metrics, moves
from .balancing import Move
from .errors import BadArguments, BadUnitOutput, UnitError
from .executor import Call
from .registry import UNIT_TYPES

INT32_MIN, INT32_MAX = -2**31, 2**31 - 1
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
def nothing_to_do():
    return ["", []]  # the engine reads an empty VM id as "no migration"

FAILED = object()


@dataclasses.dataclass
class Record:
    """What one request did: the units it named and what failed (the answer's envelope and
    the request's log line are made of these), and the workers to release once the server
    has sent the answer."""
    units: list = dataclasses.field(default_factory=list)
    failed: dict = dataclasses.field(default_factory=dict)
    errors: list = dataclasses.field(default_factory=list)
    finished: list = dataclasses.field(default_factory=list)  # executor.Finished, one per run
    request_id: str = ""  # set by the server: the id its log line and the workers' lines carry
    shadows: list = dataclasses.field(default_factory=list)  # Shadow runs the call asks for ([units.NAME])
    utype: str = ""  # the type of the units it ran; "" when it ran none (discover)
    kinds: list = dataclasses.field(default_factory=list)  # (unit name, UnitError class name) per failure
    # For the decision journal (proxy/journal.py): the call's inputs, each unit's outcome
    # ({"unit", "weight", "answer", "error", "seconds", "reasons", "version"}), the answer sent.
    inputs: dict = dataclasses.field(default_factory=dict)
    outcomes: list = dataclasses.field(default_factory=list)
    answer: object = None

    def fail(self, name, kind, message):
        """Unit `name` failed with a UnitError of class `kind`; `message` is what the engine sees."""
        self.failed.setdefault(name, []).append(message)
        self.kinds.append((name, kind))
        for outcome in self.outcomes:  # a malformed answer is found after the unit returned
            if outcome["unit"] == name and outcome["error"] is None:
                outcome["error"] = {"kind": kind, "message": message}
                break

    @property
    def version(self):
        """The snapshot version the call's units ran on (the newest, if they differed); 0: none."""
        newest = 0
        for outcome in self.outcomes:  # a loop: a fifth of max() over a generator, per journaled call
            if outcome["version"] > newest:
                newest = outcome["version"]
        return newest

    def release(self):
        for f in self.finished:
            f.release()


def envelope(result, record):
    return {"result_code": 1 if record.failed or record.errors else 0,
            "result": result,
            "plugin_errors": {name: msgs for name, msgs in record.failed.items()},
            "errors": list(record.errors)}


# --- argument checks (a wrong shape is a fault, with a message that says which argument) ---

def _string_list(value, what):
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadArguments(f"{what} must be an array of strings, got {_describe(value)}")
    return value


def _string(value, what):
    if not isinstance(value, str):
        raise BadArguments(f"{what} must be a string, got {_describe(value)}")
    return value


def _properties(value, nil_ok):
    if value is None and nil_ok:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in value.items()):
        raise BadArguments(f"properties must be a struct of string values, got {_describe(value)}")
    return value


def _describe(value):
    text = repr(value)
    return f"{type(value).__name__} {text[:80] + '…' if len(text) > 80 else text}"


def _unique(hosts):
    return list(dict.fromkeys(hosts))


# --- what a unit returns, checked and narrowed to what the engine may receive -------------

def filter_result(value, sent):
    if not isinstance(value, list) or not all(isinstance(h, str) for h in value):
        raise BadUnitOutput(f"a filter must return a list of host ids, it returned {_describe(value)}")
    passed = set(value)
    return [h for h in sent if h in passed]


def score_result(value, sent):
    """{host: int score} for every host sent; a host the unit left out gets its worst score,
    so leaving a host out can never make it look better (lower is better in the engine)."""
    pairs = value.items() if isinstance(value, dict) else value
    if not isinstance(pairs, (list, type({}.items()))):
        raise BadUnitOutput(f"a score unit must return [host, score] pairs, it returned {_describe(value)}")
    wanted, scores = set(sent), {}
    for pair in pairs:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], str)):
            raise BadUnitOutput(f"a score entry must be [host id, number], got {_describe(pair)}")
        host, score = pair
        if isinstance(score, bool) or not isinstance(score, (int, float)) or \
                (isinstance(score, float) and not math.isfinite(score)):
            raise BadUnitOutput(f"score for host {host} must be a finite number, got {_describe(score)}")
        if host in wanted:
            scores[host] = round(score)
    if sent and not scores:
        raise BadUnitOutput(f"scored none of the {len(sent)} hosts it was given")
    worst = max(scores.values(), default=0)
    return {h: scores.get(h, worst) for h in sent}


def balance_result(value, sent):
    if value is None or value == "" or (isinstance(value, (list, tuple)) and len(value) == 0):
        return nothing_to_do()
    if not (isinstance(value, (list, tuple)) and len(value) == 2):
        raise BadUnitOutput(f"a balancer must return (vm id, [host ids]) or None, it returned {_describe(value)}")
    vm, hosts = value
    if vm is None or vm == "":
        return nothing_to_do()
    if not isinstance(vm, str) or not _UUID.fullmatch(vm):
        raise BadUnitOutput(f"the VM id must be a UUID string, got {_describe(vm)}")
    if not isinstance(hosts, (list, tuple)) or not all(isinstance(h, str) for h in hosts):
        raise BadUnitOutput(f"the candidate hosts must be a list of host ids, got {_describe(hosts)}")
    returned = set(hosts)
    candidates = [h for h in sent if h in returned]
    if hosts and not candidates:
        # An empty list would tell the engine "any host": never widen what the unit asked for.
        raise BadUnitOutput(f"none of its candidate hosts {list(hosts)[:5]} was in the request")
    return [vm.lower(), candidates]


def clamp32(n):
    return max(INT32_MIN, min(INT32_MAX, n))


def _checked(name, value, check, sent, record):
    """The unit's answer narrowed by check, or None (noted in record) if it failed or is malformed."""
    if value is FAILED:
        return None
    try:
        return check(value, sent)
    except BadUnitOutput as e:
        record.fail(name, "BadUnitOutput", f"BadUnitOutput: {e}")
        return None


def combine_filters(hosts, outcomes, record, closed=frozenset()):
    """The hosts every working filter passed; all hosts (and an error) if no filter worked,
    as the original proxy did: failing open is what the engine itself does on errors.
    A filter in `closed` ([units.NAME] on_failure = "closed") that fails removes every host:
    it states a rule that must hold, so a failure to check it cannot mean "anything goes"."""
    passed, any_ok = set(hosts), False
    for name, value in dict(outcomes).items():  # a name given twice filters (and fails) once
        result = _checked(name, value, filter_result, hosts, record)
        if result is not None:
            any_ok = True
            passed &= set(result)
        elif name in closed:
            record.errors.append(f"filter {name} failed and its on_failure is closed: no host passes")
            return []
    if outcomes and not any_ok:
        record.errors.append("all filters failed; no host was filtered out")
        return list(hosts)
    return [h for h in hosts if h in passed]


def combine_scores(hosts, outcomes, record):
    """[[host, Σ weight × score]] over the units that worked, one entry per host, 32-bit.

    The engine gets summed 2-element pairs, so it applies no factor of its own
    (docs/ENGINE_PROTOCOL.md §2.4): the weights are applied here.  outcomes: [(name, weight, value)].
    """
    totals, checked = dict.fromkeys(hosts, 0), {}
    for name, weight, value in outcomes:
        if name not in checked:  # a name given twice is checked (and reported) once
            checked[name] = _checked(name, value, score_result, hosts, record) or {}
        for host, score in checked[name].items():
            totals[host] += weight * score
    return [[h, clamp32(t)] for h, t in totals.items()]


def _note_replies(outcomes, slots, replies):
    """Each unit's answer, duration, reasons and snapshot version, for the journal."""
    for i, reply in zip(slots, replies):
        if reply is not None:
            value = None if isinstance(reply.value, UnitError) else reply.value
            outcomes[i].update(answer=value, seconds=reply.seconds, reasons=reply.reasons,
                               version=reply.version)
            if reply.source is not None:
                outcomes[i]["source"] = reply.source


class EngineProtocol:
    """The published XML-RPC methods; their docstrings are what system.methodHelp shows."""

    def __init__(self, executor, timeout, score_rows=False):
        self.executor = executor
        self.timeout = timeout
        self.score_rows = score_rows  # protocol.score_rows: [host, score, unit] rows (proxy/score_rows.py)

    def _run(self, utype, names_and_args, record, balancing=None, catalog=None):
        """Run the named units of one type; one value per input, FAILED where the unit failed.
        balancing: a balance call's limits and moves (moves.to_wire), sent to its worker;
        catalog: the one the caller already took (taking it looks at the plugin folder)."""
        catalog = catalog or self.executor.catalog()
        started = time.monotonic()
        record.utype = utype
        # A name runs once however often the request names it (every name of one request
        # gets the same arguments), and a name no unit has costs no process.
        distinct = list(dict.fromkeys(name for name, _ in names_and_args))
        record.units += distinct
        args_of = {name: args for name, args in reversed(names_and_args)}
        calls, outcome, noted = [], {}, {}
        for name in distinct:
            noted[name] = _outcome(name)
            record.outcomes.append(noted[name])
            unit = catalog.find(utype, name)
            if unit is None:
                outcome[name] = FAILED
                record.fail(
                    name, "UnitNotFound", f"no {utype} unit named {name!r} was discovered; "
                    "`ovirt-scheduler-proxy list` shows the units and why any were rejected")
            else:
                shadow = self.executor.config.unit(name).shadow
                if shadow:
                    record.shadows.append(Shadow(name, shadow, utype, args_of[name]))
                timeout = self.executor.config.unit(name).timeout or self.timeout
                calls.append((name, Call(unit, args_of[name], timeout, record.request_id, balancing)))
        if calls:  # each call has its own timeout; the request waits for the longest
            deadline = started + max(c.timeout for _, c in calls)
            results, finished = self.executor.run([c for _, c in calls], deadline)
            record.finished.append(finished)
            _note_replies([noted[name] for name, _ in calls], range(len(calls)), finished.replies)
            for (name, _), value in zip(calls, results):
                if isinstance(value, UnitError):
                    record.fail(name, type(value).__name__, f"{type(value).__name__}: {value}")
                    value = FAILED
                outcome[name] = value
        return [outcome[name] for name, _ in names_and_args]

    def discover(self, record):
        """Return the policy units: {"filters"|"scores"|"balance": {name: [description, parameters]}}."""
        catalog = self.executor.catalog()
        answer = {"filters": {}, "scores": {}, "balance": {}}
        for unit in catalog.units:
            answer[UNIT_TYPES[unit.type][1]][unit.name] = [unit.description, unit.properties]
        record.units = [u.name for u in catalog.units]
        return answer

    def runFilters(self, record, names, hosts, vm, properties):
        """Run filters (array of names) on hosts (array of ids) for VM vm; result: the hosts that pass all."""
        names = _string_list(names, "filter names (argument 1)")
        hosts = _unique(_string_list(hosts, "host ids (argument 2)"))
        vm = _string(vm, "VM id (argument 3)")
        properties = _properties(properties, nil_ok=True)
        record.inputs = {"hosts": hosts, "vm": vm, "properties": properties}
        values = self._run("filter", [(n, [hosts, vm, properties]) for n in names], record)
        closed = {n for n in names if self.executor.config.unit(n).on_failure == "closed"}
        return envelope(combine_filters(hosts, list(zip(names, values)), record, closed), record)

    def runCostFunctions(self, record, pairs, hosts, vm, properties):
        """Run score units ([[name, weight], ...]) on hosts for VM vm; result: [[host, weighted sum]]; lower is better."""
        if not isinstance(pairs, list) or not all(
                isinstance(p, list) and len(p) == 2 and isinstance(p[0], str)
                and isinstance(p[1], int) and not isinstance(p[1], bool) for p in pairs):
            raise BadArguments("score units (argument 1) must be an array of [name, integer weight] "
                               f"pairs, got {_describe(pairs)}")
        hosts = _unique(_string_list(hosts, "host ids (argument 2)"))
        vm = _string(vm, "VM id (argument 3)")
        properties = _properties(properties, nil_ok=True)
        record.inputs = {"hosts": hosts, "vm": vm, "properties": properties}
        values = self._run("score", [(n, [hosts, vm, properties]) for n, _ in pairs], record)
        for outcome in record.outcomes:  # a name given twice counts with both its weights
            outcome["weight"] = sum(w for n, w in pairs if n == outcome["unit"])
        outcomes = [(n, w, v) for (n, w), v in zip(pairs, values)]
        if self.score_rows:
            from .score_rows import unit_rows
            return envelope(unit_rows(hosts, outcomes, record), record)
        return envelope(combine_scores(hosts, outcomes, record), record)

    def runLoadBalancing(self, record, name, hosts, properties):
        """Run balancer name on hosts; result: [vm id to migrate, [candidate host ids]], or ["", []] for nothing."""
        name = _string(name, "balancer name (argument 1)")
        hosts = _unique(_string_list(hosts, "host ids (argument 2)"))
        properties = _properties(properties, nil_ok=True)
        record.inputs = {"hosts": hosts, "vm": "", "properties": properties}
        ledger, catalog = self.executor.ledger, self.executor.catalog()
        unit = catalog.find("balance", name) if ledger is not None else None
        if unit is None:
            [value] = self._run("balance", [(name, [hosts, properties])], record, catalog=catalog)
            return envelope(_checked(name, value, balance_result, hosts, record) or nothing_to_do(), record)
        refresher = getattr(self.executor.generation, "refresher", None)
        if ledger.events_after == 0 and refresher is not None:
            # The engine's migration events arrive with the snapshot: until the first one is
            # in, wait for it (as the unit's call would) rather than decide without them.
            refresher.before_call(time.monotonic() + self.timeout)
        recent = ledger.recent(hosts)
        limits = ledger.limits(hosts, unit.balancing_limits, recent)
        if limits.applies and limits.budget_left == 0:
            return envelope(self._over_budget(record, name, limits, recent), record)
        [value] = self._run("balance", [(name, [hosts, properties])], record, moves.to_wire(limits, recent),
                            catalog)
        result = _checked(name, value, balance_result, hosts, record) or nothing_to_do()
        outcome = record.outcomes[-1]
        dropped = None
        if result[0] and limits.applies and result[0] in limits.cooling:
            dropped = {"vm": result[0], "why": "cooldown", "text": _cooling_text(ledger, result[0], limits)}
            metrics.balance_held("cooldown")
            result = nothing_to_do()
        elif result[0]:
            ledger.add(Move(result[0], outcome.get("source"), tuple(result[1]), ledger.clock()))
        outcome["limits"] = moves.shown(limits, recent, dropped=dropped)
        return envelope(result, record)

    def _over_budget(self, record, name, limits, recent):
        """The answer when the cluster's budget is used: no migration, the unit not run (its
        answer could only be dropped; not running it saves a worker and its engine reads)."""
        record.utype = "balance"
        record.units.append(name)
        text = (f"not run: the cluster's budget of {limits.max_migrations_per_hour} migration(s) per hour "
                "(balancing.max_migrations_per_hour) is used")
        record.outcomes.append({**_outcome(name), "limits": moves.shown(limits, recent, dropped={"why": "budget", "text": text})})
        metrics.balance_held("budget")
        return nothing_to_do()


    def run_shadow(self, live, shadow):
        """Run a shadow unit on the arguments the live unit got: (its Record, its checked answer,
        in the live call's form).  Never sent to the engine (proxy/shadow.py)."""
        record = Record(request_id=f"{live.request_id}~shadow", inputs=live.inputs)
        ledger, hosts = self.executor.ledger, live.inputs.get("hosts", [])
        unit = self.executor.catalog().find("balance", shadow.candidate) if ledger is not None else None
        seen = None  # the live call's limits, shown to the shadow; its answers never enter the ledger
        if shadow.utype == "balance" and unit is not None:
            recent = ledger.recent(hosts)
            seen = moves.to_wire(ledger.limits(hosts, unit.balancing_limits, recent), recent)
        [value] = self._run(shadow.utype, [(shadow.candidate, shadow.args)], record, seen)
        check = {"filter": filter_result, "score": score_result, "balance": balance_result}[shadow.utype]
        answer = _checked(shadow.candidate, value, check, live.inputs.get("hosts", []), record)
        record.release()
        if isinstance(answer, dict):  # scores: the [[host, score]] form the engine gets
            answer = [[h, clamp32(v)] for h, v in answer.items()]
        return record, answer


def _outcome(name):
    """A unit's entry in Record.outcomes before it has run (what the journal records of it)."""
    return {"unit": name, "weight": None, "answer": None, "error": None, "seconds": None,
            "reasons": None, "version": 0}


def _cooling_text(ledger, vm_id, limits):
    ago = ledger.since(vm_id)
    when = ("moved recently" if ago is None else f"moved {ago:.0f} s ago" if ago < 90 else
            f"moved {ago / 60:.0f} min ago")
    return (f"dropped: VM {vm_id} {when}, within balancing.cooldown_minutes "
            f"({limits.cooldown_minutes:g}); answered no migration")


@dataclasses.dataclass(frozen=True)
class Shadow:
    live: str  # the unit the engine called
    candidate: str  # the unit run in its shadow
    utype: str
    args: list


PUBLISHED = ("discover", "runFilters", "runCostFunctions", "runLoadBalancing")
