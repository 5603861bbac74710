"""A simulated oVirt engine: the REST API v4 subset the policy units use, over real HTTP.

The real, unmodified ovirtsdk4 works against it (docs/ENGINE_API.md is the spec): SSO login
and logout, bearer tokens with 401 renewal, hosts/VMs/clusters with their statistics,
`follow=statistics`, affinity groups and labels, the audit log's events, a subset of the
search language, faults and 404s.  The data comes from a cluster snapshot (JSON, the format
of `proxy.snapshot`); tests change it between calls (`move_vm`, `update_host`,
`set_affinity_groups`, `add_event`...) and inject failures (`fail_next`, `delay`).

The HTTP side is in `httpd`, the XML documents in `bodies` (affinity in `affinity`, events
in `events`), the search language in `search`.  Free memory is served exactly (the engine steps it by whole percents), so
memory thresholds can be tested to the MiB.

Run it: `ovirt-scheduler-proxy simulate --snapshot config/cluster-small.json` prints the API URL.
"""

import collections
import datetime
import json
import secrets
import threading
import time

from ..snapshot import (HOST_STATUSES, VM_STATUSES, validate_affinity_groups,
                        validate_affinity_labels, validate_events, validate_host,
                        validate_snapshot, validate_vm)
from . import affinity, bodies, events, search
from .httpd import SSO_LOGOUT, EngineServer

__all__ = ["SimulatedEngine", "Request"]

API = bodies.API
TOKEN_LIFETIME_MS = 10 * 3600 * 1000

Request = collections.namedtuple("Request", "method path query status")


class _State:
    """The engine's data, the per-entity render cache and the search field tables.

    Not locked itself: SimulatedEngine holds its lock around every use.
    """

    def __init__(self, snapshot):
        snapshot = validate_snapshot(snapshot)
        self.clusters = {c["id"]: c for c in snapshot["clusters"]}
        self.hosts = {h["id"]: h for h in snapshot["hosts"]}
        self.vms = {v["id"]: v for v in snapshot["vms"]}
        self.groups = {g["id"]: g for g in snapshot["affinity_groups"]}
        self.labels = {x["id"]: x for x in snapshot["affinity_labels"]}
        self.events = snapshot["events"]  # oldest first
        self.event_fields = events.search_fields(self)
        self.on_host = {hid: set() for hid in self.hosts}  # host id -> ids of VMs placed there
        for v in self.vms.values():
            if v["host"]:
                self.on_host[v["host"]].add(v["id"])
        self.cache = {}
        F = search.Field
        self.host_fields = {
            "id": F("id", lambda h: h["id"]), "name": F("text", lambda h: h["name"]),
            "address": F("text", lambda h: h["address"]),
            "status": F("enum", lambda h: h["status"], HOST_STATUSES),
            "cluster": F("text", lambda h: self.clusters[h["cluster"]]["name"]),
            "active_vms": F("int", lambda h: self.summary(h["id"])[0]),
            "memory": F("int", lambda h: h["memory_mb"]),
        }
        self.vm_fields = {
            "id": F("id", lambda v: v["id"]), "name": F("text", lambda v: v["name"]),
            "status": F("enum", lambda v: v["status"], VM_STATUSES),
            "cluster": F("text", lambda v: self.clusters[v["cluster"]]["name"]),
            "host": F("text", lambda v: self.hosts[v["host"]]["name"] if v["host"] else None),
            "os": F("text", lambda v: v["os_type"]),
            "memory": F("int", lambda v: v["memory_mb"]),
        }
        self.cluster_fields = {"id": F("id", lambda c: c["id"]), "name": F("text", lambda c: c["name"])}

    def snapshot(self):
        return json.loads(json.dumps({
            "clusters": list(self.clusters.values()), "hosts": list(self.hosts.values()),
            "vms": list(self.vms.values()), "affinity_groups": list(self.groups.values()),
            "affinity_labels": list(self.labels.values()), "events": self.events}))

    def summary(self, host_id):
        statuses = [self.vms[v]["status"] for v in self.on_host[host_id]]
        return statuses.count("up"), statuses.count("migrating"), len(statuses)

    def forget(self, kind, entity_id):
        self.cache.pop((kind, entity_id), None)
        self.cache.pop((kind + "-stats", entity_id), None)

    def _cached(self, key, render):
        text = self.cache.get(key)
        if text is None:
            text = self.cache[key] = render()
        return text

    def stat_values(self, kind, entity):
        return bodies.host_stat_values(entity) if kind == "host" else bodies.vm_stat_values(entity)

    def entity_xml(self, kind, entity, follow):
        eid = entity["id"]
        if kind == "host":
            body = self._cached(("host", eid), lambda: bodies.host_body(entity, self.summary(eid)))
        else:
            body = self._cached(("vm", eid), lambda: bodies.vm_body(
                entity, bodies.ref("host", entity["host"]) if entity["host"] else ""))
        if not follow:
            return f"{body}</{kind}>"
        stats = self._cached((kind + "-stats", eid), lambda: bodies.statistics(
            kind, eid, self.stat_values(kind, entity)))
        return f"{body}<statistics>{stats}</statistics></{kind}>"


class SimulatedEngine:
    """A simulated engine serving `snapshot` (the proxy.snapshot format) once start()ed.

    Counters: `api_requests` (every API request received, whatever its answer; SSO not
    included), `logins` (tokens granted), `failed_logins`, `logouts`, and `requests`, the
    recent API requests as Request(method, path, query dict, status).  Controls: `delay`
    (seconds before every answer), fail_next(), revoke_tokens(), move_vm(), update_host(),
    update_vm(), set_affinity_groups(), set_affinity_labels(), add_event().  Thread-safe: one lock guards the state, the counters and the cache.
    """

    def __init__(self, snapshot, *, host="127.0.0.1", port=0, user="admin@internal",
                 password="secret"):
        self._state = _State(snapshot)
        self._address = (host, port)
        self.user, self.password = user, password
        self.delay = 0.0  # seconds every request (API and SSO) waits before it is answered
        self._lock = threading.RLock()
        self._tokens = set()
        self._failures = collections.deque()
        self._stopping = threading.Event()
        self._server = self._thread = None
        self._stopped = False
        self.reset_counters()

    # --- life cycle --------------------------------------------------------------------

    def start(self):
        if self._stopped:
            raise RuntimeError("a stopped SimulatedEngine cannot be restarted; make a new one")
        if self._server is not None:
            return self
        self._server = EngineServer(self._address, self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"simulated-engine:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stops serving and closes the listening socket and open connections; idempotent."""
        if self._server is None or self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._server.drop_connections()
        self._thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self):
        return self._server.server_address[1] if self._server else self._address[1]

    @property
    def url(self):
        host = self._server.server_address[0] if self._server else self._address[0]
        return f"http://{host}:{self.port}{API}"

    # --- test controls -----------------------------------------------------------------

    def reset_counters(self):
        with self._lock:
            self.api_requests = self.logins = self.failed_logins = self.logouts = 0
            self.requests = collections.deque(maxlen=10000)

    @property
    def tokens(self):
        """The SSO tokens currently valid."""
        with self._lock:
            return set(self._tokens)

    def revoke_tokens(self):
        """Invalidates every token, so the next API request gets 401 (as after expiry)."""
        with self._lock:
            self._tokens.clear()

    def fail_next(self, status, count=1):
        """The next `count` API requests are answered `status` with an empty body."""
        with self._lock:
            self._failures.extend([int(status)] * count)

    def snapshot(self):
        """The current state, in the snapshot format."""
        with self._lock:
            return self._state.snapshot()

    def move_vm(self, vm_id, host_id, *, adjust_memory=True):
        """Places a running VM on another host, as a finished migration would.

        With adjust_memory, the VM's memory moves too: free and schedulable memory grow on
        the source and shrink on the destination (kept within 0 and the host's memory).
        """
        with self._lock:
            s = self._state
            vm, dest = s.vms.get(vm_id), s.hosts.get(host_id)
            if vm is None or dest is None:
                raise KeyError(f"unknown {'VM ' + vm_id if vm is None else 'host ' + host_id}")
            if vm["host"] is None:
                raise ValueError(f"VM {vm['name']} is {vm['status']} and runs nowhere; "
                                 "use update_vm(status=..., host=...) to start it")
            source = s.hosts[vm["host"]]
            if source is dest:
                return
            if adjust_memory and vm["status"] == "up":
                for host, change in ((source, vm["memory_mb"]), (dest, -vm["memory_mb"])):
                    host["max_scheduling_memory_mb"] = max(0, host["max_scheduling_memory_mb"] + change)
                    if host["free_memory_mb"] is not None:
                        host["free_memory_mb"] = min(host["memory_mb"],
                                                     max(0, host["free_memory_mb"] + change))
                    s.forget("host", host["id"])
            self._place(vm, vm, dest["id"])

    def update_host(self, host_id, **fields):
        """Changes snapshot fields of a host (validated as on load), e.g. free_memory_mb=300."""
        with self._lock:
            s = self._state
            old = s.hosts[host_id]
            new = validate_host({**old, **fields, "id": host_id}, f"host {old['name']}",
                                s.clusters)
            self._check_unique_name(s.hosts, new, "host")
            s.hosts[host_id] = new
            s.forget("host", host_id)

    def update_vm(self, vm_id, **fields):
        """Changes snapshot fields of a VM, e.g. status="down", host=None."""
        with self._lock:
            s = self._state
            old = s.vms[vm_id]
            new = validate_vm({**old, **fields, "id": vm_id}, f"VM {old['name']}",
                              s.clusters, s.hosts)
            self._check_unique_name(s.vms, new, "VM")
            self._place(old, new, new["host"])

    def set_affinity_groups(self, groups):
        """Replaces every affinity group by `groups` (the snapshot format, validated as on load)."""
        with self._lock:
            s = self._state
            s.groups = validate_affinity_groups(groups, s.clusters, s.hosts, s.vms, s.labels)

    def set_affinity_labels(self, labels):
        """Replaces every affinity label; the groups' label ids must still name labels."""
        with self._lock:
            s = self._state
            new = validate_affinity_labels(labels, s.hosts, s.vms)
            validate_affinity_groups(list(s.groups.values()), s.clusters, s.hosts, s.vms, new)
            s.labels = new

    def add_event(self, code, description, *, vm=None, host=None, time=None, severity="normal"):
        """Appends an audit-log event with the next id and returns it as served.

        `time` is ISO-8601 text with a UTC offset (default: now); `host` is a migration's
        source host.  Validated as the snapshot's events are.
        """
        with self._lock:
            s = self._state
            raw = {"id": s.events[-1]["id"] + 1 if s.events else 1, "code": code,
                   "time": time or datetime.datetime.now(datetime.timezone.utc).isoformat(),
                   "description": description, "vm": vm, "host": host, "severity": severity}
            s.events = validate_events([*s.events, raw], s.hosts, s.vms)
            return dict(s.events[-1])

    def _check_unique_name(self, entities, new, what):
        for other in entities.values():
            if other["name"] == new["name"] and other["id"] != new["id"]:
                raise ValueError(f"another {what} is already named {new['name']!r}")

    def _place(self, old, new, host_id):
        s = self._state
        for hid in {old["host"], host_id} - {None}:
            s.on_host[hid].discard(old["id"])
            s.forget("host", hid)  # its <summary> counts change
        new["host"] = host_id
        if host_id:
            s.on_host[host_id].add(new["id"])
        s.vms[new["id"]] = new
        s.forget("vm", new["id"])

    # --- serving (called from handler threads) -----------------------------------------

    def _pause(self):
        if self.delay > 0:
            self._stopping.wait(self.delay)

    def _sso(self, path, form):
        with self._lock:
            if path == SSO_LOGOUT:
                self.logouts += 1
                self._tokens.discard(form.get("token"))
                return 200, {}
            if form.get("grant_type") != "password":
                return 400, {"error_code": "unsupported_grant_type",
                             "error": f"grant_type {form.get('grant_type')!r} is not supported"}
            user = form.get("username", "")
            if user != self.user or form.get("password") != self.password:
                self.failed_logins += 1
                return 400, {"error_code": "access_denied",
                             "error": f"Cannot authenticate user '{user}': Unable to log in. Verify "
                                      "your login information or contact the system administrator.."}
            self.logins += 1
            token = secrets.token_urlsafe(48)
            self._tokens.add(token)
            return 200, {"access_token": token, "scope": form.get("scope", "ovirt-app-api"),
                         "exp": str(int(time.time() * 1000) + TOKEN_LIFETIME_MS),
                         "token_type": "bearer"}

    def _api(self, method, path, query, authorization):
        with self._lock:
            self.api_requests += 1
            status, text = self._answer(method, path, query, authorization)
            self.requests.append(Request(method, path, query, status))
            return status, text

    def _answer(self, method, path, query, authorization):
        if self._failures:
            return self._failures.popleft(), ""
        if not authorization.startswith("Bearer ") or authorization[7:] not in self._tokens:
            return 401, ""
        if path != API and not path.startswith(API + "/"):
            return 404, ""
        if method != "GET":
            return 405, bodies.fault(f"the simulated engine only serves GET, not {method}")
        parts = path[len(API):].strip("/").split("/") if path != API else []
        try:
            return self._get(parts, query)
        except search.SearchError as e:
            return 400, bodies.fault(f"Invalid search: {e}")
        except ValueError as e:
            return 400, bodies.fault(str(e))

    def _get(self, parts, query):
        s = self._state
        if not parts:
            return 200, bodies.api_root()
        if parts[0] == "affinitylabels":
            return affinity.labels_answer(s, parts[1:], query)
        if parts[0] == "events":
            return events.answer(s, parts[1:], query)
        if parts[:1] == ["clusters"] and parts[2:3] == ["affinitygroups"]:
            if parts[1] not in s.clusters:
                return 404, ""
            return affinity.groups_answer(s, parts[1], parts[3:], query)
        kind = parts[0][:-1]  # hosts -> host
        entities = {"hosts": s.hosts, "vms": s.vms, "clusters": s.clusters}.get(parts[0])
        if entities is None or len(parts) > 4:
            return 404, ""
        follow = self._follow(query, kind)
        if len(parts) == 1:
            return 200, self._collection(kind, entities, query, follow)
        entity = entities.get(parts[1])
        if entity is None:
            return 404, ""
        if kind == "cluster":
            return (200, bodies.cluster_xml(entity)) if len(parts) == 2 else (404, "")
        if len(parts) == 2:
            return 200, s.entity_xml(kind, entity, follow)
        if parts[2] != "statistics":
            return 404, ""
        values = s.stat_values(kind, entity)
        if len(parts) == 3:
            return 200, f"<statistics>{bodies.statistics(kind, entity['id'], values)}</statistics>"
        one = bodies.statistic_named(kind, entity["id"], values, parts[3])
        return (200, one) if one else (404, "")

    @staticmethod
    def _follow(query, kind):
        allowed = {"statistics"} if kind in ("host", "vm") else set()
        return "statistics" in search.follow(query, f"{kind}s", allowed)

    def _collection(self, kind, entities, query, follow):
        s = self._state
        fields = {"host": s.host_fields, "vm": s.vm_fields, "cluster": s.cluster_fields}[kind]
        parsed = search.parse(query.get("search", ""), fields,
                              case_sensitive=search.case_sensitive(query))
        found = search.apply(parsed, entities.values(), fields, search.limit(query))
        if kind == "cluster":
            items = [bodies.cluster_xml(c) for c in found]
        else:
            items = [s.entity_xml(kind, e, follow) for e in found]
        return f"<{kind}s>{''.join(items)}</{kind}s>"

