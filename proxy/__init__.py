"""The oVirt external scheduler proxy (README.md has the map of its modules)."""

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
