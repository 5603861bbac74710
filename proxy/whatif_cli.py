"""`ovirt-scheduler-proxy simulate UNIT --snapshot FILE --rounds N`: what-if over N balancing passes.

Each round makes the engine's runLoadBalancing call through the real execution path (an
Executor: fork server, worker, the answer checks of a served call) on the round's state,
then applies the answer the way the engine would (proxy/whatif.py) and goes on, until the
unit answers no migration.

One Executor serves every round: its fork server is told to refresh, and the refresh reads
the round's state from a feed file (a pickled Snapshot, holding.FEED_ENV) instead of an
engine.  Starting a fork server per round on 1,000 hosts / 20,000 VMs costs ~0.7 s a round
(measured), a round through the feed ~0.3 s.

Time is simulated: round n runs at t0 + n × the engine's balancing interval
(VdsLoadBalancingIntervalInMinutes, 1 minute by default; --interval), t0 the simulation's
start.  Round n's state is read at that time and the moves ledger (proxy/moves.py) runs on
that clock, so the cooldown, the budget and the load history act as they would live.
"""

import argparse
import contextlib
import json
import logging
import os
import tempfile
import time

from . import config as config_mod
from . import dryrun, holding, logs, moves, whatif
from .errors import ConfigError, ProxyError
from .executor import Executor
from .protocol import EngineProtocol, Record
from .messages import Refresh
from .refresh import Refresher

PATIENCE = 5  # passes in a row with no migration before a simulation calls it settled
log = logging.getLogger("proxy.whatif")


class _Feeder(Refresher):
    """A refresh before every call, of the state in `executor.state`: each round's call
    sees that round."""

    def __init__(self, executor, send):
        super().__init__(send, executor.versions, max_age=0.0, stale_limit=float("inf"),
                         read_timeout=executor.config.plugins.timeout)
        self.executor = executor
        self.fed = None  # (Snapshot object, pass) the fork server holds: the same again needs no refresh

    def before_call(self, deadline):
        with self.cond:
            # The object itself is kept (not its id): a freed state's id may come again.
            fed = (self.executor.state, self.executor.passes)
            if self.fed is not None and fed[0] is self.fed[0] and fed[1] == self.fed[1] and self.version:
                return self.version, self.error
            self.fed = fed
            self.reading = next(self.versions)
            holding.write_feed(self.executor.feed, self.executor.state, self.reading, self.executor.clock())
            self.send(Refresh(self.reading, self.read_timeout, self.token))
            self.cond.wait_for(lambda: not self.reading, max(0.0, deadline - time.monotonic()))
            return self.version, self.error


class FedExecutor(Executor):
    """An Executor whose units read `state` (a Snapshot), set before each call; the fork
    server must have been started with holding.FEED_ENV naming `feed`."""

    def __init__(self, config, feed, state):
        super().__init__(config, password="")
        self.feed, self.state = feed, state
        self.clock = time.time  # when each fed state is read (simulate: the round's simulated time)
        # simulate's pass number: each pass is a new reading of the engine, even of an
        # unchanged state (time passed: the load history a unit's hysteresis needs grows).
        self.passes = 0

    def _refresher(self, gen):
        return _Feeder(self, gen.send)


def build_parser():
    p = argparse.ArgumentParser(
        prog="ovirt-scheduler-proxy simulate",
        description="What-if: run a balance unit for N passes, applying each migration as the engine would.")
    p.add_argument("unit", metavar="UNIT", help="the balance unit")
    p.add_argument("--snapshot", metavar="FILE", required=True, help="the engine state to start from")
    p.add_argument("--rounds", metavar="N", type=int, default=10, help="balancing passes (default 10)")
    p.add_argument("--interval", metavar="MINUTES", type=float, default=1.0,
                   help="simulated minutes between two passes: the engine's VdsLoadBalancingIntervalInMinutes "
                        "(default 1)")
    p.add_argument("--patience", metavar="N", type=int, default=PATIENCE,
                   help=f"stop once the unit answered no migration N passes in a row (default {PATIENCE}: "
                        "time passes, and a unit with hysteresis may act later)")
    p.add_argument("--prop", metavar="KEY=VALUE", action="append", default=[],
                   help="a scheduling-policy property, as the engine sends it (repeat for more)")
    p.add_argument("--cluster", metavar="NAME", help="the cluster, when the state holds several")
    p.add_argument("--config", metavar="FILE")
    p.add_argument("--plugins", metavar="DIR", help="folder of policy-unit modules (overrides plugins.folder)")
    p.add_argument("--report", metavar="FILE.html", help="also write an HTML page with charts")
    p.add_argument("--json", action="store_true",
                   help='{"rounds": [...], "before": {...}, "after": {...}, "stopped": REASON}')
    return p


def run(args):
    logs.configure("WARNING", "")
    if args.rounds < 1:
        raise ProxyError("--rounds: give 1 or more")
    if not args.interval > 0:
        raise ProxyError("--interval: give a number of minutes greater than 0")
    overrides = {"plugins.folder": args.plugins} if args.plugins else {}
    cfg = config_mod.load(args.config, overrides)
    cfg = cfg.replace({"plugins.spare_workers": 1, "log.level": "WARNING", "engine.url": ""})
    from .snapshot import SnapshotError
    try:
        snap = holding.load_file(args.snapshot)
    except (SnapshotError, OSError) as e:
        raise ConfigError(f"--snapshot: {e}") from None
    notes = []
    hosts = dryrun.default_hosts(snap, args.cluster, notes.append)
    cluster_id = snap.hosts[hosts[0]].cluster_id if hosts else None
    props = dryrun.properties(args.prop)
    if args.patience < 1:
        raise ProxyError("--patience: give 1 or more passes")
    result = simulate(cfg, args.unit, snap, hosts, props, args.rounds, cluster_id, args.interval * 60,
                      args.patience)
    if args.report:
        from . import report
        report.write(args.report, args.unit, result)
    if args.json:
        print(json.dumps({k: result[k] for k in ("rounds", "before", "after", "stopped")}))
    else:
        print_table(result, notes)
    return 1 if result["failed"] else 0


class _Clock:
    """The simulated time: round n is t0 + n × interval seconds."""

    def __init__(self, t0):
        self.now = t0

    def __call__(self):
        return self.now




def simulate(cfg, unit, snap, hosts, props, rounds, cluster_id=None, interval=60.0, patience=PATIENCE):
    """{"rounds", "before", "after", "stopped", "failed", "first", "last"}: the what-if, one
    pass every `interval` simulated seconds.

    A pass that migrates nothing changes no state, but time passes: a unit with hysteresis
    (a hot spot must hold for some minutes of load history) answers nothing at first and
    acts a few passes later, as it would live.  So the simulation stops only once the unit
    has answered no migration `patience` passes in a row (five minutes at the engine's
    interval: more than the engine's CpuOverCommitDurationMinutes default of 2)."""
    with fed_executor(cfg, snap) as executor:
        clock = executor.clock = _Clock(float(int(time.time())))  # whole seconds: readable "at"s
        executor.ledger = moves.Ledger.from_config(cfg, clock=clock)
        return _rounds(executor, unit, snap, hosts, props, rounds, cluster_id, interval, max(1, patience))


@contextlib.contextmanager
def fed_executor(cfg, snap=None):
    """A started FedExecutor on `snap` (set executor.state to change it), stopped at the end."""
    with tempfile.TemporaryDirectory(prefix="whatif-") as folder:
        feed = os.path.join(folder, "state.pickle")
        previous = os.environ.get(holding.FEED_ENV)
        os.environ[holding.FEED_ENV] = feed  # inherited by the fork server, read by its refreshes
        executor = FedExecutor(cfg, feed, snap)
        try:
            executor.start()
            yield executor
        finally:
            executor.stop()
            if previous is None:
                os.environ.pop(holding.FEED_ENV, None)
            else:
                os.environ[holding.FEED_ENV] = previous


def _rounds(executor, unit, snap, hosts, props, rounds, cluster_id, interval, patience):
    protocol = EngineProtocol(executor, executor.config.plugins.timeout)
    first, rows, failed, idle = snap, [], False, 0
    stopped, t0 = f"{rounds} round(s) done", executor.clock.now
    for n in range(1, rounds + 1):
        executor.clock.now = t0 + interval * n
        executor.state, executor.passes = snap, n
        record = Record()
        answer = protocol.runLoadBalancing(record, unit, hosts, props)
        record.release()
        errors = [m for msgs in answer["plugin_errors"].values() for m in msgs] + answer["errors"]
        if errors:
            stopped, failed = "the unit failed: " + "; ".join(errors), True
            break
        vm_id, candidates = answer["result"]
        vm = snap.vms.get(vm_id)
        if not vm_id:
            # The rounds may run out during such a streak: the stop is still "no migration".
            idle += 1
            held = (record.outcomes[-1].get("limits") or {}).get("dropped") if record.outcomes else None
            stopped = f"the proxy answered no migration ({held['text']})" if held else \
                "the unit answered no migration"
            if idle >= patience:
                break
            continue
        idle, stopped = 0, f"{rounds} round(s) done"
        if vm is None or vm.host_id not in snap.hosts:
            stopped = f"the unit chose VM {vm_id}, which runs on no host of the state"
            break
        target = whatif.pick_target(snap, vm, candidates, cluster_id)
        if target is None or target == vm.host_id:
            stopped = f"the engine would not move {vm.name}: no candidate takes it, or staying wins"
            break
        snap = whatif.apply_move(snap, vm_id, target)
        after = whatif.figures(snap, unit, props, cluster_id)
        rows.append({"round": n, "at": executor.clock.now, "vm": vm_id, "from": vm.host_id, "to": target,
                     "candidates": list(candidates),
                     "moved_gib": round((vm.memory or 0) / whatif.GIB, 3), "ic_mem": after["ic_mem"],
                     "ic_cpu": after["ic_cpu"], "hosts_under_threshold": after["hosts_under_threshold"]})
    return {"rounds": rows, "before": whatif.figures(first, unit, props, cluster_id),
            "after": whatif.figures(snap, unit, props, cluster_id), "stopped": stopped, "failed": failed,
            "first": first, "last": snap, "cluster_id": cluster_id}


def print_table(result, notes):
    first = result["first"]
    hosts = {h.id: h.name for h in first.hosts.values()}
    vms = {v.id: v.name for v in first.vms.values()}
    for note in notes:
        print(f"note: {note}")
    before, after = result["before"], result["after"]
    print(f"{'round':>5}  {'vm':<20} {'from':<16} {'to':<16} {'GiB':>7} {'Ic_mem':>8} {'Ic_cpu':>8} {'under':>5}")
    print(f"{'start':>5}  {'':<20} {'':<16} {'':<16} {'':>7} {before['ic_mem']:>8.4f} {before['ic_cpu']:>8.4f} "
          f"{before['hosts_under_threshold']:>5}")
    for r in result["rounds"]:
        print(f"{r['round']:>5}  {vms.get(r['vm'], r['vm']):<20} {hosts.get(r['from'], r['from']):<16} "
              f"{hosts.get(r['to'], r['to']):<16} {r['moved_gib']:>7.2f} {r['ic_mem']:>8.4f} {r['ic_cpu']:>8.4f} "
              f"{r['hosts_under_threshold']:>5}")
    moved = sum(r["moved_gib"] for r in result["rounds"])
    print(f"{len(result['rounds'])} migration(s), {moved:.2f} GiB moved; stopped: {result['stopped']}")
    print(f"Ic_mem {before['ic_mem']:.4f} -> {after['ic_mem']:.4f} (sd {before['sd_mem']:.4f} -> "
          f"{after['sd_mem']:.4f}); Ic_cpu {before['ic_cpu']:.4f} -> {after['ic_cpu']:.4f} (sd "
          f"{before['sd_cpu']:.4f} -> {after['sd_cpu']:.4f}); hosts under threshold "
          f"{before['hosts_under_threshold']} -> {after['hosts_under_threshold']}")
    print("(a simulation: nothing was migrated)")
