"""proxy.sim.events: the audit log as the real ovirtsdk4 reads it (migration history)."""

import datetime
from xml.etree import ElementTree

import ovirtsdk4 as sdk
import pytest

from tests.sim_fixtures import by_name, connection, raw

MIGRATIONS = "type=62 or type=63 or type=65 or type=67"


def _events(sim, **kwargs):
    with connection(sim) as conn:
        return conn.system_service().events_service().list(**kwargs)


@pytest.mark.parametrize("kwargs,ids", [
    ({}, [107, 106, 105, 104, 103, 102, 101]),  # newest first
    ({"search": "type=62 or type=67", "from_": 101}, [106, 104]),
    ({"search": MIGRATIONS}, [107, 106, 105, 104, 102, 101]),  # not the login (30)
    ({"search": MIGRATIONS, "from_": 104}, [107, 106, 105]),
    ({"from_": 101, "max": 2}, [107, 106]),  # max keeps the newest above `from`
    ({"search": "type!=30 and severity=error"}, [107]),
    ({"search": "event_vm=TINY1"}, [107, 106]),
    ({"search": "event_host=host2 sortby type asc"}, [104, 105]),
    ({"from_": 107}, []),
])
def test_search_from_and_max(affinity_engine, kwargs, ids):
    assert [int(e.id) for e in _events(affinity_engine, **kwargs)] == ids


def test_an_event_names_its_vm_source_host_and_cluster(affinity_engine, affinity_snapshot):
    vms, hosts = by_name(affinity_snapshot, "vms"), by_name(affinity_snapshot, "hosts")
    events = {int(e.id): e for e in _events(affinity_engine)}
    started = events[106]
    assert (started.code, started.index, started.severity) == (67, 106, sdk.types.LogSeverity.NORMAL)
    assert started.vm.id == vms["tiny1"]["id"] and started.host.id == hosts["host1"]["id"]
    assert started.cluster.id == affinity_snapshot["clusters"][0]["id"]
    assert started.time == datetime.datetime(2024, 5, 1, 10, 7, 1, tzinfo=datetime.timezone.utc)
    assert "Destination: host4" in started.description
    assert events[107].severity == sdk.types.LogSeverity.ERROR
    login = events[103]
    assert login.vm is None and login.host is None and login.cluster is None


def test_one_event_by_id(affinity_engine):
    with connection(affinity_engine) as conn:
        service = conn.system_service().events_service()
        assert service.event_service("105").get().code == 63
        with pytest.raises(sdk.NotFoundError):
            service.event_service("999").get()


def test_added_events_are_seen_by_a_poll_from_the_last_id(affinity_engine, affinity_snapshot):
    vms, hosts = by_name(affinity_snapshot, "vms"), by_name(affinity_snapshot, "hosts")
    last = max(int(e.id) for e in _events(affinity_engine, search=MIGRATIONS))
    added = affinity_engine.add_event(67, "Migration initiated by system (VM: web1, Source: host1, "
                                          "Destination: host5, Reason: Load balancing).",
                                      vm=vms["web1"]["id"], host=hosts["host1"]["id"])
    affinity_engine.add_event(30, "User admin@internal-authz logged in.",
                              time="2024-05-02T08:00:00+02:00")
    assert added["id"] == 108 and added["time"].endswith("+00:00")
    found = _events(affinity_engine, search=MIGRATIONS, from_=last)
    assert [(int(e.id), e.vm.id) for e in found] == [(108, vms["web1"]["id"])]
    assert affinity_engine.snapshot()["events"][-1]["time"] == "2024-05-02T08:00:00.000+02:00"


@pytest.mark.parametrize("query,detail", [
    ("search=type%3C60", "Invalid search: type<60: type only takes = and !="),
    ("search=type%3Dmigration", "Invalid search: type=migration: type takes a whole number"),
    ("from=latest", "from must be a whole number (an event id), got 'latest'"),
    ("follow=vm", "follow=vm is not supported for events"),
])
def test_bad_queries_are_400_faults(affinity_engine, query, detail):
    with connection(affinity_engine) as conn:
        status, _, body = raw(affinity_engine, "GET", f"/ovirt-engine/api/events?{query}",
                              token=conn.authenticate())
    assert status == 400 and ElementTree.fromstring(body).findtext("detail").startswith(detail)
