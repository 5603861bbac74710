"""`ovirt-scheduler-proxy simulate`: a simulated engine on its own, or a generated snapshot file."""

import argparse
import json
import signal
import sys
import threading

from ..snapshot import compact, load_snapshot
from .engine import SimulatedEngine
from .generate import generate_snapshot

__all__ = ["build_parser", "main"]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="ovirt-scheduler-proxy simulate",
        description="Serve a simulated oVirt engine (REST API v4 subset) from a cluster snapshot.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--snapshot", metavar="FILE", help="cluster snapshot (JSON) to serve")
    source.add_argument("--generate", nargs=2, type=int, metavar=("HOSTS", "VMS"),
                        help="generate a snapshot of this size (served, or written with --out)")
    parser.add_argument("--out", metavar="FILE", help="with --generate: write the snapshot here and exit")
    parser.add_argument("--seed", type=int, default=0, help="with --generate: random seed (default 0)")
    parser.add_argument("--clusters", type=int, default=1, help="with --generate: clusters (default 1)")
    parser.add_argument("--pressure-hosts", type=int, default=1,
                        help="with --generate: hosts with under 500 MB free (default 1)")
    parser.add_argument("--affinity-groups", type=int, default=0, metavar="N",
                        help="with --generate: affinity groups the placement satisfies (default 0)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    parser.add_argument("--user", default="admin@internal", help="SSO user (default admin@internal)")
    parser.add_argument("--password-file", metavar="F",
                        help="file holding the SSO password (default password: secret)")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.out and not args.generate:
        parser.error("--out needs --generate")
    try:
        snapshot = _snapshot(args)
        if args.out:
            with open(args.out, "w") as f:
                # Without empty sections, a file is the same as before affinity and events existed.
                json.dump(compact(snapshot), f, indent=1)
                f.write("\n")
            return 0
        engine = SimulatedEngine(snapshot, host=args.host, port=args.port, user=args.user,
                                 password=_password(args.password_file))
        engine.start()
    except (OSError, ValueError) as e:
        print(f"{parser.prog}: {e}", file=sys.stderr)
        return 2
    _serve_until_signalled(engine)
    return 0


def _snapshot(args):
    if args.generate:
        return generate_snapshot(*args.generate, seed=args.seed, clusters=args.clusters,
                                 pressure_hosts=args.pressure_hosts,
                                 affinity_groups=args.affinity_groups)
    return load_snapshot(args.snapshot)


def _password(path):
    if not path:
        return "secret"
    with open(path) as f:
        return f.read().rstrip("\r\n")


def _serve_until_signalled(engine):
    """Prints the API URL, the line a caller waits for, then serves until SIGTERM or SIGINT."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(engine.url, flush=True)
    try:
        while not stop.wait(3600):
            pass
    finally:
        engine.stop()


if __name__ == "__main__":
    sys.exit(main())
