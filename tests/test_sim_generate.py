"""proxy.sim.generate: generated snapshots are valid, reproducible, give a balancer work, and
their affinity groups are kept by the placement."""

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.sim.generate import generate_snapshot
from proxy.snapshot import validate_snapshot


@settings(max_examples=30, deadline=None)
@given(hosts=st.integers(1, 40), vms=st.integers(0, 300), seed=st.integers(0, 2 ** 32),
       clusters=st.integers(1, 3), data=st.data())
def test_generated_snapshots_are_valid_and_deterministic(hosts, vms, seed, clusters, data):
    pressure = data.draw(st.integers(0, hosts))
    made = generate_snapshot(hosts, vms, seed=seed, clusters=clusters, pressure_hosts=pressure)
    assert validate_snapshot(made) == made
    assert generate_snapshot(hosts, vms, seed=seed, clusters=clusters, pressure_hosts=pressure) == made
    assert (len(made["hosts"]), len(made["vms"]), len(made["clusters"])) == (hosts, vms, clusters)
    low = [h for h in made["hosts"] if h["free_memory_mb"] < 500]
    assert len(low) == pressure and all(h["status"] == "up" for h in low)


def test_generator_gives_pressure_hosts_something_to_move():
    made = generate_snapshot(20, 400, seed=7, pressure_hosts=2)
    assert made != generate_snapshot(20, 400, seed=8, pressure_hosts=2)
    for host in (h for h in made["hosts"] if h["free_memory_mb"] < 500):
        assert sum(v["host"] == host["id"] and v["status"] == "up" for v in made["vms"]) >= 1


def _satisfied(group, vms):
    """Whether the running members keep the group's enabled rules (written out, not the sim's)."""
    hosts = [vms[v]["host"] for v in group["vms"] if vms[v]["host"]]
    vms_rule, hosts_rule = group["vms_rule"], group["hosts_rule"]
    if vms_rule["enabled"] and vms_rule["positive"] and len(set(hosts)) > 1:
        return False
    if vms_rule["enabled"] and not vms_rule["positive"] and len(set(hosts)) < len(hosts):
        return False
    if not hosts_rule["enabled"]:
        return True
    inside = [h in group["hosts"] for h in hosts]
    return all(inside) if hosts_rule["positive"] else not any(inside)


@settings(max_examples=30, deadline=None)
@given(hosts=st.integers(1, 30), vms=st.integers(0, 200), seed=st.integers(0, 2 ** 32),
       clusters=st.integers(1, 3), groups=st.integers(0, 12))
def test_generated_affinity_groups_are_valid_and_kept_by_the_placement(hosts, vms, seed, clusters, groups):
    made = generate_snapshot(hosts, vms, seed=seed, clusters=clusters, affinity_groups=groups)
    assert validate_snapshot(made) == made
    assert generate_snapshot(hosts, vms, seed=seed, clusters=clusters, affinity_groups=groups) == made
    assert len(made["affinity_groups"]) == groups
    by_id = {v["id"]: v for v in made["vms"]}
    for group in made["affinity_groups"]:
        assert _satisfied(group, by_id), group
        assert group["vms_rule"]["enabled"] != group["hosts_rule"]["enabled"]
    # Groups are drawn after everything else: the cluster itself does not change.
    without = generate_snapshot(hosts, vms, seed=seed, clusters=clusters)
    assert {**made, "affinity_groups": []} == without


def test_generated_groups_mix_kinds_and_strengths():
    groups = generate_snapshot(30, 400, seed=2, affinity_groups=40)["affinity_groups"]
    kinds = {("vms" if g["vms_rule"]["enabled"] else "hosts",
              (g["vms_rule"] if g["vms_rule"]["enabled"] else g["hosts_rule"])["positive"],
              (g["vms_rule"] if g["vms_rule"]["enabled"] else g["hosts_rule"])["enforcing"])
             for g in groups}
    assert len(kinds) == 8  # VM-to-VM and VM-to-host, positive and negative, hard and soft
    assert all(2 <= len(g["vms"]) <= 4 for g in groups if g["vms_rule"]["enabled"])



def test_hot_hosts_are_cpu_hot_spots_with_busy_vms_and_change_nothing_else():
    plain = generate_snapshot(30, 600, seed=5, pressure_hosts=2)
    made = generate_snapshot(30, 600, seed=5, pressure_hosts=2, hot_hosts=4)
    assert validate_snapshot(made) == made
    hot = [h for h in made["hosts"] if h["cpu_load"] >= 85]
    assert len(hot) == 4 and all(h["status"] == "up" for h in hot)
    for h in hot:
        theirs = [v for v in made["vms"] if v["host"] == h["id"]]
        assert theirs and all(60 <= v["cpu_usage"] <= 100 for v in theirs)
    # Only CPU figures of the hot hosts and their VMs differ from the plain cluster.
    hot_ids = {h["id"] for h in hot}
    assert [{**h, "cpu_load": 0} for h in made["hosts"]] == [{**h, "cpu_load": 0} for h in plain["hosts"]]
    assert ([v for v in made["vms"] if v["host"] not in hot_ids]
            == [v for v in plain["vms"] if v["host"] not in hot_ids])


def test_skewed_sizes_give_more_small_and_some_very_large_vms():
    plain = generate_snapshot(40, 2000, seed=2)
    skewed = generate_snapshot(40, 2000, seed=2, skewed_sizes=True)
    assert validate_snapshot(skewed) == skewed
    def share(doc, size):
        return sum(v["memory_mb"] == size for v in doc["vms"]) / len(doc["vms"])
    assert share(skewed, 1024) > 2 * share(plain, 1024)
    assert share(skewed, 65536) > 0 == share(plain, 65536)
