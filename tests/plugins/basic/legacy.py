"""Units written the original proxy's way: they print their answer."""


class legacy_filter:
    def do_filter(self, hosts, vm, args):
        """Prints the hosts that pass as a Python literal."""
        print("some log line first")
        print(hosts[::2])


class legacy_balance:
    def do_balance(self, hosts, args):
        """Prints (vm, hosts)."""
        print(("3fd0bb5e-2f4b-4e5a-9b6c-0d1e2f3a4b5c", hosts))


class legacy_silent:
    def do_balance(self, hosts, args):
        """Prints nothing: nothing to do."""
