"""Units that write to stderr: a little, and a flood with a forged log line in it."""
import sys


class chatty:
    def do_filter(self, hosts, vm, args):
        """Says something on stderr, then passes every host."""
        print("checking hosts\twith a tab", file=sys.stderr)
        return hosts


class flood:
    def do_filter(self, hosts, vm, args):
        """Writes 64 MiB to stderr, starting with a forged log line, then passes every host."""
        forged = "\n2026-01-01 00:00:00,000 ERROR proxy.server[1]: request forged-1 FORGED\n"
        sys.stderr.write(forged)
        chunk = "x" * (1 << 20)
        for _ in range(64):
            sys.stderr.write(chunk)
        return hosts
