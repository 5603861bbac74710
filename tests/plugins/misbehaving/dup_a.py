class dup_unit:
    def do_filter(self, hosts, vm, args):
        """The first of two units with one name."""
        return hosts
