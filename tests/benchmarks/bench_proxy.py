"""Benchmark: unit-call latency and throughput of the proxy against the cold-start baseline.

Run with `make bench`.  The baseline is measured in the same run on the same machine: a
fresh `python3 -c 'import module; module.Cls().do_x(...)'` per call, which is what the
original oVirt proxy does (without even its XML-RPC round trip, so the ratio is conservative).
The unit's module imports ovirtsdk4, as real plugins do.
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

from tests.conftest import PLUGINS, ProxyProcess, descendants

FOLDER = PLUGINS / "sdk"
HOSTS = [f"6a1e0000-0000-0000-0000-{i:012d}" for i in range(10)]
VM = "3fd0bb5e-2f4b-4e5a-9b6c-0d1e2f3a4b5c"
CALLS = {
    "runLoadBalancing": (("sdk_balance", HOSTS, {}), "do_balance(%r, {})" % HOSTS),
    "runFilters": ((["sdk_filter"], HOSTS, VM, {}), "do_filter(%r, %r, {})" % (HOSTS, VM)),
    "runCostFunctions": (([["sdk_score", 1]], HOSTS, VM, {}), "do_score(%r, %r, {})" % (HOSTS, VM)),
}
CLASSES = {"runLoadBalancing": "sdk_balance", "runFilters": "sdk_filter", "runCostFunctions": "sdk_score"}


def measure(call_once, concurrency, total):
    """(p50 ms, p99 ms, calls/s) of `total` calls spread over `concurrency` threads."""
    latencies, lock = [], threading.Lock()
    per_thread = total // concurrency
    barrier = threading.Barrier(concurrency + 1)

    def run():
        fn = call_once()
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
    elapsed = time.perf_counter() - start
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return statistics.median(latencies) * 1000, p99 * 1000, len(latencies) / elapsed


def proxy_caller(url, method):
    args = CALLS[method][0]

    def make():
        proxy = xmlrpc.client.ServerProxy(url)  # one keep-alive connection per caller, as the engine
        fn = getattr(proxy, method)

        def once():
            answer = fn(*args)
            assert answer["result_code"] == 0, answer
        return once
    return make


def baseline_caller(method):
    code = (f"import sys; sys.path.insert(0, {str(FOLDER)!r}); import sdk_units; "
            f"print(sdk_units.{CLASSES[method]}().{CALLS[method][1]})")

    def make():
        def once():
            subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL)
        return once
    return make


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
        try:
            # Memory first, while idle: the server, its fork server and the spare workers.
            time.sleep(1.0)
            server = proxy.proc.pid
            below = descendants(server)
            print("Resident memory, idle (RSS; PSS counts shared pages once):")
            print(f"  server       pid {server:<7} RSS {rss_kib(server) / 1024:6.1f} MiB  "
                  f"PSS {rss_kib(server, 'Pss') / 1024:6.1f} MiB")
            for pid in below:
                role = "fork server" if pid in [c for c in below if _ppid(c) == server] else "spare worker"
                print(f"  {role:<12} pid {pid:<7} RSS {rss_kib(pid) / 1024:6.1f} MiB  "
                      f"PSS {rss_kib(pid, 'Pss') / 1024:6.1f} MiB")
            total_pss = sum(rss_kib(p, "Pss") for p in [server] + below) / 1024
            print(f"  total PSS {total_pss:.1f} MiB\n")

            header = f"{'method':<18}{'conc':>5}{'proxy p50':>11}{'p99':>9}{'calls/s':>10}" \
                     f"{'baseline p50':>14}{'p99':>9}{'calls/s':>10}{'p50 ratio':>11}{'tput ratio':>12}"
            print(header)
            print("-" * len(header))
            verdicts = []
            for method in CALLS:
                for conc, n_proxy, n_base in ((1, 300, 20), (8, 800, 48)):
                    measure(proxy_caller(proxy.url, method), conc, 8 * conc)  # warm the connections
                    p50, p99, rate = measure(proxy_caller(proxy.url, method), conc, n_proxy)
                    b50, b99, brate = measure(baseline_caller(method), conc, n_base)
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


def _ppid(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


if __name__ == "__main__":
    main()
