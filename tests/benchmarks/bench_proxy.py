"""Benchmark: unit-call latency and throughput of the proxy against the cold-start baseline.

Run with `make bench`.  The baseline is measured in the same run on the same machine: the
original oVirt proxy's execution path (cold_start_proxy.py: XML-RPC, then a fresh
`python3 -c 'import module; print(module.Cls().do_x(...))'` per call).  Both are called the
same way, over XML-RPC with one keep-alive connection per caller.  The unit's module
imports ovirtsdk4, as real plugins do.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client
from pathlib import Path

from tests.support import PLUGINS, ProxyProcess, descendants, execution_processes, wait_until

SPARES = 4  # plugins.spare_workers by default

FOLDER = PLUGINS / "sdk"
HOSTS = [f"6a1e0000-0000-0000-0000-{i:012d}" for i in range(10)]
VM = "3fd0bb5e-2f4b-4e5a-9b6c-0d1e2f3a4b5c"
CALLS = {
    "runLoadBalancing": ("sdk_balance", HOSTS, {}),
    "runFilters": (["sdk_filter"], HOSTS, VM, {}),
    "runCostFunctions": ([["sdk_score", 1]], HOSTS, VM, {}),
}


def run_threads(make_call, concurrency, per_thread):
    """Latencies of per_thread calls in each of `concurrency` threads, and the wall time."""
    latencies, lock = [], threading.Lock()
    barrier = threading.Barrier(concurrency + 1)

    def run():
        fn = make_call()
        fn()  # connect (keep-alive) before the clock starts
        barrier.wait()
        mine = []
        for _ in range(per_thread):
            t = time.perf_counter()
            fn()
            mine.append(time.perf_counter() - t)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run) for _ in range(concurrency)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - start


def measure_side_by_side(make_proxy, make_base, concurrency, rounds, proxy_per_thread, base_per_thread):
    """Both measured in alternating rounds, so a change in the machine's load hits both alike.
    Returns ((p50 ms, p99 ms, calls/s) for the proxy, the same for the baseline)."""
    sides = {"proxy": ([], 0.0), "base": ([], 0.0)}
    for _ in range(rounds):
        for side, make, n in (("proxy", make_proxy, proxy_per_thread), ("base", make_base, base_per_thread)):
            lat, wall = run_threads(make, concurrency, n)
            sides[side] = (sides[side][0] + lat, sides[side][1] + wall)
    out = []
    for lat, wall in sides.values():
        lat.sort()
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        out.append((statistics.median(lat) * 1000, p99 * 1000, len(lat) / wall))
    return out


def caller(url, method):
    args = CALLS[method]

    def make():
        proxy = xmlrpc.client.ServerProxy(url)  # one keep-alive connection per caller, as the engine
        fn = getattr(proxy, method)

        def once():
            answer = fn(*args)
            assert answer["result_code"] == 0, answer
        return once
    return make


def start_baseline():
    proc = subprocess.Popen([sys.executable, "-m", "tests.benchmarks.cold_start_proxy", str(FOLDER)],
                            stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def rss_kib(pid, field="VmRSS"):
    try:
        if field == "Pss":
            with open(f"/proc/{pid}/smaps_rollup") as f:
                lines = f.read().splitlines()
        else:
            with open(f"/proc/{pid}/status") as f:
                lines = f.read().splitlines()
        for line in lines:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main():
    print(f"oVirt scheduler proxy benchmark — {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"unit module imports ovirtsdk4, {len(HOSTS)} hosts per call\n")
    with tempfile.TemporaryDirectory() as tmp:
        proxy = ProxyProcess(Path(tmp), FOLDER)  # default INFO: one log line per call, as in production
        baseline, baseline_url = start_baseline()
        try:
            # Memory first, while idle: the server, its fork server and the spare workers.
            server = proxy.proc.pid
            # The journal's writer is a child too; the count waited for is the execution's.
            wait_until(lambda: len(execution_processes(server)) == 1 + SPARES, 30, "the spare workers")
            below = descendants(server)
            print("Resident memory, idle (RSS; PSS counts shared pages once):")
            print(f"  server       pid {server:<7} RSS {rss_kib(server) / 1024:6.1f} MiB  "
                  f"PSS {rss_kib(server, 'Pss') / 1024:6.1f} MiB")
            execution = execution_processes(server)
            for pid in below:
                role = ("journal writer" if pid not in execution else
                        "fork server" if _ppid(pid) == server else "spare worker")
                print(f"  {role:<14} pid {pid:<7} RSS {rss_kib(pid) / 1024:6.1f} MiB  "
                      f"PSS {rss_kib(pid, 'Pss') / 1024:6.1f} MiB")
            total_pss = sum(rss_kib(p, "Pss") for p in [server] + below) / 1024
            print(f"  total PSS {total_pss:.1f} MiB\n")

            header = f"{'method':<18}{'conc':>5}{'proxy p50':>11}{'p99':>9}{'calls/s':>10}" \
                     f"{'baseline p50':>14}{'p99':>9}{'calls/s':>10}{'p50 ratio':>11}{'tput ratio':>12}"
            print(header)
            print("-" * len(header))
            verdicts = []
            for method in CALLS:
                for conc, rounds, n_proxy, n_base in ((1, 6, 60, 4), (8, 4, 25, 2)):
                    (p50, p99, rate), (b50, b99, brate) = measure_side_by_side(
                        caller(proxy.url, method), caller(baseline_url, method), conc, rounds, n_proxy, n_base)
                    ratio, tput = b50 / p50, rate / brate
                    print(f"{method:<18}{conc:>5}{p50:>9.2f}ms{p99:>7.2f}ms{rate:>10.0f}"
                          f"{b50:>12.1f}ms{b99:>7.1f}ms{brate:>10.1f}{ratio:>10.0f}x{tput:>11.0f}x")
                    if conc == 1:
                        verdicts.append((f"{method} p50 at concurrency 1 ≥ 50× lower", ratio >= 50))
                    else:
                        verdicts.append((f"{method} throughput at concurrency 8 ≥ 20×", tput >= 20))
            print()
            for what, ok in verdicts:
                print(f"  {'MET ' if ok else 'MISSED'}  {what}")
        finally:
            proxy.stop()
            baseline.terminate()
            baseline.wait()


def _ppid(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


if __name__ == "__main__":
    main()
