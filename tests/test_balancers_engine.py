"""The shipped units' do_* methods against the simulated engine, through the real SDK.

Expected answers are worked out from config/cluster-small.json:
host1 400 MB free (max scheduling 512 MB), CPU 72 %, VMs web1 4096, db1 8192, app1 2048,
tiny1 1024 MB; host2 40960 MB free, 2 VMs; host3 51200 MB free, 1 VM; host4 20480 MB free,
1 VM; old1 and test1 are down.
"""

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from balancers.enforcing_affinity import enforcing_affinity
from balancers.even_distribution import cpu_memory_even_distribution
from balancers.even_vm_distribution import even_vm_distribution
from balancers.host_memory_balance import host_memory_balance
from balancers.ksm_same_os_score import ksm_same_os_score
from balancers.max_vms import max_vms
from balancers.vm_balance import vm_balance
from proxy import balancing, engine, state
from proxy.snapshot import validate_snapshot
from proxy.sim import SimulatedEngine
from proxy.sim.generate import generate_snapshot

H1, H2, H3, H4 = (f"a0000000-0000-4000-8000-00000000000{i}" for i in range(1, 5))
HOSTS = [H1, H2, H3, H4]
WEB1, DB1, APP1, TINY1, WEB2, WIN2, BUILD3, CACHE4, OLD1, TEST1 = (
    f"b0000000-0000-4000-8000-0000000000{i:02d}" for i in range(1, 11))
UNKNOWN = "deadbeef-0000-4000-8000-000000000000"


def requests_made(sim):
    """REST requests since the last reset: API requests plus SSO logins."""
    return sim.api_requests + sim.logins


# --- host_memory_balance ------------------------------------------------------------------

def test_memory_balance_moves_the_smallest_vm_off_host1(bound_engine):
    assert host_memory_balance().do_balance(HOSTS, {}) == (TINY1, [H2, H3, H4])


def test_memory_balance_moves_the_smallest_vm_that_covers_the_shortfall_in_both_modes(bound_engine):
    # 3000 MB threshold: host1 misses 2600 MB, so the smallest VM that covers it is web1.
    unit = host_memory_balance()
    args = {"minimum_host_memoryMB": "3000", "safe_selection": "False"}
    assert unit.do_balance(HOSTS, args) == (WEB1, [H2, H3, H4])
    assert unit.do_balance(HOSTS, {**args, "safe_selection": "True"}) == (WEB1, [H2, H3, H4])
    # 10000 MB: no single VM covers 9600 MB; safe_selection says which one goes first
    args = {"minimum_host_memoryMB": "10000"}
    assert unit.do_balance(HOSTS, args) == (TINY1, [H2, H3, H4])
    assert unit.do_balance(HOSTS, {**args, "safe_selection": "False"}) == (DB1, [H2, H3, H4])


def test_memory_balance_lists_only_hosts_the_vm_fits(bound_engine):
    # 20000 MB threshold: host4 keeps only 480 MB of room, too little for tiny1's 1024 MB.
    assert host_memory_balance().do_balance(HOSTS, {"minimum_host_memoryMB": "20000"}) == (
        TINY1, [H2, H3])


def test_memory_balance_follows_the_engine_between_calls(bound_engine):
    unit = host_memory_balance()
    bound_engine.move_vm(TINY1, H3, adjust_memory=False)
    assert unit.do_balance(HOSTS, {}) == (APP1, [H2, H3, H4])
    bound_engine.update_host(H1, free_memory_mb=8000)
    assert unit.do_balance(HOSTS, {}) is None


def test_memory_balance_skips_host1_when_its_free_memory_is_unknown(bound_engine):
    bound_engine.update_host(H1, free_memory_mb=None)
    assert host_memory_balance().do_balance(HOSTS, {}) is None


def test_memory_balance_with_only_the_pressured_host_has_nowhere_to_go(bound_engine):
    assert host_memory_balance().do_balance([H1], {}) is None
    assert host_memory_balance().do_balance([H1, UNKNOWN], {}) is None


def test_a_decision_from_the_shared_snapshot_makes_no_request_on_a_big_engine():
    snapshot = generate_snapshot(1000, 4000, seed=1, pressure_hosts=1)
    pressured = {h["id"] for h in snapshot["hosts"] if h["free_memory_mb"] is not None
                 and h["status"] == "up" and h["free_memory_mb"] <= 500}
    host_ids = [h["id"] for h in snapshot["hosts"] if h["status"] == "up"]
    with SimulatedEngine(snapshot, user="admin@internal", password="pw") as sim:
        engine.bind(engine.EngineSettings(url=sim.url, user="admin@internal", password="pw"))
        try:
            sim.reset_counters()
            engine.hold(engine.read_now())  # what the fork server does once per refresh
            read = requests_made(sim)
            assert read <= 3 + len(snapshot["clusters"]) + 1 + 1  # the lists, and one login
            for _ in range(3):
                vm_id, candidates = host_memory_balance().do_balance(host_ids, {})
                placed = {v["id"]: v["host"] for v in snapshot["vms"]}
                assert placed[vm_id] in pressured and candidates
                assert not pressured & set(candidates)
            assert requests_made(sim) == read  # the decisions asked the engine nothing
        finally:
            engine.hold(None)
            engine.bind(None)


# --- vm_balance / max_vms / even_vm_distribution ---------------------------------------------

def test_vm_balance_moves_the_smallest_vm_off_the_busiest_host(bound_engine):
    unit = vm_balance()
    assert unit.do_balance(HOSTS, {"maximum_vm_count": "2"}) == (TINY1, [H3, H4])
    assert unit.do_balance(HOSTS, {"maximum_vm_count": "3"}) == (TINY1, [H2, H3, H4])
    assert unit.do_balance(HOSTS, {}) is None  # default limit 100


def test_vm_balance_follows_the_engine_between_calls(bound_engine):
    bound_engine.move_vm(TINY1, H3)
    bound_engine.move_vm(APP1, H3)
    # host1 now runs 2 VMs, host3 runs 3: host3 is the source, only host4 (1 VM) has room
    assert vm_balance().do_balance(HOSTS, {"maximum_vm_count": "2"}) == (TINY1, [H4])


def test_max_vms_lets_through_hosts_under_the_limit(bound_engine):
    unit = max_vms()
    assert unit.do_filter(HOSTS, OLD1, {"maximum_vm_count": "2"}) == [H3, H4]
    assert unit.do_filter(HOSTS + [UNKNOWN], OLD1, {"maximum_vm_count": "3"}) == [H2, H3, H4]
    assert unit.do_filter(HOSTS, OLD1, {}) == HOSTS
    bound_engine.move_vm(WEB2, H3)
    assert unit.do_filter(HOSTS, OLD1, {"maximum_vm_count": "2"}) == [H2, H4]


def test_even_vm_distribution_scores_the_vm_count(bound_engine):
    unit = even_vm_distribution()
    assert unit.do_score(HOSTS + [UNKNOWN], OLD1, {}) == [
        (H1, 4), (H2, 2), (H3, 1), (H4, 1), (UNKNOWN, 5)]
    bound_engine.move_vm(TINY1, H4)
    assert unit.do_score(HOSTS, OLD1, {}) == [(H1, 3), (H2, 2), (H3, 1), (H4, 2)]


# --- ksm_same_os_score ------------------------------------------------------------------------

def test_ksm_prefers_hosts_with_the_same_os(bound_engine):
    unit = ksm_same_os_score()
    # old1 is windows_2019x64: app1 runs on host1, win2 on host2
    assert unit.do_score(HOSTS, OLD1, {}) == [(H1, 0), (H2, 0), (H3, 1), (H4, 1)]
    # web1 (rhel_9x64) is not counted on its own host1
    assert unit.do_score(HOSTS, WEB1, {}) == [(H1, 0), (H2, 0), (H3, 1), (H4, 0)]
    # test1 (rhel_8x64): only build3 on host3 matches
    assert unit.do_score(HOSTS, TEST1, {}) == [(H1, 1), (H2, 1), (H3, 0), (H4, 1)]
    bound_engine.move_vm(BUILD3, H4)
    assert unit.do_score(HOSTS, TEST1, {}) == [(H1, 1), (H2, 1), (H3, 1), (H4, 0)]


def test_ksm_reports_an_unknown_vm(bound_engine):
    with pytest.raises(LookupError, match=UNKNOWN):
        ksm_same_os_score().do_score(HOSTS, UNKNOWN, {})


# --- cpu_memory_even_distribution -------------------------------------------------------------

def test_even_distribution_has_nothing_to_do_at_the_engine_defaults(bound_engine):
    # host1's 72 % CPU is under 80, and MaxFreeMemoryForOverUtilized is unset
    assert cpu_memory_even_distribution().do_balance(HOSTS, {"HighUtilization": "80"}) is None


def test_even_distribution_moves_a_vm_off_a_sustained_cpu_source(bound_engine):
    # High 70: host1 (72 %) is a source once a reading 3 minutes old shows it over 70 too;
    # destinations below min(56, 60): host3, host4, host2.  The source comes last so it may stay.
    unit = cpu_memory_even_distribution()
    assert unit.do_balance(HOSTS, {"HighUtilization": "70"}) is None  # no history yet
    read_at = engine.snapshot().read_at
    try:
        balancing.bind(history=[balancing.Reading(1, read_at - 180, {H1: 75.0}, {})])
        # app1 is the cheapest VM whose move takes host1 under 70 %; only host4 (16 threads, like
        # host1) gains the 5 points MinimumCpuGain asks: on 32 threads its load counts half
        assert unit.do_balance(HOSTS, {"HighUtilization": "70"}) == (APP1, [H4, H1])
        assert unit.do_balance(HOSTS, {"HighUtilization": "70", "MinimumCpuGain": "0"}) == (
            APP1, [H3, H4, H2, H1])
        balancing.bind(history=[balancing.Reading(1, read_at - 180, {H1: 65.0}, {})])
        assert unit.do_balance(HOSTS, {"HighUtilization": "70"}) is None  # it dipped under
    finally:
        balancing.bind(history=())


def test_even_distribution_memory_path(bound_engine):
    unit = cpu_memory_even_distribution()
    args = {"MaxFreeMemoryForOverUtilized": "1000"}  # host1 schedules only 512 MB
    assert unit.do_balance(HOSTS, args) == (TINY1, [H3, H2, H4, H1])
    args["MinFreeMemoryForUnderUtilized"] = "30000"
    assert unit.do_balance(HOSTS, args) == (TINY1, [H3, H2, H1])
    bound_engine.update_vm(TINY1, cpu_usage=90)  # a busy VM, but still the least memory to move
    assert unit.do_balance(HOSTS, args) == (TINY1, [H3, H2, H1])
    bound_engine.update_host(H1, max_scheduling_memory_mb=4096)
    assert unit.do_balance(HOSTS, args) is None


def test_every_unit_asks_the_engine_nothing_when_a_snapshot_is_held(bound_engine):
    engine.hold(engine.read_now())
    try:
        bound_engine.reset_counters()
        cpu_memory_even_distribution().do_balance(HOSTS, {"HighUtilization": "70"})
        host_memory_balance().do_balance(HOSTS, {})
        vm_balance().do_balance(HOSTS, {"maximum_vm_count": "1"})
        max_vms().do_filter(HOSTS, WEB1, {})
        even_vm_distribution().do_score(HOSTS, WEB1, {})
        ksm_same_os_score().do_score(HOSTS, WEB1, {})
        assert requests_made(bound_engine) == 0
    finally:
        engine.hold(None)


# --- the same decision from every source of the same state ------------------------------------

def _exact(doc):
    """The engine reports CPU figures to two significant digits: whole percents survive it."""
    for h in doc["hosts"]:
        h["cpu_load"] = float(min(99, max(1, round(h["cpu_load"]))))
    for v in doc["vms"]:
        v["cpu_usage"] = float(min(99, round(v["cpu_usage"])))
    return doc


def _decisions(host_ids, vm_ids):
    vm = vm_ids[0] if vm_ids else UNKNOWN
    out = {}
    for name, run in [
            ("host_memory_balance", lambda: host_memory_balance().do_balance(host_ids, {"minimum_host_memoryMB": "2000"})),
            ("vm_balance", lambda: vm_balance().do_balance(host_ids, {"maximum_vm_count": "3"})),
            ("cpu_memory_even_distribution", lambda: cpu_memory_even_distribution().do_balance(
                host_ids, {"HighUtilization": "50", "MaxFreeMemoryForOverUtilized": "4000"})),
            ("max_vms", lambda: max_vms().do_filter(host_ids, vm, {"maximum_vm_count": "4"})),
            ("even_vm_distribution", lambda: even_vm_distribution().do_score(host_ids, vm, {})),
            ("ksm_same_os_score", lambda: ksm_same_os_score().do_score(host_ids, vm, {}))]:
        try:
            out[name] = run()
        except LookupError as e:  # an unknown VM: the same error either way
            out[name] = f"LookupError: {e}"
    return out


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hosts=st.integers(2, 12), vms=st.integers(0, 60), seed=st.integers(0, 10_000))
def test_every_unit_decides_the_same_from_the_engine_and_from_a_snapshot_file(hosts, vms, seed):
    doc = _exact(validate_snapshot(generate_snapshot(hosts, vms, seed=seed, pressure_hosts=1)))
    host_ids = [h["id"] for h in doc["hosts"]]
    vm_ids = [v["id"] for v in doc["vms"]]
    with SimulatedEngine(doc) as sim:
        engine.bind(engine.EngineSettings(url=sim.url, user=sim.user, password=sim.password))
        try:
            live = _decisions(host_ids, vm_ids)  # nothing held: each unit reads the engine itself
            engine.hold(engine.read_now())  # the proxy's one shared read
            shared = _decisions(host_ids, vm_ids)
            engine.hold(state.from_document(doc, version=1, source="file"), static=True)  # serve --snapshot
            from_file = _decisions(host_ids, vm_ids)
        finally:
            engine.hold(None)
            engine.bind(None)
    assert shared == live
    assert from_file == live


# --- affinity, read from the simulated engine through the SDK (config/cluster-affinity.json) ---

def test_units_honour_the_affinity_the_engine_serves(affinity_engine):
    a_hosts = [f"a0000000-0000-4000-8000-00000000000{i}" for i in range(1, 6)]
    web1, db1, tiny1, lic1 = (f"b0000000-0000-4000-8000-0000000000{i:02d}" for i in (1, 2, 4, 9))
    engine.bind(engine.EngineSettings(url=affinity_engine.url, user=affinity_engine.user,
                                      password=affinity_engine.password))
    try:
        engine.hold(engine.read_now())  # groups and labels come with the proxy's one read
        unit = enforcing_affinity()
        h1, h2, h3, h4, h5 = a_hosts
        assert unit.do_filter(a_hosts, web1, {}) == [h1, h4, h5]  # web-spread: web2, web3 elsewhere
        assert unit.do_filter(a_hosts, db1, {}) == [h1]  # db-with-app: app1 runs on host1
        assert unit.do_filter(a_hosts, lic1, {}) == [h4, h5]  # licensed-hosts
        # host1 misses 7600 MB of 8000: only db1 covers it alone, but it must stay with app1
        balance = host_memory_balance().do_balance
        assert balance(a_hosts, {"minimum_host_memoryMB": "8000"}) == (tiny1, [h2, h3, h4, h5])
        assert balance(a_hosts, {"minimum_host_memoryMB": "8000", "safe_selection": "False"}) == (
            web1, [h4, h5])
    finally:
        engine.hold(None)
        engine.bind(None)
