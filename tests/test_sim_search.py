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
}
ENTITIES = [
    {"name": "a1", "host": "h1", "status": "up", "memory": 1024},
    {"name": "a2", "host": "h2", "status": "up", "memory": 4096},
    {"name": "b1", "host": None, "status": "down", "memory": 2048},
    {"name": "B2", "host": "h1", "status": "non_responsive", "memory": None},
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
