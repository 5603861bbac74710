"""`ovirt-scheduler-proxy balance UNIT`: the balancing call the engine would make, as a dry run.

The unit runs through the real execution path (an Executor: fork server, worker, the same
answer checks as a served call) on a snapshot file or on the engine of the configuration,
so what it prints is what the engine would get.  Nothing is migrated: the proxy only ever
answers, and the engine is the one that migrates.
"""

import json
import logging
import os
import time

from . import config as config_mod
from . import logs
from .errors import ConfigError, ProxyError
from .executor import Executor
from .protocol import EngineProtocol, Record

log = logging.getLogger("proxy.dryrun")


def add_parser(sub):
    p = sub.add_parser("balance", help="a dry run of the engine's balancing call: the decision and its "
                                       "reasons; migrates nothing")
    p.add_argument("unit", metavar="UNIT", help="the balance unit")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--snapshot", metavar="FILE", help="decide on the engine state in this snapshot file")
    source.add_argument("--engine", action="store_true", help="decide on the engine of the configuration "
                                                              "([engine] url, user, password_file)")
    p.add_argument("--prop", metavar="KEY=VALUE", action="append", default=[],
                   help="a scheduling-policy property, as the engine sends it (repeat for more)")
    p.add_argument("--hosts", metavar="ID,...", help="the host ids sent (default: every Up host of the cluster)")
    p.add_argument("--cluster", metavar="NAME", help="the cluster, when the state holds several")
    p.add_argument("--config", metavar="FILE")
    p.add_argument("--plugins", metavar="DIR", help="folder of policy-unit modules (overrides plugins.folder)")
    p.add_argument("--json", action="store_true", help='{"vm", "hosts", "reason", "snapshot"}')


def properties(pairs):
    props = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ProxyError(f"--prop {pair!r}: write KEY=VALUE, e.g. --prop minimum_host_memoryMB=500")
        props[key] = value
    return props


def default_hosts(snap, cluster_name, say):
    """The Up hosts of the cluster, as the engine sends them to a balancer of that cluster."""
    clusters = list(snap.clusters.values())
    if cluster_name:
        chosen = next((c for c in clusters if c.name == cluster_name), None)
        if chosen is None:
            raise ProxyError(f"--cluster {cluster_name!r}: the state has the clusters "
                             + ", ".join(c.name for c in clusters))
    elif not clusters:
        raise ProxyError("the state holds no cluster; give --hosts")
    else:
        chosen = clusters[0]
        if len(clusters) > 1:
            say(f"the state holds {len(clusters)} clusters; using the first, {chosen.name} (--cluster NAME "
                "picks another)")
    return [h.id for h in snap.hosts.values() if h.cluster_id == chosen.id and h.status == "up"]


def _engine_state(cfg):
    """The engine's state, read here as the proxy reads it, for the default hosts."""
    from . import engine, readers  # here: the SDK loads only for --engine, never in `serve`
    e = cfg.engine
    engine.bind(engine.EngineSettings(url=e.url, user=e.user, password=cfg.engine_password(),
                                      ca_file=e.ca_file, insecure=e.insecure),
                deadline=time.monotonic() + cfg.plugins.timeout)
    try:
        with engine.connect() as conn:
            return readers.read_snapshot(conn, version=0, source=e.url)
    except Exception as exc:
        raise ProxyError(engine.describe_error(exc) or f"cannot read the engine: {exc}") from None


def decide(cfg, unit, hosts, props, snapshot_file=""):
    """(the engine's answer, the call's Record) of runLoadBalancing(unit, hosts, props)."""
    executor = Executor(cfg, password="" if snapshot_file else None, snapshot_file=snapshot_file)
    try:
        executor.start()
        record = Record()
        answer = EngineProtocol(executor, cfg.plugins.timeout).runLoadBalancing(record, unit, hosts, props)
        record.release()
        return answer, record
    finally:
        executor.stop()


def run(args):
    logs.configure("WARNING", "")
    overrides = {"plugins.folder": args.plugins} if args.plugins else {}
    cfg = config_mod.load(args.config, overrides)
    cfg = cfg.replace({"plugins.spare_workers": 1, "log.level": "WARNING"})  # one call: fork no spares ahead, log no routine
    notes = []
    if args.snapshot:
        from .holding import load_file
        from .snapshot import SnapshotError
        try:
            snap = load_file(args.snapshot)
        except (SnapshotError, OSError) as e:
            raise ConfigError(f"--snapshot: {e}") from None
        snapshot_file = os.path.abspath(args.snapshot)
    else:
        if not cfg.engine.url:
            raise ConfigError("engine.url is empty: --engine needs [engine] in --config FILE")
        # Read here too, for the default hosts and the names the text shows; the unit
        # decides on the fork server's own read, as under `serve`.
        snap, snapshot_file = _engine_state(cfg), ""
    if args.hosts:
        hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    else:
        hosts = default_hosts(snap, args.cluster, notes.append)
    answer, record = decide(cfg, args.unit, hosts, properties(args.prop), snapshot_file)
    return report(answer, record, hosts, notes, args.json, snap)


def report(answer, record, hosts, notes, as_json, snap=None):
    vm, candidates = answer["result"]
    reasons = (record.outcomes[0]["reasons"] if record.outcomes else None) or {}
    failed = [m for msgs in answer["plugin_errors"].values() for m in msgs] + answer["errors"]
    reason = reasons.get("decision") or "; ".join(failed) or ("" if vm else "nothing to do")
    if as_json:
        print(json.dumps({"vm": vm, "hosts": candidates, "reason": reason, "snapshot": record.version}))
        return 0 if not failed else 1
    names = {h.id: h.name for h in snap.hosts.values()} if snap else {}
    vms = {v.id: v.name for v in snap.vms.values()} if snap else {}
    for note in notes:
        print(f"note: {note}")
    print(f"{len(hosts)} host(s) sent, snapshot version {record.version or 'none'}")
    if vm:
        print(f"decision: migrate {vms.get(vm, vm)} ({vm}) to one of: "
              + ", ".join(names.get(h, h) for h in candidates))
    else:
        print("decision: nothing to migrate")
    if reason:
        print(f"because: {reason}")
    for host, text in reasons.get("hosts", {}).items():
        print(f"  {names.get(host, host)}: {text}")
    print("(a dry run: nothing was migrated)")
    return 0 if not failed else 1
