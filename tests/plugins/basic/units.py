"""Well-behaved units for the proxy's tests."""


class keep_all:
    def do_filter(self, hosts, vm, args):
        """Lets every host pass."""
        return hosts


class drop_marked:
    properties_validation = "drop_marker=.*"

    def do_filter(self, hosts, vm, args):
        """Drops hosts whose id contains the drop_marker property (default 'bad')."""
        marker = args.get("drop_marker", "bad")
        return [h for h in hosts if marker not in h]


class by_length:
    def do_score(self, hosts, vm, args):
        """Scores a host by the length of its id."""
        return [(h, len(h)) for h in hosts]


class by_position:
    def do_score(self, hosts, vm, args):
        """Scores hosts 0, 1, 2... in the order they were sent, as floats."""
        return [(h, i + 0.4) for i, h in enumerate(hosts)]


class first_vm:
    properties_validation = "vm_to_move=[0-9a-f-]*"

    def do_balance(self, hosts, args):
        """Moves the VM named by vm_to_move to every host but the first."""
        vm = args.get("vm_to_move")
        return (vm, hosts[1:]) if vm else None


class noisy:
    def do_filter(self, hosts, vm, args):
        """Prints chatter and returns a result: the chatter must not corrupt it."""
        print("debug: starting", hosts)
        print("['not', 'the', 'answer']")
        return hosts[:1]


class both_kinds:
    def do_filter(self, hosts, vm, args):
        """Filter half of a class that is two units."""
        return hosts

    def do_score(self, hosts, vm, args):
        """Score half of a class that is two units."""
        return {h: 1 for h in hosts}
