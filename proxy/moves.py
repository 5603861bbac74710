"""The ledger of moves: the migrations the proxy told the engine to make, and the limits
they put on the next balance call (docs/EXECUTION.md §11).

Every runLoadBalancing answer that names a VM becomes a balancing.Move (the VM, the host it
was on in the snapshot the call ran on, the candidates, the time).  At start the ledger is
filled from the decision journal, so a restart remembers; with the journal off it follows
the engine's migration events instead (read with each snapshot refresh, `from` the highest
index seen: docs/ENGINE_API.md §9).  Memory is bounded twice: moves older than the lookback
(an hour, or the cooldown if longer) go, and at most MAX_ENTRIES are kept.

A move belongs to a call's cluster when its source or one of its candidates is among the
hosts the engine sent: the engine sends one cluster's hosts per balancing call.
"""

import bisect
import logging
import re
import threading
import time

from .balancing import Limits, Move

log = logging.getLogger("proxy.moves")

HOUR = 3600.0
MAX_ENTRIES = 20000  # moves kept; at 20 a cluster per hour, 1,000 clusters' worth
# The engine's migration events: started by a user (62) or by the engine itself (67), and
# done (63), which counts only when its start was not seen (it came before the first read).
START_CODES = (62, 67)
DONE_CODE = 63
EVENTS_SEARCH = "type=62 or type=63 or type=67"
# An engine event of a VM the proxy proposed to move is that same migration when it starts
# within this many seconds after the answer (the engine acts on it at once), or completes
# within the hour; SKEW allows for the engine's clock running behind the proxy's.
SAME_START = 300.0
SKEW = 60.0
FIRST_READ_MAX = 500
# Moves sent to a unit with its call: a cluster answered once a minute has ~60 in an hour;
# this bounds what a call carries when the cooldown is long or calls come faster.
SENT_MAX = 1000  # the newest migration events the first read takes; later reads take all above `from`
_DESTINATION = re.compile(r"Destination:\s*([^,()]+?)\s*[,)]")


class Ledger:
    """Thread-safe: calls add moves while the refresh adds the engine's."""

    def __init__(self, cooldown_minutes=0.0, max_per_hour=0, *, max_entries=MAX_ENTRIES,
                 clock=time.time, events=False):
        self.cooldown = float(cooldown_minutes) * 60.0
        self.max_per_hour = int(max_per_hour)
        # The budget counts an hour back, the cooldown its own span; with neither there is
        # nothing to remember (a move is pruned as it is added).
        self.lookback = max(HOUR if self.max_per_hour else 0.0, self.cooldown)
        self.max_entries = max_entries
        self.clock = clock
        # None: the engine's events are not followed (the journal is the memory); else the
        # highest event index seen, 0 before the first read.
        self.events_after = 0 if events else None
        self._moves = []  # oldest first
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg, *, clock=time.time, events=False):
        return cls(cfg.balancing.cooldown_minutes, cfg.balancing.max_migrations_per_hour,
                   clock=clock, events=events)

    def __len__(self):
        return len(self._moves)

    def add(self, move):
        with self._lock:
            self._insert(move)
            self._prune()

    def extend(self, moves):
        with self._lock:
            for move in moves:
                self._insert(move)
            self._prune()

    def _insert(self, move):
        if not self._moves or self._moves[-1].at <= move.at:
            self._moves.append(move)  # the usual case: now is the newest
        else:
            bisect.insort(self._moves, move, key=lambda m: m.at)

    def _prune(self):
        cut = bisect.bisect_left(self._moves, self.clock() - self.lookback, key=lambda m: m.at)
        excess = len(self._moves) - self.max_entries
        if cut or excess > 0:
            del self._moves[:max(cut, excess)]

    def recent(self, hosts):
        """The moves of the cluster whose hosts the engine sent, oldest first, within the lookback."""
        sent = set(hosts)
        since = self.clock() - self.lookback
        with self._lock:
            return tuple(m for m in self._moves if m.at >= since and
                         (m.source_id in sent or not sent.isdisjoint(m.candidates)))

    def limits(self, hosts, applies=True, moves=None):
        """balancing.Limits for a call on `hosts` (`moves`: recent(hosts), when already at hand)."""
        moves = self.recent(hosts) if moves is None else moves
        now = self.clock()
        cooling = frozenset(m.vm_id for m in moves if self.cooldown and m.at > now - self.cooldown)
        left = None
        if self.max_per_hour:
            left = max(0, self.max_per_hour - sum(1 for m in moves if m.at > now - HOUR))
        return Limits(cooldown_minutes=self.cooldown / 60.0, max_migrations_per_hour=self.max_per_hour,
                      cooling=cooling, budget_left=left, applies=applies)

    # -- filling ------------------------------------------------------------------------

    def fill_from_journal(self, reader):
        """Take the balance answers of the journal's last lookback; returns how many moves."""
        since = self.clock() - self.lookback
        # One entry decoded at a time (a journal's hour of balance calls, each with its hosts
        # and reasons, read into one list held ~170 MB of the server's memory for good).
        found = moves_from_journal(reader.calls(since, None, ("runLoadBalancing",)))[-self.max_entries:]
        self.extend(found)
        return len(found)

    def take_events(self, events):
        """Take the migration events one refresh read (event_record dicts, any order)."""
        events = sorted(events, key=lambda e: e["index"])
        with self._lock:
            for e in events:
                self.events_after = max(self.events_after or 0, e["index"])
                move = self._event_move(e)
                if move is not None:
                    self._insert(move)
            self._prune()

    def _event_move(self, e):
        if e["code"] not in START_CODES + (DONE_CODE,) or not e["vm_id"]:
            return None
        window = HOUR if e["code"] == DONE_CODE else SAME_START
        if any(m.vm_id == e["vm_id"] and e["at"] - window <= m.at <= e["at"] + SKEW for m in self._moves):
            return None  # the proxy's own answer, or the start of this migration, is already here
        dest = e.get("destination_id")
        return Move(e["vm_id"], e["source_id"], (dest,) if dest else (), e["at"], origin="events")

    def since(self, vm_id):
        """Seconds since `vm_id` last moved (None: not in the ledger); explain's wording."""
        with self._lock:
            at = next((m.at for m in reversed(self._moves) if m.vm_id == vm_id), None)
        return None if at is None else self.clock() - at


def moves_from_journal(entries):
    """The moves of journal entries (any order; shadow runs and empty answers are none)."""
    found = []
    for e in entries:
        if "shadow_of" in e or e.get("method") != "runLoadBalancing":
            continue
        answer = e.get("answer")
        result = answer.get("result") if isinstance(answer, dict) else None
        if not (isinstance(result, list) and len(result) == 2 and result[0]):
            continue
        source = next((o.get("source") for o in e.get("outcomes", ()) if o.get("source")), None)
        found.append(Move(result[0], source, tuple(result[1]), e["time"], origin="journal"))
    return sorted(found, key=lambda m: m.at)


# -- the engine's migration events (read in the fork server's reading child) --------------

def event_record(event, host_ids_by_name):
    """A plain dict of one SDK Event: what the ledger needs, and nothing the pipe cannot carry."""
    destination = None
    match = _DESTINATION.search(event.description or "")
    if match:
        destination = host_ids_by_name.get(match.group(1))
    when = event.time.timestamp() if event.time is not None else time.time()
    return {"index": int(event.index if event.index is not None else event.id), "code": event.code,
            "vm_id": event.vm.id if event.vm is not None else None,
            "source_id": event.host.id if event.host is not None else None,
            "destination_id": destination, "at": when}


def read_events(conn, after, snap):
    """The migration events above index `after` (0: the newest FIRST_READ_MAX), as event_record dicts."""
    service = conn.system_service().events_service()
    if after:
        events = service.list(search=EVENTS_SEARCH, from_=after)
    else:
        events = service.list(search=EVENTS_SEARCH, max=FIRST_READ_MAX)
    names = {h.name: h.id for h in snap.hosts.values()}
    return [event_record(e, names) for e in events]


# -- what the journal and explain show ----------------------------------------------------

def shown(limits, moves=(), **more):
    """The limits of one call as journaled in its outcome (JSON)."""
    return {"applies": limits.applies, "cooldown_minutes": limits.cooldown_minutes,
            "max_migrations_per_hour": limits.max_migrations_per_hour,
            "cooling": sorted(limits.cooling), "budget_left": limits.budget_left,
            "recent_moves": len(moves), **more}


def to_wire(limits, moves):
    """The Request's `balancing` field: this call's Limits and the newest SENT_MAX moves of
    the VMs still cooling, JSON-ready (by hand: dataclasses.asdict deep-copies, ~10× slower).

    Only the cooling VMs' moves: what a unit needs them for is not sending a VM back within
    the cooldown (the budget is counted here, in Limits).  Sending every move of the hour
    made a balancer called in a loop carry a thousand moves, each with its candidates, into
    every call (measured: +4 ms a call at 200 hosts)."""
    moves = [m for m in moves if m.vm_id in limits.cooling]
    return {"limits": {"cooldown_minutes": limits.cooldown_minutes,
                       "max_migrations_per_hour": limits.max_migrations_per_hour,
                       "cooling": sorted(limits.cooling), "budget_left": limits.budget_left,
                       "applies": limits.applies},
            "moves": [{"vm_id": m.vm_id, "source_id": m.source_id, "candidates": m.candidates, "at": m.at,
                       "origin": m.origin} for m in moves[-SENT_MAX:]]}


def from_wire(data):
    """(Limits, [Move]) of a Request's `balancing` field."""
    limits = Limits(**{**data["limits"], "cooling": frozenset(data["limits"]["cooling"])})
    return limits, [Move(**{**m, "candidates": tuple(m["candidates"])}) for m in data["moves"]]
