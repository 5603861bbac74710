"""The quality benchmark's measures of one `simulate` run: pure functions over its result.

- back_and_forth: A→B→A moves, a VM moved to a host it left earlier in the run.  Rounds are
  a simulated minute apart (a balancing pass a minute, the engine's default), so "within
  60 min" is within 60 rounds of leaving.
- violations_proposed: per round, the candidates of the answer (the row's "candidates";
  where rows have none, the host the VM went to) that proxy.affinity.violations flags on
  the state before that round's move.
- feasible_fix: whether some set of moves takes every Up host of the cluster above the
  memory threshold, decided greedily (below).
"""

from proxy import affinity, whatif
from proxy.state import MIB

ROUND_SECONDS = 60


def back_and_forth(rows, window_minutes=60):
    """(A→B→A moves over the run, those within `window_minutes` of the VM leaving that host)."""
    left = {}  # (vm, host) -> the round the VM last left that host
    total = within = 0
    for row in rows:
        key = (row["vm"], row["to"])
        if key in left:
            total += 1
            if (row["round"] - left[key]) * ROUND_SECONDS <= window_minutes * 60:
                within += 1
        left[(row["vm"], row["from"])] = row["round"]
    return total, within


def states(first, rows):
    """The state before each row's move, replaying the moves from `first`."""
    snap = first
    for row in rows:
        yield snap
        snap = whatif.apply_move(snap, row["vm"], row["to"])


def violations_proposed(first, rows, violations=affinity.violations):
    """(candidates that break an enforcing affinity rule, whether the rows carried candidates)."""
    count, carried = 0, bool(rows) and all("candidates" in r for r in rows)
    for snap, row in zip(states(first, rows), rows):
        for host_id in (row["candidates"] if "candidates" in row else [row["to"]]):
            if host_id != row["from"] and violations(snap, row["vm"], host_id):
                count += 1
    return count, carried


def feasible_fix(snap, cluster_id, threshold_mb):
    """True when moves exist that leave no Up host of the cluster at or under the threshold.

    Greedy, host by host from the least free: while the host is at or under the threshold,
    move the smallest of its running VMs that covers what it lacks, else its largest, to the
    host that can take it (its memory at most the target's max scheduling memory and under its
    free memory − threshold, affinity allowing) with the most room; infeasible when some host
    runs out of VMs that fit anywhere.  A "yes" is a real plan; a "no" may miss a cleverer
    one (the check is not exhaustive), which only ever excuses the balancer.
    """
    threshold = threshold_mb * MIB
    for _ in range(len(snap.vms) + 1):
        up = whatif.up_hosts(snap, cluster_id)
        short = sorted((h for h in up if h.free_memory is not None and h.free_memory <= threshold),
                       key=lambda h: (h.free_memory, h.id))
        if not short:
            return True
        move = _relief(snap, short[0], up, threshold)
        if move is None:
            return False
        snap = whatif.apply_move(snap, *move)
    return False


def _relief(snap, source, up, threshold):
    """(vm id, target id) that helps `source` most cheaply, or None."""
    lacking = threshold - source.free_memory + 1
    vms = sorted((v for v in snap.vms_on(source.id) if v.status == "up" and v.memory),
                 key=lambda v: (v.memory, v.id))
    order = [v for v in vms if v.memory >= lacking] + list(reversed([v for v in vms if v.memory < lacking]))
    for vm in order:
        room = [(min(h.free_memory - threshold, h.max_scheduling_memory or 0), h.id) for h in up
                if h.id != source.id and h.free_memory is not None]
        fits = [(r, hid) for r, hid in room if r > vm.memory and affinity.allowed(snap, vm, hid)]
        if fits:
            return vm.id, max(fits)[1]
    return None
