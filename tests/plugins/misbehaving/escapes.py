"""Units whose descendants try to outlive the call: a new session, a daemon's double fork."""
import os
import time


def _leave_behind(pid_file, double_fork, hang):
    """Start a process in its own session (setsid) that records its pid and sleeps; with
    double_fork, as a daemon does: the session leader forks again and exits."""
    if os.fork() == 0:
        os.setsid()
        if double_fork and os.fork() != 0:
            os._exit(0)
        with open(pid_file + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(pid_file + ".tmp", pid_file)
        time.sleep(3600)
        os._exit(0)
    while not os.path.exists(pid_file):
        time.sleep(0.01)
    if hang:
        time.sleep(3600)


class setsid_grandchild:
    def do_filter(self, hosts, vm, args):
        """Leaves a grandchild in a new session, answers at once."""
        _leave_behind(args["pid_file"], double_fork=False, hang=False)
        return hosts


class daemon_grandchild:
    def do_balance(self, hosts, args):
        """Daemonises a grandchild (setsid, double fork), then hangs until its timeout."""
        _leave_behind(args["pid_file"], double_fork=True, hang=True)
