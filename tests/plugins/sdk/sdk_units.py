"""Units that import the oVirt SDK at module level, as real plugins do (used by the benchmark)."""
import ovirtsdk4  # noqa: F401
import ovirtsdk4.types  # noqa: F401


class sdk_balance:
    def do_balance(self, hosts, args):
        """Picks the same VM every time."""
        return ("3fd0bb5e-2f4b-4e5a-9b6c-0d1e2f3a4b5c", hosts[1:])


class sdk_filter:
    def do_filter(self, hosts, vm, args):
        """Lets every host pass."""
        return hosts


class sdk_score:
    def do_score(self, hosts, vm, args):
        """Scores by position."""
        return [(h, i) for i, h in enumerate(hosts)]
