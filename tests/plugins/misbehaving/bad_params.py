class bad_params:
    properties_validation = "{ cpu = [0-9] }"

    def do_filter(self, hosts, vm, args):
        """Has a parameter map in the wrong (old PLUGINS.txt) syntax."""
        return hosts


class good_neighbour:
    properties_validation = "good_neighbour_max=[0-9]+;"

    def do_filter(self, hosts, vm, args):
        """Lives in the same module as a rejected unit, and is fine."""
        return hosts
