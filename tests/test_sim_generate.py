"""proxy.sim.generate: generated snapshots are valid, reproducible and give a balancer work."""

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
