class dup_unit:
    def do_filter(self, hosts, vm, args):
        """The second of two units with one name: rejected."""
        return []
