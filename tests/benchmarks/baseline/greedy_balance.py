"""The quality benchmark's reference: a greedy balancer in the style of CloudStack's DRS.

Each call answers the single migration, of any running VM to any other Up host it fits on
(memory at most the host's max scheduling memory), that most reduces max(Ic_mem, Ic_cpu)
of the Up hosts (Ic = population standard deviation / mean of the used-memory fraction and
of the CPU fraction, with proxy/whatif.py's accounting of a move); nothing once no move
reduces it.  It knows no cooldown, budget or hysteresis: it is the bar for how even a
cluster can get one move at a time, not a unit to ship.

Every VM × every host is scored with numpy, in chunks of VMs, from running sums (a move
changes two hosts' terms).  The best moves of each chunk are then checked against
proxy.affinity in order, so the answer never breaks an enforcing rule (the engine would
drop such a target and move nothing).
"""

import numpy as np

from proxy import affinity, engine

CHUNK = 512  # VMs scored at once: CHUNK × hosts floats per array
KEEP = 16  # VMs per chunk whose best targets go to the affinity check
TARGETS = 4  # targets kept per such VM
TOLERANCE = 1e-9  # a smaller "gain" is rounding, not a better cluster


def _ic(n, s, q):
    """Ic from count, sum and sum of squares (arrays welcome); 0 where the mean is 0."""
    mean = np.where(n > 0, s / np.maximum(n, 1), 0.0)
    var = np.maximum(q / np.maximum(n, 1) - mean * mean, 0.0)
    return np.where(mean > 0, np.sqrt(var) / np.where(mean > 0, mean, 1.0), 0.0)


class _Hosts:
    def __init__(self, hosts):
        self.ids = [h.id for h in hosts]
        self.memory = np.array([h.memory or 0 for h in hosts], float)
        self.km = np.array([bool(h.memory) and h.free_memory is not None for h in hosts])
        used = np.array([(h.memory or 0) - (h.free_memory or 0) for h in hosts], float)
        self.u = np.where(self.km, used / np.where(self.km, self.memory, 1.0), 0.0)
        self.kc = np.array([h.cpu_usage is not None for h in hosts])
        self.c = np.array([(h.cpu_usage or 0.0) / 100 for h in hosts])
        self.threads = np.array([h.cpu_threads or 0 for h in hosts], float)
        self.room = np.array([h.max_scheduling_memory or 0 for h in hosts], float)
        self.mem_sums = (self.km.sum(), self.u[self.km].sum(), (self.u[self.km] ** 2).sum())
        self.cpu_sums = (self.kc.sum(), self.c[self.kc].sum(), (self.c[self.kc] ** 2).sum())

    def imbalance(self):
        return float(max(_ic(*self.mem_sums), _ic(*self.cpu_sums)))

    def squared(self):
        """max(Ic_mem, Ic_cpu)² + 1, the form _after compares in."""
        return float(max(_squared(*self.mem_sums), _squared(*self.cpu_sums)))


def _squared(n, s, q):
    """Ic² + 1 = n·q / s² from count, sum and sum of squares (0 where the sum is 0)."""
    return n * q / np.where(s > 0, s * s, np.inf)


def _side(values, known, scale, n, s, q, src, amount, source_new):
    """(VMs × hosts) Ic² + 1 of one dimension after each VM moves to each host: the source's
    term is per VM; the target's value grows by x = amount × scale_t, so its square by
    x × (2 value + x).  In place: these arrays are the benchmark's whole cost."""
    vs = values[src]
    a = np.where(known[src], source_new - vs, 0.0)  # the source's change to the sum
    b = np.where(known[src], source_new ** 2 - vs ** 2, 0.0)
    x = np.multiply(amount[:, None], np.where(known, scale, 0.0)[None, :])  # unknown targets add nothing
    q2 = x + 2 * values[None, :]
    q2 *= x
    q2 += (q + b)[:, None]
    x += (s + a)[:, None]  # now the new sum
    x *= x
    np.maximum(x, 1e-300, out=x)  # an all-zero dimension: Ic 0, not a division by zero
    q2 /= x
    q2 *= n
    return q2


def _after(h, src, mem, load):
    """(VMs × hosts) max(Ic_mem, Ic_cpu)² + 1 after each VM moves to each host (whatif's accounting)."""
    mem_scale = 1.0 / np.where(h.km, h.memory, 1.0)
    cpu_scale = np.where(h.threads > 0, 1.0 / np.maximum(h.threads, 1) / 100, 0.0)
    us2 = h.u[src] - mem * mem_scale[src]
    cs2 = np.maximum(h.c[src] - load * cpu_scale[src], 0.0)
    out = _side(h.u, h.km, mem_scale, *h.mem_sums, src, mem, us2)
    return np.maximum(out, _side(h.c, h.kc, cpu_scale, *h.cpu_sums, src, load, cs2), out=out)


def best_moves(snap, host_ids):
    """[(imbalance after, vm, target id)] of the best moves, best first, and the imbalance now."""
    up = [snap.hosts[i] for i in dict.fromkeys(host_ids) if i in snap.hosts and snap.hosts[i].status == "up"]
    if len(up) < 2:
        return [], 0.0
    h = _Hosts(up)
    index = {hid: k for k, hid in enumerate(h.ids)}
    vms = [v for hid in h.ids for v in snap.vms_on(hid) if v.status == "up" and v.memory]
    src = np.array([index[v.host_id] for v in vms], int)
    mem = np.array([v.memory for v in vms], float)
    load = np.array([(v.cpu_usage or 0.0) * (v.vcpus or 1) for v in vms])
    found = []
    for start in range(0, len(vms), CHUNK):
        part = slice(start, start + CHUNK)
        after = _after(h, src[part], mem[part], load[part])
        after[mem[part][:, None] > h.room[None, :]] = np.inf  # the engine's memory filter
        after[np.arange(after.shape[0]), src[part]] = np.inf  # staying is not a move
        # Each VM's best target, then the best rows' few best targets: the affinity check's list.
        rows = np.argsort(after.min(axis=1), kind="stable")[:KEEP]
        for row in rows:
            cols = np.argsort(after[row], kind="stable")[:TARGETS]
            found += [(float(after[row, c]), vms[start + int(row)], h.ids[int(c)])
                      for c in cols if np.isfinite(after[row, c])]
    found.sort(key=lambda m: (m[0], m[1].id, m[2]))
    return [(float(np.sqrt(max(a - 1.0, 0.0))), vm, t) for a, vm, t in found], h.imbalance()


def decide(snap, host_ids):
    """(vm id, [target id]) of the move that most reduces the imbalance, or None."""
    moves, now = best_moves(snap, host_ids)
    for after, vm, target in moves:
        if after >= now - TOLERANCE:
            return None
        if affinity.allowed(snap, vm, target):
            return vm.id, [target]
    return None


class greedy_balance:
    # The reference knows no cooldown or budget (CloudStack's DRS remembers nothing): the
    # benchmark counts its A→B→A moves to show what the limits spare the shipped units.
    balancing_limits = False

    def do_balance(self, hosts, args):
        """The single migration that most reduces max(Ic_mem, Ic_cpu); the benchmark's greedy reference."""
        return decide(engine.snapshot(), hosts or [])
