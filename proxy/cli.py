"""Command line: `ovirt-scheduler-proxy serve|list|config|simulate` (also `python -m proxy`)."""

import argparse
import json
import logging
import os
import select
import signal
import sys
import threading

from . import config as config_mod
from . import logs
from .errors import ConfigError, ProxyError
from .executor import Executor
from .listener import raise_open_file_limit
from .protocol import EngineProtocol
from .server import ProxyServer

log = logging.getLogger("proxy")


def _add_setting_flags(parser, names):
    for name in names:
        s = config_mod.BY_NAME[name]
        parser.add_argument(s.flag, dest=name.replace(".", "__"), metavar=s.key.upper(),
                            help=f"{s.help} (overrides {s.name})")


def _overrides(args):
    return {name: getattr(args, name.replace(".", "__"), None) for name in config_mod.BY_NAME}


def build_parser():
    p = argparse.ArgumentParser(prog="ovirt-scheduler-proxy",
                                description="oVirt external scheduler proxy: serves policy units to the engine.")
    sub = p.add_subparsers(dest="command", required=True)
    flagged = [s.name for s in config_mod.SETTINGS if s.flag]

    serve = sub.add_parser("serve", help="run the proxy in the foreground")
    serve.add_argument("--config", metavar="FILE", help="TOML configuration file (config/proxy.toml shows every key)")
    _add_setting_flags(serve, flagged)
    serve.add_argument("--simulate", metavar="SNAPSHOT",
                       help="also start a simulated oVirt engine on this cluster snapshot (JSON) and point "
                            "the units at it: a demo without a real engine")

    lst = sub.add_parser("list", help="list the policy units a plugin folder holds, and the rejected ones")
    lst.add_argument("--config", metavar="FILE")
    _add_setting_flags(lst, ["plugins.folder", "plugins.timeout"])
    lst.add_argument("--json", action="store_true", help="machine-readable output")

    sub.add_parser("config", help="print the default configuration file, every key commented")

    sub.add_parser("simulate", help="run only the simulated oVirt engine (see `simulate --help`)")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["simulate"]:  # its own flags, parsed by the simulator
        from .sim import cli as sim_cli
        return sim_cli.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.command == "config":
            sys.stdout.write(config_mod.render_default_file())
            return 0
        cfg = config_mod.load(args.config, _overrides(args))
        if args.command == "list":
            return list_units(cfg, args.json)
        return serve(cfg, args.simulate)
    except ConfigError as e:
        print(f"ovirt-scheduler-proxy: configuration error: {e}", file=sys.stderr)
        return 2
    except ProxyError as e:
        print(f"ovirt-scheduler-proxy: {e}", file=sys.stderr)
        return 1


def list_units(cfg, as_json):
    logs.configure("WARNING", "")
    if not cfg.plugin_folder.is_dir():
        raise ConfigError(f"plugins.folder: {cfg.plugin_folder} is not a folder")
    # Only the catalog is wanted: no worker to fork and kill.
    executor = Executor(cfg.replace({"plugins.spare_workers": 0}), password="")
    try:
        catalog = executor.start()
    finally:
        executor.stop()
    if as_json:
        json.dump({"folder": str(cfg.plugin_folder), **catalog.to_wire()}, sys.stdout, indent=2)
        print()
        return 0
    print(f"Policy units in {cfg.plugin_folder}:")
    if not catalog.units:
        print("  (none)")
    for u in catalog.units:
        print(f"  {u.type:<8} {u.name}  ({u.module})")
        print(f"           {u.description or '(no description: add a docstring to the do_ method)'}")
        if u.properties:
            print(f"           parameters: {u.properties}")
    if catalog.rejections:
        print("Rejected:")
        for r in catalog.rejections:
            print(f"  {r.module}{':' + r.unit if r.unit else ''}: {r.reason}")
    return 0


def serve(cfg, simulate=None):
    logs.configure(cfg.log.level, cfg.log.file)
    raise_open_file_limit()
    if not cfg.plugin_folder.is_dir():
        raise ConfigError(f"plugins.folder: {cfg.plugin_folder} is not a folder")
    sim, password = None, None
    if simulate:
        sim = _simulated_engine(simulate)
        cfg, password = cfg.replace({"engine.url": sim.url, "engine.user": sim.user}), sim.password
    wake_r = _record_signals()
    executor = Executor(cfg, password=password)
    try:
        catalog = executor.start()
        log.info("%d policy units from %s (%d rejected)", len(catalog.units), cfg.plugin_folder,
                 len(catalog.rejections))
        for r in catalog.rejections:
            log.warning("rejected %s%s: %s", r.module, ":" + r.unit if r.unit else "", r.reason)
        try:
            # Each running call holds a handler thread; the spare ones answer discover and faults.
            server = ProxyServer(cfg.server, EngineProtocol(executor, cfg.plugins.timeout),
                                 threads=cfg.plugins.concurrency + 8)
        except OSError as e:
            raise ConfigError(f"cannot listen on {cfg.server.host}:{cfg.server.port}: {e.strerror}; "
                              "set server.host/server.port (--host/--port)") from None
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        log.info("listening on %s", server.url)
        _signal_loop(wake_r, server, executor, cfg.plugins.timeout)
        server.shutdown()
        server.server_close()
    finally:
        executor.stop()
        if sim:
            sim.stop()
    log.info("stopped")
    return 0


def _simulated_engine(snapshot_path):
    from .sim import SimulatedEngine
    from .snapshot import load_snapshot
    try:
        sim = SimulatedEngine(load_snapshot(snapshot_path)).start()
    except (OSError, ValueError) as e:
        raise ConfigError(f"--simulate {snapshot_path}: {e}") from None
    log.info("simulated engine serving %s at %s", snapshot_path, sim.url)
    return sim


def _record_signals():
    """Signals are only recorded (as bytes on a pipe, by the interpreter); _signal_loop acts
    on them.  Returns the pipe's read end."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: None)
    return wake_r


def _signal_loop(wake_r, server, executor, timeout):
    drained_r, drained_w = os.pipe()
    stopping = False
    while True:
        try:
            ready, _, _ = select.select([wake_r, drained_r], [], [])
        except InterruptedError:
            continue
        if drained_r in ready:
            return
        for signum in os.read(wake_r, 64):
            if signum == signal.SIGHUP and not stopping:
                try:
                    executor.reload("SIGHUP")
                except ProxyError as e:
                    log.error("reload failed, keeping the units loaded before: %s", e)
            elif signum in (signal.SIGTERM, signal.SIGINT):
                if stopping:
                    log.warning("second stop signal: stopping now")
                    return
                stopping = True
                log.info("stopping: no new connections, waiting for calls in progress")
                threading.Thread(target=_drain, args=(server, timeout, drained_w), daemon=True).start()


def _drain(server, timeout, drained_w):
    server.shutdown()  # stop accepting; calls in progress go on
    if not server.wait_idle(timeout + 2):
        log.warning("calls still running after %.0f s; stopping anyway", timeout + 2)
    os.write(drained_w, b"x")


if __name__ == "__main__":
    sys.exit(main())
