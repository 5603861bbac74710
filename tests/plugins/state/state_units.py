"""Units that show what engine state they were given (for the snapshot tests)."""
import os

from proxy import engine


class what_state:
    def do_filter(self, hosts, vm, args):
        """Answers [snapshot version, host count, VM count, pid] of the shared state."""
        snap = engine.snapshot()
        return [str(snap.version), str(len(snap.hosts)), str(len(snap.vms)), str(os.getpid())]


class fresh_state:
    def do_filter(self, hosts, vm, args):
        """Answers [version, host count] of a read made now (max_age=0)."""
        snap = engine.snapshot(max_age=0)
        return [str(snap.version), str(len(snap.hosts))]


class no_state:
    def do_filter(self, hosts, vm, args):
        """Reads nothing of the engine."""
        return hosts
