"""The oVirt external scheduler proxy (README.md has the map of its modules)."""

import contextlib
import os
from pathlib import Path

_PARENT = str(Path(__file__).resolve().parent.parent)


def child_environment():
    """os.environ for a `python -m proxy.<module>` child (the fork server, the journal's
    writer, the engine check at start): this package importable whatever the working
    directory, and no OVIRT_ENGINE_PASSWORD, which every process the child starts would
    inherit (a child that needs the password gets it on stdin)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (_PARENT, os.environ.get("PYTHONPATH")) if p))
    env.pop("OVIRT_ENGINE_PASSWORD", None)
    return env


def exit_at_low_priority(code):
    """os._exit(code) for a forked child (a worker, the engine state reader), at nice 19.

    The kernel unmaps a process's memory in its own context as it exits: for a worker
    holding a 1,000-host snapshot copy-on-write, or the reader with the engine's parsed
    answers, tens of milliseconds of CPU, and after a refresh a dozen of them end together.
    At nice 19 that work waits for the unit calls running beside it."""
    with contextlib.suppress(OSError):
        os.nice(19)
    os._exit(code)
