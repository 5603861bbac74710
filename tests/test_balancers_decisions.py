"""The shipped units' decisions, over plain data (no engine): scenarios, then properties."""

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings, strategies as st

from balancers import even_distribution, even_vm_distribution, host_memory_balance as hmb
from balancers import _common, ksm_same_os_score, max_vms, vm_balance
from proxy import registry, whatif

MB = 1024 * 1024
BALANCERS = Path(__file__).resolve().parent.parent / "balancers"


def host(hid, free_mb=None, sched_mb=100_000, *, active_vms=0, cpu=None, threads=4, status="up",
         mem_mb=16_000):
    return SimpleNamespace(
        id=hid, name=hid, status=status, active_vms=active_vms, cpu_usage=cpu, cpu_threads=threads,
        memory=None if mem_mb is None else mem_mb * MB,
        free_memory=None if free_mb is None else free_mb * MB,
        max_scheduling_memory=None if sched_mb is None else sched_mb * MB)


def vm(vid, host_id, mem_mb=1024, *, status="up", os_type="rhel_8x64", cpu=None, vcpus=1):
    return SimpleNamespace(id=vid, name=vid, host_id=host_id, memory=mem_mb * MB, status=status,
                           os_type=os_type, cpu_usage=cpu, vcpus=vcpus)


# --- the plugin contract --------------------------------------------------------------

# docs/ENGINE_PROTOCOL.md §5, written out again here rather than taken from the registry.
ENGINE_SYNTAX = re.compile(r"(?:[a-z_A-Z0-9]+=[^;]*(?:;[a-z_A-Z0-9]+=[^;]*)*;?)?", re.S)

EXPECTED_UNITS = {
    ("balance", "host_memory_balance"), ("balance", "vm_balance"),
    ("balance", "cpu_memory_even_distribution"), ("balance", "even_load"), ("filter", "max_vms"),
    ("filter", "enforcing_affinity"),
    ("score", "even_vm_distribution"), ("score", "ksm_same_os_score"),
}


def shipped_units():
    found = []
    for path in registry.module_files(BALANCERS):
        units, rejections = registry.units_of(registry.load_module(path), path.name)
        assert rejections == []
        found.extend(units)
    return found


def test_every_shipped_unit_is_discovered_with_a_one_line_description():
    units = shipped_units()
    assert {(u.type, u.name) for u in units} == EXPECTED_UNITS
    for unit in units:
        assert unit.description and "\n" not in unit.description, unit.name


def test_every_properties_validation_has_the_engine_syntax():
    units = shipped_units()
    assert units
    for unit in units:
        assert ENGINE_SYNTAX.fullmatch(unit.properties), (unit.name, unit.properties)


def test_the_parameter_maps_the_engine_knows_stay_as_they_were():
    # Derived from the declarations now; an admin's saved policies depend on these strings.
    assert {u.name: u.properties for u in shipped_units()} == {
        "host_memory_balance": "minimum_host_memoryMB=[0-9]*;safe_selection=True|False",
        "vm_balance": "maximum_vm_count=[0-9]*",
        "max_vms": "maximum_vm_count=[0-9]*",
        "cpu_memory_even_distribution": "HighUtilization=^([5-9][0-9])$;"
                                         "CpuOverCommitDurationMinutes=^([1-9][0-9]*)$;"
                                         "MaxFreeMemoryForOverUtilized=^([1-9][0-9]*)$;"
                                         "MinFreeMemoryForUnderUtilized=^([1-9][0-9]*)$;"
                                         "MinimumCpuGain=^([0-9]|[1-9][0-9])$",
        "even_load": "minimum_gain=[0-9]*;cpu_hot_minutes=[0-9]*",
        "enforcing_affinity": "",
        "even_vm_distribution": "",
        "ksm_same_os_score": "",
    }


def regex_map(props):
    return dict(piece.split("=", 1) for piece in props.split(";") if piece)


@pytest.mark.parametrize("module, cls, good, bad", [
    (hmb, "host_memory_balance", {"minimum_host_memoryMB": "500", "safe_selection": "False"},
     {"minimum_host_memoryMB": "5e2", "safe_selection": "no"}),
    (vm_balance, "vm_balance", {"maximum_vm_count": "10"}, {"maximum_vm_count": "-1"}),
    (max_vms, "max_vms", {"maximum_vm_count": "10"}, {"maximum_vm_count": "ten"}),
    (even_distribution, "cpu_memory_even_distribution",
     {"HighUtilization": "80", "CpuOverCommitDurationMinutes": "2",
      "MaxFreeMemoryForOverUtilized": "1024", "MinFreeMemoryForUnderUtilized": "4096", "MinimumCpuGain": "0"},
     {"HighUtilization": "100", "CpuOverCommitDurationMinutes": "0",
      "MaxFreeMemoryForOverUtilized": "0", "MinFreeMemoryForUnderUtilized": "x", "MinimumCpuGain": "100"}),
])
def test_regexes_accept_what_the_unit_parses_and_refuse_garbage(module, cls, good, bad):
    regexes = regex_map(getattr(module, cls).properties_validation)
    assert set(regexes) == set(good) == set(bad)
    for key, pattern in regexes.items():  # Java String.matches is a full match
        assert re.fullmatch(pattern, good[key]), (key, good[key])
        assert not re.fullmatch(pattern, bad[key]), (key, bad[key])
        with pytest.raises(ValueError, match=f"^{key} must be"):
            module.PARAMS.parse({**good, key: bad[key]})
    module.PARAMS.parse(good)


# --- property parsing (the kinds themselves: tests/test_properties.py) ---------------------

@pytest.mark.parametrize("unit, call", [
    (hmb.host_memory_balance, lambda u: u.do_balance(["h1"], {"minimum_host_memoryMB": "abc"})),
    (hmb.host_memory_balance, lambda u: u.do_balance(["h1"], {"safe_selection": "maybe"})),
    (vm_balance.vm_balance, lambda u: u.do_balance(["h1"], {"maximum_vm_count": "many"})),
    (max_vms.max_vms, lambda u: u.do_filter(["h1"], "v", {"maximum_vm_count": "1.0"})),
    (even_distribution.cpu_memory_even_distribution,
     lambda u: u.do_balance(["h1", "h2"], {"CpuOverCommitDurationMinutes": "0"})),
])
def test_bad_property_values_raise_before_touching_the_engine(unit, call):
    # No engine is bound in this module: reaching it would fail differently.
    with pytest.raises(ValueError, match="must be"):
        call(unit())


def test_empty_host_lists_need_no_engine():
    assert hmb.host_memory_balance().do_balance([], {}) is None
    assert vm_balance.vm_balance().do_balance([], None) is None
    assert max_vms.max_vms().do_filter([], "v", {}) == []
    assert even_vm_distribution.even_vm_distribution().do_score([], "v", {}) == []
    assert ksm_same_os_score.ksm_same_os_score().do_score([], "v", {}) == []
    assert even_distribution.cpu_memory_even_distribution().do_balance(["h1"], {}) is None


# --- host_memory_balance scenarios ----------------------------------------------------

T = 500 * MB  # the default threshold


def test_safe_mode_moves_the_smallest_vm_to_every_host_it_fits():
    hosts = [host("h1", 400), host("h2", 3000), host("h3", 1000), host("h4", 700, sched_mb=100)]
    vms = [vm("a", "h1", 256), vm("b", "h1", 600), vm("c", "h1", 2048), vm("x", "h2", 10)]
    # rooms: h2 2500, h3 500, h4 min(200, 100) = 100
    assert hmb.choose(hosts, vms, T, safe=True) == ("a", ["h2", "h3"])


def test_both_modes_move_the_smallest_vm_that_covers_the_shortfall():
    hosts = [host("h1", 100), host("h2", 3000), host("h3", 1000)]
    vms = [vm("a", "h1", 256), vm("b", "h1", 600), vm("c", "h1", 2048), vm("d", "h1", 4000)]
    # missing 400 MB: 'a' is too small; 'b' only fits h2 (room 2500), not h3 (room 500)
    assert hmb.choose(hosts, vms, T, safe=False) == ("b", ["h2"])
    assert hmb.choose(hosts, vms, T, safe=True) == ("b", ["h2"])


def test_when_no_vm_covers_the_shortfall_safe_mode_moves_the_smallest():
    hosts = [host("h1", 0), host("h2", 1000)]
    vms = [vm("a", "h1", 100), vm("b", "h1", 200), vm("c", "h1", 5000)]
    assert hmb.choose(hosts, vms, T, safe=True) == ("a", ["h2"])


def test_equal_memory_goes_to_the_idler_vm():
    hosts = [host("h1", 100), host("h2", 3000)]
    vms = [vm("busy", "h1", 600, cpu=80), vm("idle", "h1", 600, cpu=5)]
    assert hmb.choose(hosts, vms, T) == ("idle", ["h2"])


def test_the_next_short_host_is_tried_when_the_first_has_nothing_that_can_move():
    hosts = [host("h1", 100), host("h2", 300), host("h3", 3000)]
    vms = [vm("big", "h1", 9000), vm("small", "h2", 256)]
    assert hmb.choose(hosts, vms, T) == ("small", ["h3"])


def test_a_move_that_would_raise_the_memory_spread_is_not_offered():
    # h1 is a small host short of memory, but in proportion emptier than the big h2
    hosts = [host("h1", 400, mem_mb=2000), host("h2", 4000, mem_mb=200_000), host("h3", 12000, mem_mb=16000)]
    vms = [vm("a", "h1", 256)]
    assert hmb.choose(hosts, vms, T) == ("a", ["h3"])
    assert hmb.choose(hosts[:2], vms, T) is None


def test_aggressive_mode_falls_back_to_the_largest_vm_that_fits():
    hosts = [host("h1", 0), host("h2", 1000)]
    vms = [vm("a", "h1", 100), vm("b", "h1", 200), vm("c", "h1", 5000)]
    assert hmb.choose(hosts, vms, T, safe=False) == ("b", ["h2"])


def test_the_host_with_least_free_memory_is_the_source_and_a_threshold_reading_counts():
    hosts = [host("h1", 500), host("h2", 300), host("h3", 4000)]
    vms = [vm("a", "h1", 10), vm("b", "h2", 20)]
    assert hmb.choose(hosts, vms, T) == ("b", ["h3"])
    assert hmb.choose(hosts[:1] + hosts[2:], vms, T) == ("a", ["h3"])


def test_nothing_to_do_when_every_host_has_enough_free_memory():
    hosts = [host("h1", 501), host("h2", 3000)]
    assert hmb.choose(hosts, [vm("a", "h1", 10)], T) is None


def test_unknown_free_memory_is_neither_source_nor_destination():
    hosts = [host("h1", None), host("h2", 100), host("h3", None, sched_mb=10**6)]
    vms = [vm("a", "h1", 10), vm("b", "h2", 10)]
    assert hmb.choose(hosts, vms, T) is None  # h2 has nowhere to go
    assert hmb.choose(hosts + [host("h4", 600)], vms, T) == ("b", ["h4"])


def test_a_single_host_or_none_at_all_has_nothing_to_do():
    assert hmb.choose([host("h1", 10)], [vm("a", "h1", 1)], T) is None
    assert hmb.choose([], [vm("a", "h1", 1)], T) is None


def test_only_vms_up_on_the_source_may_move():
    hosts = [host("h1", 100), host("h2", 3000)]
    vms = [vm("a", "h1", 10, status="migrating"), vm("b", "h1", 20, status="down"),
           vm("c", "h2", 5), vm("d", "h1", 30)]
    assert hmb.choose(hosts, vms, T) == ("d", ["h2"])


def test_no_vm_fits_anywhere():
    hosts = [host("h1", 100), host("h2", 1000)]
    assert hmb.choose(hosts, [vm("a", "h1", 501)], T) is None


def test_a_host_sent_twice_does_not_become_its_own_candidate():
    hosts = [host("h1", 100), host("h2", 1000), host("h1", 100)]
    assert hmb.choose(hosts, [vm("a", "h1", 10)], T) == ("a", ["h2"])


# --- vm_balance / max_vms / even_vm_distribution / ksm_same_os_score --------------------

def test_vm_balance_moves_the_smallest_vm_from_the_busiest_host_over_the_limit():
    hosts = [host("h1", active_vms=3), host("h2", active_vms=5), host("h3", active_vms=1),
             host("h4", active_vms=2)]
    vms = [vm("a", "h2", 512), vm("b", "h2", 256), vm("c", "h1", 1)]
    assert vm_balance.choose(hosts, vms, 2) == ("b", ["h3"])
    assert vm_balance.choose(hosts, vms, 5) is None  # nobody runs *more* than 5
    assert vm_balance.choose(hosts, vms, 1) is None  # no host runs fewer than 1


def test_max_vms_keeps_hosts_under_the_limit_in_order():
    counts = {"h1": 3, "h2": 1, "h3": 2, "h4": None}
    assert max_vms.passing(["h3", "h1", "h2", "h4", "h5"], counts, 3) == ["h3", "h2"]
    assert max_vms.passing([], counts, 3) == []


def test_even_vm_distribution_scores_the_vm_count_and_unknown_hosts_last():
    assert even_vm_distribution.scores(["h1", "h2", "h3"], {"h1": 4, "h2": 0}) == [
        ("h1", 4), ("h2", 0), ("h3", 5)]


def test_ksm_prefers_hosts_running_more_vms_of_the_same_os():
    me = vm("me", "h3", os_type="windows_2019x64")
    vms = [vm("a", "h1", os_type="windows_2019x64"), vm("b", "h1", os_type="windows_2019x64"),
           vm("c", "h2", os_type="windows_2019x64"), vm("d", "h2", os_type="rhel_8x64"),
           vm("e", "h3", os_type="rhel_8x64"), me, vm("f", "h9", os_type="windows_2019x64")]
    assert ksm_same_os_score.scores(["h1", "h2", "h3"], me, vms) == [("h1", 0), ("h2", 1), ("h3", 2)]
    unknown = vm("u", None, os_type=None)
    assert ksm_same_os_score.scores(["h1", "h2"], unknown, vms) == [("h1", 0), ("h2", 0)]


# --- cpu_memory_even_distribution ------------------------------------------------------

def test_cpu_source_moves_the_cheapest_vm_that_takes_it_under_the_mark_and_may_stay():
    hosts = [host("h1", cpu=90, active_vms=2), host("h2", cpu=20), host("h3", cpu=70)]
    vms = [vm("busy", "h1", cpu=50, vcpus=1), vm("idle", "h1", cpu=10, vcpus=2)]
    # h3 is above the low mark min(64, 70) = 64, so only h2 is a destination; moving idle
    # (5 points of h1) leaves h1 at 85 %, busy (12.5 points) takes it to 77.5 %
    assert even_distribution.choose(hosts, vms) == ("busy", ["h2", "h1"])
    assert even_distribution.choose(hosts, vms[1:]) == ("idle", ["h2", "h1"])  # gains 10 points


def test_a_cpu_move_must_gain_the_margin():
    hosts = [host("h1", cpu=90, active_vms=2), host("h2", cpu=20)]
    vms = [vm("idle", "h1", cpu=4, vcpus=1), vm("zero", "h1", cpu=0)]
    # idle: 1 point off h1, 1 onto h2: the gap shrinks by 2 points
    assert even_distribution.choose(hosts, vms) is None
    assert even_distribution.choose(hosts, vms, gain=2) == ("idle", ["h2", "h1"])
    assert even_distribution.choose(hosts, vms[1:], gain=0) == ("zero", ["h2", "h1"])


def test_without_readings_that_cover_the_duration_no_cpu_load_is_sustained():
    hosts = [host("h1", cpu=90, active_vms=1), host("h2", cpu=20)]
    vms = [vm("busy", "h1", cpu=50)]
    assert even_distribution.choose(hosts, vms, sustained=set()) is None
    assert even_distribution.choose(hosts, vms, sustained={"h1"}) == ("busy", ["h2", "h1"])


def test_cpu_destination_that_the_vm_would_overload_is_skipped():
    hosts = [host("h1", cpu=95, active_vms=2), host("h2", cpu=60, threads=4)]
    vms = [vm("heavy", "h1", cpu=100, vcpus=4), vm("light", "h1", cpu=40, vcpus=2)]
    # light: 80 / 4 = 20 -> 80 <= 80 fits; heavy would add 100
    assert even_distribution.choose(hosts, vms) == ("light", ["h2", "h1"])
    assert even_distribution.choose(hosts, vms[:1]) is None


def test_memory_path_runs_when_no_cpu_move_exists():
    hosts = [host("h1", sched_mb=500, cpu=30, active_vms=2), host("h2", sched_mb=8000, cpu=30),
             host("h3", sched_mb=1500, cpu=10)]
    vms = [vm("a", "h1", 1024), vm("b", "h1", 2048)]
    args = dict(max_free=1000 * MB, min_free=2000 * MB)
    assert even_distribution.choose(hosts, vms, **args) == ("a", ["h2", "h1"])
    assert even_distribution.choose(hosts, vms) is None  # engine defaults: no memory sources
    hosts[0].active_vms = 1
    assert even_distribution.choose(hosts, vms[:1], **args) is None  # a source needs > 1 VM


def test_cpu_moves_come_before_memory_moves():
    hosts = [host("h1", sched_mb=500, cpu=30, active_vms=2), host("h2", sched_mb=8000, cpu=10),
             host("h3", sched_mb=8000, cpu=85, active_vms=1)]
    vms = [vm("m", "h1", 1024), vm("n", "h1", 1024), vm("c", "h3", 1024, cpu=40)]
    assert even_distribution.choose(hosts, vms, max_free=1000 * MB) == ("c", ["h2", "h3"])


def test_even_distribution_ignores_hosts_with_unknown_cpu_and_needs_two_hosts():
    hosts = [host("h1", cpu=None, active_vms=3), host("h2", cpu=10)]
    assert even_distribution.choose(hosts, [vm("a", "h1")]) is None
    assert even_distribution.choose(hosts[:1], [vm("a", "h1")]) is None


# --- properties over generated clusters --------------------------------------------------

STATUSES = ["up", "up", "up", "down", "migrating", "paused"]


def mostly(strategy):
    """`strategy`, or now and then None (an unknown value)."""
    return st.one_of(strategy, strategy, strategy, st.none())


@st.composite
def clusters(draw, max_hosts=8):
    n = draw(st.integers(0, max_hosts))
    hosts = [host(f"h{i}", draw(mostly(st.integers(0, 4000))), draw(mostly(st.integers(0, 6000))),
                  active_vms=draw(mostly(st.integers(0, 12))), cpu=draw(mostly(st.integers(0, 100))),
                  threads=draw(st.integers(1, 16)), mem_mb=draw(mostly(st.integers(4001, 64000))))
             for i in range(n)]
    host_ids = [h.id for h in hosts] * 4 + ["elsewhere", None]
    vms = [vm(f"v{j}", draw(st.sampled_from(host_ids)), draw(st.integers(1, 2000)),
              status=draw(st.sampled_from(STATUSES)),
              os_type=draw(st.sampled_from(["rhel_8x64", "windows_2019x64", None])),
              cpu=draw(mostly(st.integers(0, 100))), vcpus=draw(st.integers(1, 8)))
           for j in range(draw(st.integers(0, 30)))]
    return hosts, vms


@st.composite
def memory_cases(draw):
    """A cluster and a threshold, often one host's own free memory (the <= boundary)."""
    hosts, vms = draw(clusters())
    known = [h.free_memory for h in hosts if h.free_memory is not None]
    near = st.sampled_from(known) if known else st.nothing()
    threshold = draw(st.one_of(st.integers(0, 2000).map(lambda mb: mb * MB), near, near))
    return hosts, vms, threshold


def ic_mem(hosts, moved=None):
    """Ic_mem as proxy/whatif.py works it out, after moving (memory, source, target) if given."""
    free = {h.id: h.free_memory for h in hosts}
    if moved:
        memory, source, target = moved
        for hid, delta in ((source, memory), (target, -memory)):
            if free[hid] is not None:
                free[hid] += delta
    return whatif.spread([(h.memory - free[h.id]) / h.memory for h in hosts
                          if h.memory and free[h.id] is not None])[0]


def feasible(hosts, vms, threshold):
    """{source id: [(VM, [target ids])]}: every move the balancer may make, worked out one by
    one (the spread test is the unit's own, checked against whatif below)."""
    spread = _common.MemorySpread(hosts)
    found = {}
    for source in hosts:
        if source.free_memory is None or source.free_memory > threshold:
            continue
        for v in vms:
            if v.host_id != source.id or v.status != "up":
                continue
            targets = [h.id for h in hosts if h.id != source.id and h.free_memory is not None
                       and h.free_memory > threshold and v.memory <= hmb.room(h, threshold)
                       and spread.lowers(source, h, v.memory)]
            if targets:
                found.setdefault(source.id, []).append((v, targets))
    return found


@settings(max_examples=300, deadline=None)
@given(memory_cases(), st.booleans())
def test_memory_answer_is_a_move_off_the_shortest_host_that_has_one(case, safe):
    hosts, vms, threshold = case
    hosts = list({h.id: h for h in hosts}.values())
    answer = hmb.choose(hosts, vms, threshold, safe)
    moves = feasible(hosts, vms, threshold)
    if answer is None:
        assert not moves  # no host stays short while some move could still help it
        return
    vm_id, candidates = answer
    chosen = next(v for v in vms if v.id == vm_id)
    shortest = min((h for h in hosts if h.id in moves), key=lambda h: h.free_memory)
    assert chosen.host_id == shortest.id
    assert dict((v.id, t) for v, t in moves[shortest.id])[vm_id] == candidates
    options = sorted((v for v, _ in moves[shortest.id]), key=_common.cost_key)
    missing = threshold - shortest.free_memory
    lifting = [v for v in options if v.memory > missing]
    expected = lifting[0] if lifting else options[0] if safe else max(options, key=lambda v: v.memory)
    assert chosen.memory == expected.memory


@settings(deadline=None)
@given(memory_cases())
def test_the_spread_test_agrees_with_the_what_if_figures(case):
    hosts, vms, threshold = case
    hosts = list({h.id: h for h in hosts}.values())
    spread = _common.MemorySpread(hosts)
    before = ic_mem(hosts)
    for source in hosts:
        for target in hosts:
            for memory in (MB, 256 * MB, 2000 * MB):
                after = ic_mem(hosts, (memory, source.id, target.id))
                if source.id != target.id and spread.lowers(source, target, memory):
                    assert after < before or after == before == ic_mem(
                        [h for h in hosts if h.id not in (source.id, target.id)])  # neither counts
                elif after < before - 1e-6 and source.id != target.id:
                    raise AssertionError(f"{source.id} -> {target.id} lowers Ic_mem {before} -> {after}")


@given(memory_cases(), st.booleans())
def test_nothing_to_do_when_no_host_is_over_utilized(case, safe):
    hosts, vms, threshold = case
    hosts = [h for h in hosts if h.free_memory is None or h.free_memory > threshold]
    assert hmb.choose(hosts, vms, threshold, safe) is None


@given(memory_cases(), st.booleans(), st.randoms(use_true_random=False))
def test_same_input_same_answer_whatever_the_vm_order(case, safe, rnd):
    hosts, vms, threshold = case
    first = hmb.choose(hosts, vms, threshold, safe)
    shuffled = list(vms)
    rnd.shuffle(shuffled)
    assert hmb.choose(hosts, vms, threshold, safe) == first
    assert hmb.choose(hosts, shuffled, threshold, safe) == first


@given(clusters(), st.integers(0, 12))
def test_vm_balance_moves_from_over_the_limit_to_under_it(cluster, maximum):
    hosts, vms = cluster
    answer = vm_balance.choose(hosts, vms, maximum)
    counted = [h for h in hosts if h.active_vms is not None]
    if not any(h.active_vms > maximum for h in counted):
        assert answer is None
    if answer is None:
        return
    vm_id, candidates = answer
    by_id = {h.id: h for h in hosts}
    chosen = next(v for v in vms if v.id == vm_id)
    source = by_id[chosen.host_id]
    # the busiest host that has a running VM to give
    givers = [h for h in counted if any(v.host_id == h.id and v.status == "up" for v in vms)]
    assert chosen.status == "up" and source.active_vms == max(h.active_vms for h in givers)
    assert candidates and all(by_id[c].active_vms < maximum for c in candidates)
    assert source.id not in candidates


host_ids = st.lists(st.sampled_from([f"h{i}" for i in range(10)]), max_size=12)
counts = st.dictionaries(st.sampled_from([f"h{i}" for i in range(14)]),
                         st.one_of(st.none(), st.integers(0, 20)))


@given(host_ids, counts, st.integers(0, 20))
def test_filter_returns_only_given_hosts_under_the_limit(given_hosts, count_map, maximum):
    passed = max_vms.passing(given_hosts, count_map, maximum)
    assert set(passed) <= set(given_hosts)
    assert passed == [h for h in dict.fromkeys(given_hosts)
                      if count_map.get(h) is not None and count_map[h] < maximum]


@given(host_ids, counts)
def test_vm_count_scores_cover_exactly_the_given_hosts_and_follow_the_count(given_hosts, count_map):
    result = even_vm_distribution.scores(given_hosts, count_map)
    assert [h for h, _ in result] == list(dict.fromkeys(given_hosts))
    score = dict(result)
    for a in score:
        for b in score:
            if count_map.get(a) is not None and count_map.get(b) is not None:
                assert (score[a] < score[b]) == (count_map[a] < count_map[b])
            if count_map.get(a) is not None and count_map.get(b) is None:
                assert score[a] < score[b]


@given(clusters(), st.lists(st.sampled_from([f"h{i}" for i in range(10)]), max_size=12),
       st.sampled_from(["rhel_8x64", "windows_2019x64", None]))
def test_ksm_scores_cover_the_given_hosts_and_rank_by_same_os_count(cluster, given_hosts, os_type):
    _, vms = cluster
    me = vm("me", None, os_type=os_type)
    result = ksm_same_os_score.scores(given_hosts, me, vms)
    assert [h for h, _ in result] == list(dict.fromkeys(given_hosts))
    same = {h: sum(1 for v in vms if v.host_id == h and v.status == "up"
                   and os_type is not None and v.os_type == os_type) for h in given_hosts}
    score = dict(result)
    assert all(s >= 0 for s in score.values())
    assert not score or min(score.values()) == 0
    for a in score:
        for b in score:
            assert (score[a] < score[b]) == (same[a] > same[b])


@settings(max_examples=300)
@given(clusters(), st.integers(50, 99), st.integers(0, 3000), st.integers(0, 3000))
def test_even_distribution_answers_a_valid_move_and_lets_the_vm_stay(cluster, high, max_mb, min_mb):
    hosts, vms = cluster
    answer = even_distribution.choose(hosts, vms, high, max_mb * MB, min_mb * MB)
    first = even_distribution.choose(hosts, list(reversed(vms)), high, max_mb * MB, min_mb * MB)
    assert first == answer  # VM ties are broken by id, not list order
    if len({h.id for h in hosts}) < 2:
        assert answer is None
    if answer is None:
        return
    vm_id, candidates = answer
    by_id = {h.id: h for h in hosts}
    chosen = next(v for v in vms if v.id == vm_id)
    assert chosen.status == "up" and candidates[-1] == chosen.host_id
    assert len(set(candidates)) == len(candidates) >= 2
    for hid in candidates[:-1]:
        dest = by_id[hid]
        load = (chosen.cpu_usage or 0) * chosen.vcpus / dest.cpu_threads
        assert dest.cpu_usage + load <= high
        assert dest.max_scheduling_memory - chosen.memory > max_mb * MB
