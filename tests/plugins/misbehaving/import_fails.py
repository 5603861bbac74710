import this_module_does_not_exist  # noqa: F401


class never_seen:
    def do_filter(self, hosts, vm, args):
        return hosts
