"""proxy.sim.search: the engine's search language, parsed and applied without HTTP."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.sim import search
from proxy.snapshot import load_snapshot
from tests.support import ROOT

FIELDS = {
    "name": search.Field("text", lambda e: e["name"]),
    "host": search.Field("text", lambda e: e.get("host")),
    "status": search.Field("enum", lambda e: e["status"], frozenset(("up", "down", "non_responsive"))),
    "memory": search.Field("int", lambda e: e.get("memory")),
    "type": search.Field("code", lambda e: e["type"]),
}
ENTITIES = [
    {"name": "a1", "host": "h1", "status": "up", "memory": 1024, "type": 62},
    {"name": "a2", "host": "h2", "status": "up", "memory": 4096, "type": 63},
    {"name": "b1", "host": None, "status": "down", "memory": 2048, "type": 67},
    {"name": "B2", "host": "h1", "status": "non_responsive", "memory": None, "type": 30},
]


def found(text, limit=None, **kwargs):
    return [e["name"] for e in search.apply(search.parse(text, FIELDS, **kwargs), ENTITIES,
                                            FIELDS, limit)]


@settings(max_examples=60, deadline=None)
@given(picks=st.lists(st.integers(0, 9), min_size=1, max_size=10), upper=st.booleans())
def test_id_or_search_property_without_http(picks, upper):
    snapshot = load_snapshot(ROOT / "config" / "cluster-small.json")
    vms = snapshot["vms"]
    fields = {"id": search.Field("id", lambda v: v["id"])}
    word = " OR " if upper else " or "
    query = search.parse(word.join(f"id={vms[i]['id']}" for i in picks), fields)
    assert {v["id"] for v in search.apply(query, vms, fields)} == {vms[i]["id"] for i in picks}


@pytest.mark.parametrize("text,expected", [
    ("", ["a1", "a2", "b1", "B2"]),
    ("name=a* and host=h2 or name=b1", ["a2", "b1"]),  # AND binds tighter than OR
    ("host=h1 status=up", ["a1"]),  # side by side: AND
    ("host!=h1", ["a2"]),  # an unset host matches no condition, not even !=
    ("memory<=2048", ["a1", "b1"]),
    ("status=nonresponsive", ["B2"]),  # the engine's spelling
    ("name=b2", ["B2"]),
    ("type=62 or type=67", ["a1", "b1"]),  # an event code
    ("type!=30", ["a1", "a2", "b1"]),
])
def test_conditions(text, expected):
    assert found(text) == expected


def test_case_sensitive_text_sortby_and_page():
    assert found("name=b2", case_sensitive=True) == []
    assert found("name=* sortby memory desc") == ["a2", "b1", "a1", "B2"]  # unset sorts last
    assert found("name=* sortby name page 2", limit=3) == ["b1"]


@pytest.mark.parametrize("text,message", [
    ("colour=red", "unknown search field 'colour'"),
    ("memory>lots", "takes a whole number"),
    ("name>a", "only takes = and !="),
    ("type>=62", "type only takes = and !="),  # as the engine's event type
    ("status=sleeping", "not a valid status"),
    ("and name=a", "must stand between two conditions"),
    ("name=a or", "ends with 'and' or 'or'"),
    ("sortby colour", "sortby needs a field"),
    ("page x", "page needs a page number"),
    ("sortby name name=a", "after sortby/page"),
    ("name", "expected a condition"),
])
def test_malformed_searches_say_what_is_wrong(text, message):
    with pytest.raises(search.SearchError, match=message):
        search.parse(text, FIELDS)


@pytest.mark.parametrize("query,expected", [({}, None), ({"max": "3"}, 3), ({"max": "-1"}, None),
                                            ({"max": " 0 "}, 0)])
def test_limit_reads_max(query, expected):
    assert search.limit(query) == expected


def test_limit_case_sensitive_and_follow_refuse_or_read_their_parameter():
    with pytest.raises(ValueError, match="max must be a whole number, got 'all'"):
        search.limit({"max": "all"})
    assert [search.case_sensitive(q) for q in ({}, {"case_sensitive": ""}, {"case_sensitive": "TRUE"},
                                               {"case_sensitive": "false"})] == [False, True, True, False]
    assert search.follow({"follow": "vms, hosts"}, "groups", {"vms", "hosts"}) == {"vms", "hosts"}
    assert search.follow({}, "events", set()) == set()
    with pytest.raises(ValueError, match="follow=disks is not supported for groups by the simulated engine"):
        search.follow({"follow": "vms,disks"}, "groups", {"vms", "hosts"})
