"""Units for the warm-worker tests: each answers with the pid of the worker that ran it."""
import os
import threading

KEPT = []  # what `keep_mb` leaves behind in the worker


class reused:
    reuse_worker = True

    def do_filter(self, hosts, vm, args):
        if args.get("fail"):
            raise RuntimeError("asked to fail")
        if args.get("thread"):
            threading.Thread(target=threading.Event().wait, daemon=True).start()  # runs on
        if args.get("keep_mb"):
            KEPT.append(bytearray(int(args["keep_mb"]) << 20))
            for i in range(0, len(KEPT[-1]), 4096):
                KEPT[-1][i] = 1  # resident, not just reserved
        return [str(os.getpid())]


class also_reused:
    reuse_worker = True

    def do_filter(self, hosts, vm, args):
        return [str(os.getpid())]


class fresh_each_time:
    def do_filter(self, hosts, vm, args):
        return [str(os.getpid())]
