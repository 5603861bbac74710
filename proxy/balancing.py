"""What a balance unit needs beyond one snapshot: the moves the proxy proposed lately, the
limits on moving again (cooldown per VM, budget per cluster), and the hosts' load over the
last snapshots (hysteresis).

    from proxy import balancing
    limits = balancing.limits()          # Limits: cooling VMs, budget left, the settings
    for move in balancing.recent_moves(): ...   # this cluster's moves of VMs still cooling, oldest first
    for reading in balancing.load_history(): ...  # Reading per earlier snapshot, oldest first

The proxy sets these in the worker before the unit runs (`bind`); a unit that never calls
them needs nothing.  Outside a call (a unit's own tests) they are empty: nothing cooling, no
budget used, no history.
"""

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class Move:
    """A migration the proxy told the engine to make (or the engine reported making)."""
    vm_id: str
    source_id: str | None  # the host the VM was on when it was proposed, when known
    candidates: tuple  # the host ids the answer allowed (for an engine event: the destination, when known)
    at: float  # time.time() of the proposal or event
    origin: str = "journal"  # "journal" (the proxy's answer) or "events" (the engine's migration events)


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """balancing.cooldown_minutes and balancing.max_migrations_per_hour as they apply to this call."""
    cooldown_minutes: float = 0.0  # 0: no cooldown
    max_migrations_per_hour: int = 0  # 0: no budget
    cooling: frozenset = frozenset()  # VM ids moved within the cooldown: not to be moved now
    budget_left: int | None = None  # migrations left in the last hour's budget; None: no budget
    applies: bool = True  # False when the unit opted out


@dataclasses.dataclass(frozen=True, slots=True)
class Reading:
    """One earlier snapshot's load figures: what hysteresis compares the current one with."""
    version: int
    read_at: float  # time.time()
    cpu_usage: dict  # host id -> percent or None
    free_memory: dict  # host id -> bytes or None


class _Bound:
    limits = Limits()
    moves = ()
    history = ()


_bound = _Bound()


def bind(limits=None, moves=(), history=None):
    """Set what this call's unit sees (the worker, before the call). history None keeps the
    readings this process already holds (the fork server's, inherited at fork)."""
    _bound.limits = limits or Limits()
    _bound.moves = tuple(moves)
    if history is not None:
        _bound.history = tuple(history)


def limits():
    return _bound.limits


def recent_moves():
    """This call's cluster's moves of the VMs still in their cooldown, oldest first: what a
    unit needs not to send a VM back where it came from (A→B→A) within the cooldown."""
    return _bound.moves


def load_history():
    return _bound.history
