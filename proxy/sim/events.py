"""The simulated engine's audit log: `/events` and `/events/{id}` (docs/ENGINE_API.md §9).

As the engine: newest first (highest id first), `from=N` keeps events with an id above N,
`max` keeps the first (newest) of what is left, and `search` takes the audit log's fields
(`type=62 or type=67`; `type` is the event code and takes only = and !=).  An event names
its VM, its host (the source host of a migration) and the cluster of that VM or host.

Every function takes the simulator's state (proxy.sim.engine._State: `events`, a list
oldest first in the snapshot format of `proxy.snapshot`, and `vms`, `hosts` by id).
"""

import re
from xml.sax.saxutils import escape

from ..snapshot import SEVERITIES
from . import bodies, search

__all__ = ["answer", "event_xml", "search_fields"]


def search_fields(state):
    """The event search fields the simulator knows (a subset of the engine's)."""
    F = search.Field
    return {
        "type": F("code", lambda e: e["code"]),
        "severity": F("enum", lambda e: e["severity"], SEVERITIES),
        "event_vm": F("text", lambda e: state.vms[e["vm"]]["name"] if e["vm"] else None),
        "event_host": F("text", lambda e: state.hosts[e["host"]]["name"] if e["host"] else None),
        "_event_vm_id": F("id", lambda e: e["vm"]),
        "_event_host_id": F("id", lambda e: e["host"]),
    }


def event_xml(state, event):
    eid = event["id"]
    owner = state.vms.get(event["vm"]) or state.hosts.get(event["host"])
    refs = "".join(bodies.ref(kind, ref_id) for kind, ref_id in (
        ("cluster", owner and owner["cluster"]), ("host", event["host"]), ("vm", event["vm"]))
        if ref_id)
    return (f'<event href="{bodies.API}/events/{eid}" id="{eid}"><code>{event["code"]}</code>'
            f'<description>{escape(event["description"])}</description><index>{eid}</index>'
            f'<severity>{event["severity"]}</severity><time>{event["time"]}</time>{refs}</event>')


def answer(state, rest, query):
    """(status, text) for `/events` and below; `rest` is the path after it."""
    if rest:
        found = [e for e in state.events if str(e["id"]) == rest[0]]
        return (200, event_xml(state, found[0])) if found and len(rest) == 1 else (404, "")
    search.follow(query, "events", set())
    after = query.get("from")
    if after is not None and not re.fullmatch(r"\s*-?\d+\s*", after):
        raise ValueError(f"from must be a whole number (an event id), got {after!r}")
    newest_first = [e for e in reversed(state.events) if after is None or e["id"] > int(after)]
    parsed = search.parse(query.get("search", ""), state.event_fields,
                          case_sensitive=search.case_sensitive(query))
    found = search.apply(parsed, newest_first, state.event_fields, search.limit(query))
    return 200, f"<events>{''.join(event_xml(state, e) for e in found)}</events>"
