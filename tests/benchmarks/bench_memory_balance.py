"""Benchmark: host_memory_balance against the request pattern of the plugin it replaces.

Run: python -m tests.benchmarks.bench_memory_balance [--runs N]

Both sides read the same generated snapshot from the simulated engine through the real
ovirtsdk4.  The shipped unit decides on the engine state the proxy shares: one full read
(hosts and VMs with statistics, clusters, affinity), made at most once per engine.max_age
for every unit call, then decisions that ask the engine nothing.  The seed's pattern,
re-created below with the v4 SDK, listed the hosts, then asked for each host's statistics
separately, then for the source host's VMs, on every decision.  Targets: at most 3 REST
requests per decision whatever the host count, and a decision in under 1 s.
"""

import argparse
import os
import statistics
import time

import ovirtsdk4 as sdk

from balancers import host_memory_balance as hmb
from proxy import engine
from proxy.sim import SimulatedEngine
from proxy.sim.generate import generate_snapshot

USER, PASSWORD = "admin@internal", "bench"
THRESHOLD_MB = hmb.DEFAULT_MINIMUM_MB
SIZES = [(100, 2_000), (1_000, 20_000)]  # (hosts, VMs)


def seed_pattern(url, host_ids):
    """The seed's requests and decision (safe mode), done the way it did them."""
    threshold = THRESHOLD_MB * 1024 * 1024
    with sdk.Connection(url=url, username=USER, password=PASSWORD) as conn:
        hosts_service = conn.system_service().hosts_service()
        listed = hosts_service.list(search=" or ".join(f"id={h}" for h in host_ids))
        free = {}
        for h in listed:  # one statistics request per host
            stats = hosts_service.host_service(h.id).statistics_service().list()
            free[h.id] = next((int(s.values[0].datum) for s in stats if s.name == "memory.free"), -1)
        known = [h for h in listed if free[h.id] > 0]
        over = [h for h in known if free[h.id] <= threshold]
        if not over:
            return None
        source = min(over, key=lambda h: free[h.id])
        targets = [h for h in known if free[h.id] > threshold]
        largest = max((min(free[h.id] - threshold, h.max_scheduling_memory) for h in targets), default=0)
        vms = conn.system_service().vms_service().list(search=f"host={source.name}")
        fitting = [v for v in vms if v.memory <= largest]
        if not fitting:
            return None
        return min(fitting, key=lambda v: v.memory).id, [h.id for h in targets]


def unit_pattern(host_ids):
    return hmb.host_memory_balance().do_balance(host_ids, {})


def shared_read():
    """What the proxy does once per engine.max_age: read the whole state, and hold it."""
    engine.hold(engine.read_now())


def measure(sim, runs, call):
    """(requests of one decision, median seconds, answer)."""
    times, requests, answer = [], set(), None
    for _ in range(runs):
        engine.bind(engine.EngineSettings(url=sim.url, user=USER, password=PASSWORD))
        sim.reset_counters()
        started = time.perf_counter()
        answer = call()
        times.append(time.perf_counter() - started)
        requests.add(sim.api_requests + sim.logins)  # SSO logins are REST requests too
    return max(requests), statistics.median(times), answer


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="decisions per side and size (median)")
    args = parser.parse_args(argv)
    rows = []
    for n_hosts, n_vms in SIZES:
        snapshot = generate_snapshot(n_hosts, n_vms, seed=0, pressure_hosts=1)
        with SimulatedEngine(snapshot, user=USER, password=PASSWORD) as sim:
            host_ids = [h["id"] for h in snapshot["hosts"] if h["status"] == "up"]
            read_req, read_s, _ = measure(sim, args.runs, shared_read)
            unit_req, unit_s, unit_answer = measure(sim, args.runs, lambda: unit_pattern(host_ids))
            engine.hold(None)
            seed_req, seed_s, seed_answer = measure(sim, args.runs, lambda: seed_pattern(sim.url, host_ids))
        same = "yes" if unit_answer and seed_answer and unit_answer[0] == seed_answer[0] else "no"
        rows.append((n_hosts, n_vms, unit_req, unit_s, seed_req, seed_s, same, read_req, read_s))

    print(f"host_memory_balance, safe mode, threshold {THRESHOLD_MB} MB; median of {args.runs} "
          "decisions; requests include the SSO login")
    print("load average (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
          + f" on {os.cpu_count()} CPUs: the times move with it")
    header = ("hosts", "VMs", "unit req", "unit ms", "seed req", "seed ms", "time ratio", "same VM",
              "read req", "read ms")
    print(" ".join(f"{h:>10}" for h in header))
    for n_hosts, n_vms, unit_req, unit_s, seed_req, seed_s, same, read_req, read_s in rows:
        print(" ".join(f"{c:>10}" for c in (
            n_hosts, n_vms, unit_req, f"{unit_s * 1000:.1f}", seed_req, f"{seed_s * 1000:.0f}",
            f"{seed_s / unit_s:.0f}x", same, read_req, f"{read_s * 1000:.0f}")))
    print("unit: a decision on the shared snapshot; read: the one shared read it needs per "
          "engine.max_age (10 s by default), whatever the number of calls")
    worst_req = max(r[2] for r in rows)
    worst_s = max(r[3] for r in rows)
    print(f"targets: <= 3 requests per decision ({'met' if worst_req <= 3 else 'MISSED'}: {worst_req}), "
          f"<= 1 s per decision ({'met' if worst_s <= 1 else 'MISSED'}: {worst_s * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
