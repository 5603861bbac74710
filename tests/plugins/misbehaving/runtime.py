"""Units that misbehave when called. Each must still give the engine a well-formed answer."""
import os
import sys
import time


class raises:
    def do_filter(self, hosts, vm, args):
        """Raises."""
        raise RuntimeError("boom in raises")


class hangs:
    def do_balance(self, hosts, args):
        """Never returns."""
        time.sleep(3600)


class hangs_filter:
    def do_filter(self, hosts, vm, args):
        """Never returns."""
        time.sleep(3600)


class garbage:
    def do_filter(self, hosts, vm, args):
        """Prints something that is not a Python literal."""
        print("<<< this is not python >>>")


class huge_output:
    def do_balance(self, hosts, args):
        """Prints 64 MiB."""
        chunk = "x" * (1 << 20)
        for _ in range(64):
            sys.stdout.write(chunk)
        sys.stdout.flush()


class exits:
    def do_score(self, hosts, vm, args):
        """Ends its process without answering."""
        os._exit(3)


class calls_sys_exit:
    def do_filter(self, hosts, vm, args):
        """Calls sys.exit."""
        sys.exit(4)


class grandchild_returns:
    def do_filter(self, hosts, vm, args):
        """Forks a grandchild that keeps stdout open and sleeps, then answers at once."""
        if os.fork() == 0:
            with open(args["pid_file"], "w") as f:
                f.write(str(os.getpid()))
            time.sleep(3600)
            os._exit(0)
        while not os.path.exists(args["pid_file"]) or not open(args["pid_file"]).read():
            time.sleep(0.01)
        return hosts


class grandchild_hangs:
    def do_balance(self, hosts, args):
        """Forks a grandchild that keeps stdout open, then hangs itself."""
        if os.fork() == 0:
            with open(args["pid_file"], "w") as f:
                f.write(str(os.getpid()))
            time.sleep(3600)
            os._exit(0)
        time.sleep(3600)


class float_scores:
    def do_score(self, hosts, vm, args):
        """Floats, NaN-free, some huge."""
        return [(h, 1e12 if i == 0 else 2.6) for i, h in enumerate(hosts)]


class nan_score:
    def do_score(self, hosts, vm, args):
        """A NaN score."""
        return [(h, float("nan")) for h in hosts]


class dict_filter:
    def do_filter(self, hosts, vm, args):
        """Returns a dict instead of a list."""
        return {"a": 1}


class not_a_uuid:
    def do_balance(self, hosts, args):
        """Answers with a VM id that is not a UUID."""
        return ("vm-1", hosts)


class foreign_hosts:
    def do_balance(self, hosts, args):
        """Answers with hosts that were not sent."""
        return ("3fd0bb5e-2f4b-4e5a-9b6c-0d1e2f3a4b5c", ["not-sent"])


class odd_type:
    def do_filter(self, hosts, vm, args):
        """Returns an object that cannot travel."""
        return [object()]


class eats_memory:
    def do_filter(self, hosts, vm, args):
        """Allocates 64 MiB at a time until something stops it."""
        hoard = []
        while True:
            hoard.append(bytearray(64 << 20))
