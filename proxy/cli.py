"""Command line: `ovirt-scheduler-proxy serve|list|check|config|simulate|journal|explain|balance|replay`
(also `python -m proxy`); journal and explain are proxy/views.py, balance proxy/dryrun.py, replay
proxy/replay.py, `simulate UNIT` proxy/whatif_cli.py."""

import argparse
import dataclasses
import json
import logging
import os
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import xmlrpc.client

# No module here imports the SDK (ovirtsdk4, ~19 MiB): `serve` keeps it out of the server
# (tests/test_cli.py checks); check, dryrun --engine and replay load it when they run.
from . import child_environment, dryrun, health, logs, metrics, moves, policy, replay, systemd, views
from . import journal as journal_mod
from . import config as config_mod
from .errors import ConfigError, ProxyError
from .executor import Executor
from .listener import raise_open_file_limit
from .protocol import EngineProtocol
from .registry import UNIT_TYPES
from .server import ProxyServer

log = logging.getLogger("proxy")

# The engine check at start: the probe's own deadline (check.ENGINE_TIMEOUT, 15 s) plus the
# child's start (the SDK's import, a busy machine).
ENGINE_CHECK_TIMEOUT = 60.0


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
    state = serve.add_mutually_exclusive_group()
    state.add_argument("--simulate", metavar="SNAPSHOT",
                       help="also start a simulated oVirt engine on this cluster snapshot (JSON) and point "
                            "the units at it: a demo without a real engine")
    state.add_argument("--snapshot", metavar="FILE",
                       help="run the units on the engine state in this snapshot file (the --simulate "
                            "format), with no engine at all: for rehearsing decisions")

    lst = sub.add_parser("list", help="list the policy units a plugin folder holds, and the rejected ones "
                                      "(or, with --server, the units a running proxy serves)")
    lst.add_argument("--config", metavar="FILE")
    _add_setting_flags(lst, ["plugins.folder", "plugins.timeout"])
    lst.add_argument("--server", metavar="URL", help="ask the proxy running at URL (its discover answer), "
                                                     "e.g. http://127.0.0.1:18781/")
    lst.add_argument("--json", action="store_true", help="machine-readable output")

    chk = sub.add_parser("check", help="check the configuration, log file, plugins and engine before "
                                       "deploying; exit code 1 if anything is wrong")
    chk.add_argument("--config", metavar="FILE", help="the configuration file `serve` will use")
    _add_setting_flags(chk, flagged)

    sub.add_parser("config", help="print the default configuration file, every key commented")

    sub.add_parser("simulate", help="run only the simulated oVirt engine (see `simulate --help`); "
                                  "`simulate UNIT --snapshot FILE --rounds N`: a what-if of N balancing passes")
    views.add_parsers(sub)
    dryrun.add_parser(sub)
    replay.add_parser(sub)
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    what_if = argv[:1] == ["simulate"] and len(argv) > 1 and not argv[1].startswith("-")
    if argv[:1] == ["simulate"] and not what_if:  # its own flags, parsed by the simulator
        from .sim import cli as sim_cli
        return sim_cli.main(argv[1:])
    if what_if:  # `simulate UNIT ...`: its own flags too
        from . import whatif_cli
        args = whatif_cli.build_parser().parse_args(argv[1:])
        args.command = "what-if"
    else:
        args = build_parser().parse_args(argv)
    try:
        if args.command == "what-if":
            from . import whatif_cli
            return whatif_cli.run(args)
        if args.command == "config":
            sys.stdout.write(config_mod.render_default_file())
            return 0
        if args.command in ("journal", "explain", "balance", "replay"):
            return {"journal": views.show_journal, "explain": views.show_explain,
                    "balance": dryrun.run, "replay": replay.run}[args.command](args)
        if args.command == "check":
            from . import check
            return check.run(args.config, _overrides(args))
        if args.command == "list" and args.server:
            return list_served(args.server, args.json)
        cfg = config_mod.load(args.config, _overrides(args))
        if args.command == "list":
            return list_units(cfg, args.json)
        return serve(cfg, args.simulate, args.snapshot)
    except ConfigError as e:
        print(f"ovirt-scheduler-proxy: configuration error: {e}", file=sys.stderr)
        return 2
    except ProxyError as e:
        print(f"ovirt-scheduler-proxy: {e}", file=sys.stderr)
        return 1


def list_units(cfg, as_json):
    logs.configure("WARNING", "")
    from . import check
    catalog = check.catalog_of(cfg)
    if as_json:
        json.dump({"folder": str(cfg.plugin_folder), **catalog.to_wire()}, sys.stdout, indent=2)
        print()
        return 0
    _print_units(f"Policy units in {cfg.plugin_folder}:", [dataclasses.asdict(u) for u in catalog.units])
    if catalog.rejections:
        print("Rejected:")
        for r in catalog.rejections:
            print(f"  {r.module}{':' + r.unit if r.unit else ''}: {r.reason}")
    return 0


LIST_TIMEOUT = 30.0  # seconds for a running proxy's discover answer


def list_served(url, as_json):
    """The units the proxy at url serves, from its discover answer (module and rejections
    are not in it: `list` without --server shows them for a folder)."""
    try:
        answer = _server_proxy(url).discover()
        units = [{"type": utype, "name": name, "description": desc, "properties": props}
                 for utype, (_, key) in UNIT_TYPES.items() for name, (desc, props) in answer[key].items()]
    except (OSError, xmlrpc.client.Error) as e:
        raise ProxyError(f"cannot list the units of the proxy at {url}: {e}; is it running there "
                         "(`systemctl status ovirt-scheduler-proxy`), and is the URL its server.host and "
                         "server.port?") from None
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ProxyError(f"{url} answered discover, but not the way the proxy does: is it the proxy?") from None
    if as_json:
        json.dump({"server": url, "units": units}, sys.stdout, indent=2)
        print()
    else:
        _print_units(f"Policy units served by {url}:", units)
    return 0


def _server_proxy(url):
    base = xmlrpc.client.SafeTransport if url.startswith("https:") else xmlrpc.client.Transport

    class Bounded(base):  # the standard transports wait forever for an answer
        def make_connection(self, host):
            conn = super().make_connection(host)
            conn.timeout = LIST_TIMEOUT
            return conn
    return xmlrpc.client.ServerProxy(url, transport=Bounded())


def _print_units(header, units):
    print(header)
    if not units:
        print("  (none)")
    for u in units:
        print(f"  {u['type']:<8} {u['name']}" + (f"  ({u['module']})" if u.get("module") else ""))
        print(f"           {u['description'] or '(no description: add a docstring to the do_ method)'}")
        if u["properties"]:
            print(f"           parameters: {u['properties']}")


def serve(cfg, simulate=None, snapshot_file=None):
    logs.configure(cfg.log.level, cfg.log.file, cfg.log.format)
    raise_open_file_limit()
    if not cfg.plugin_folder.is_dir():
        raise ConfigError(f"plugins.folder: {cfg.plugin_folder} is not a folder")
    notifier = systemd.Notifier()  # before any child starts: they must not inherit NOTIFY_SOCKET
    sim, password = None, None
    if simulate:
        sim = _simulated_engine(simulate)
        cfg, password = cfg.replace({"engine.url": sim.url, "engine.user": sim.user}), sim.password
    if snapshot_file:
        snapshot_file = _checked_snapshot(snapshot_file)
        password = ""
    wake_r = _record_signals()
    journal = _journal(cfg, snapshot_file)  # before the executor: its fork server inherits the spool
    executor = Executor(cfg, password=password, snapshot_file=snapshot_file or "")
    executor.ledger = _ledger(cfg, journal)
    monitor = None
    try:
        catalog = executor.start()
        log.info("%d policy units from %s (%d rejected)", len(catalog.units), cfg.plugin_folder,
                 len(catalog.rejections))
        for r in catalog.rejections:
            log.warning("rejected %s%s: %s", r.module, ":" + r.unit if r.unit else "", r.reason)
        problems = policy.problems(cfg.units, catalog)
        if problems:
            raise ConfigError("; ".join(problems))
        server = _listen(cfg, executor, journal)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        log.info("listening on %s", server.url)
        monitor = _monitor(cfg, executor)
        threading.Thread(target=_check_engine, args=(cfg, executor.password), daemon=True).start()
        notifier.send("READY=1")
        notifier.start_watchdog(lambda: health.alive(executor, thread))
        _signal_loop(wake_r, server, executor, cfg.plugins.timeout)
        server.shutdown()
        server.server_close()
    finally:
        notifier.stop()
        if monitor:
            monitor.stop()
        metrics.watch(None)
        executor.stop()
        if sim:
            sim.stop()
        if journal:
            journal.close()
    log.info("stopped")
    return 0


def _journal(cfg, snapshot_file):
    """The decision journal (journal.path), or None when it is off."""
    path = journal_mod.resolve(cfg.journal.path)
    if path is None:
        shadowed = sorted(n for n, p in cfg.units.items() if p.shadow)
        if shadowed:
            log.warning("shadow units of %s run only with the journal on (journal.path is empty): "
                        "they will not run", ", ".join(shadowed))
        return None
    try:
        journal = journal_mod.Journal(path, cfg.journal.max_days, cfg.journal.max_mb,
                                      log_settings=[cfg.log.level, str(cfg.log.file or ""), cfg.log.format])
    except (OSError, sqlite3.Error) as e:
        raise ConfigError(f"journal.path: cannot open the journal {path}: {e}; make its folder writable "
                          "by the proxy's user, or set journal.path (\"\" turns the journal off)") from None
    os.environ[journal_mod.SPOOL_ENV] = str(journal.spool)
    if snapshot_file:
        from .snapshot import load_snapshot
        journal.spool_document(1, load_snapshot(snapshot_file))  # holding.load_file's version
    log.info("journal: %s", path)
    return journal


def _ledger(cfg, journal):
    """The moves ledger (proxy/moves.py): filled from the journal, so a restart remembers what
    it proposed; with the journal off, it follows the engine's migration events instead."""
    ledger = moves.Ledger.from_config(cfg, events=journal is None)
    if journal is not None:
        reader = journal_mod.Reader(journal.path)
        try:
            found = ledger.fill_from_journal(reader)
        except sqlite3.Error as e:  # a damaged journal must not keep the proxy from serving
            log.warning("moves: cannot read the journal's recent balance answers: %s", e)
            found = 0
        finally:
            reader.close()
        log.info("moves: %d proposed within the last %.0f min, from the journal", found, ledger.lookback / 60)
    else:
        log.info("moves: the journal is off; following the engine's migration events")
    return ledger


def _listen(cfg, executor, journal=None):
    try:
        # Each running call holds a handler thread; the spare ones answer discover and faults.
        return ProxyServer(cfg.server, EngineProtocol(executor, cfg.plugins.timeout, cfg.protocol.score_rows),
                           threads=cfg.plugins.concurrency + 8, journal=journal)
    except OSError as e:
        raise ConfigError(f"cannot listen on {cfg.server.host}:{cfg.server.port}: {e.strerror}; "
                          "set server.host/server.port (--host/--port)") from None


def _monitor(cfg, executor):
    """The /metrics and /health listener, when server.metrics_port is set."""
    metrics.watch(executor)
    if not cfg.server.metrics_port:
        return None
    try:
        monitor = health.MonitorServer(cfg.server.host, cfg.server.metrics_port, executor).start()
    except OSError as e:
        raise ConfigError(f"server.metrics_port: cannot listen on {cfg.server.host}:{cfg.server.metrics_port}: "
                          f"{e.strerror}; choose another port (--metrics-port), or 0 for none") from None
    log.info("metrics on http://%s:%d/metrics, health on /health", cfg.server.host, monitor.port)
    return monitor


def _check_engine(cfg, password):
    """The engine part of `check`, logged; the proxy serves whatever it finds.  It runs in a
    child (`python -m proxy.check`), so the SDK never loads into the server."""
    e = cfg.engine
    given = {"url": e.url, "user": e.user, "password": password, "ca_file": str(e.ca_file or ""),
             "insecure": e.insecure}
    try:
        done = subprocess.run([sys.executable, "-m", "proxy.check"], input=json.dumps(given), text=True,
                              capture_output=True, env=child_environment(), timeout=ENGINE_CHECK_TIMEOUT)
        finding = json.loads(done.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        log.error("engine check: it did not finish (%s); `ovirt-scheduler-proxy check` runs it alone",
                  exc if not isinstance(exc, ValueError) else f"exit code {done.returncode}: "
                  f"{done.stderr.strip()[-500:]}")
        return
    if finding["asked"]:
        metrics.engine_request("startup", failed=not finding["ok"])
    if finding["ok"]:
        log.info("engine check: %s", finding["text"])
    else:
        log.error("engine check failed (serving anyway; units that use the engine fail until this is "
                  "fixed, `ovirt-scheduler-proxy check` checks again): %s", finding["text"])


def _simulated_engine(snapshot_path):
    from .sim import SimulatedEngine
    from .snapshot import load_snapshot
    try:
        sim = SimulatedEngine(load_snapshot(snapshot_path)).start()
    except (OSError, ValueError) as e:
        raise ConfigError(f"--simulate {snapshot_path}: {e}") from None
    log.info("simulated engine serving %s at %s", snapshot_path, sim.url)
    return sim


def _checked_snapshot(path):
    """The snapshot file's absolute path, once it has been read and validated here: a
    wrong file is a configuration error (exit 2), not a fork server that fails to start."""
    from .snapshot import SnapshotError, load_snapshot
    try:
        load_snapshot(path)
    except SnapshotError as e:
        raise ConfigError(f"--snapshot: {e}") from None
    log.info("units read the engine state in %s (no engine is used)", path)
    return os.path.abspath(path)


def _record_signals():
    """Signals are only recorded (as bytes on a pipe, by the interpreter); _signal_loop acts
    on them.  Returns the pipe's read end."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: None)
    return wake_r


def _reload_in_background(executor, reloading):
    """SIGHUP's reload, on its own thread: a slow one (a plugin import that hangs until
    plugins.timeout) must never delay a stop signal.  One at a time; calls in flight finish
    on the generation they started on (executor.reload retires the old one)."""
    if not reloading.acquire(blocking=False):
        log.info("SIGHUP: a reload is already running; its result includes the current files")
        return

    def run():
        try:
            executor.reload("SIGHUP")
        except ProxyError as e:
            log.error("reload failed, keeping the units loaded before: %s", e)
        finally:
            reloading.release()
    threading.Thread(target=run, name="reload", daemon=True).start()


def _signal_loop(wake_r, server, executor, timeout):
    drained_r, drained_w = os.pipe()
    stopping, reloading = False, threading.Lock()
    while True:
        try:
            ready, _, _ = select.select([wake_r, drained_r], [], [])
        except InterruptedError:
            continue
        if drained_r in ready:
            return
        for signum in os.read(wake_r, 64):
            if signum == signal.SIGHUP and not stopping:
                _reload_in_background(executor, reloading)
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
