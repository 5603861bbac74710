"""Affinity groups and labels in the simulated engine: their XML and their paths.

The shapes are those of engine 4.4 and later (docs/ENGINE_API.md §8.3, the engine's
AffinityGroupMapper and AffinityLabelMapper):
- a group carries its member ids inline (`<vms><vm href id/></vms>`, hosts, and label ids),
  both rules, the legacy `<positive>`/`<enforcing>` of the VM rule, `priority`, `broken`,
  and a `<link>` per member sub-collection, so one list request gives every group;
- `follow=vms,hosts` inlines the members with their names instead, as the engine's
  LinkFollower swaps in the sub-collections;
- a label carries no members unless followed, and then only ids (`/vms`, `/hosts` of a label
  list id and href only).

Every function takes the simulator's state (proxy.sim.engine._State: `clusters`, `hosts`,
`vms`, `groups`, `labels`, as id -> dict in the snapshot format of `proxy.snapshot`).
"""

from decimal import Decimal
from xml.sax.saxutils import escape

from . import bodies, search

__all__ = ["broken", "group_xml", "groups_answer", "label_xml", "labels_answer"]

API = bodies.API
# The engine keeps a priority as a whole number of these steps (AffinityGroup.PRIORITY_PRECISION).
_PRIORITY_STEPS = 10 ** 7
_MEMBER_KINDS = {"vms": "vm", "hosts": "host"}
_LABEL_LISTS = {"vmlabels": "vm_labels", "hostlabels": "host_labels"}


def _flag(value):
    return "true" if value else "false"


def _rule(tag, rule):
    return (f"<{tag}><enabled>{_flag(rule['enabled'])}</enabled>"
            f"<enforcing>{_flag(rule['enforcing'])}</enforcing>"
            f"<positive>{_flag(rule['positive'])}</positive></{tag}>")


def priority_text(priority):
    """The engine's text: its stored steps divided by 10^7 as a BigDecimal (1 -> "1", 2.5 -> "2.5")."""
    exact = Decimal(round(priority * _PRIORITY_STEPS)) / _PRIORITY_STEPS
    return format(exact.normalize(), "f")


def broken(group, vms, labels):
    """Whether running VMs violate an enabled rule, hard or soft, as the engine works it out
    on every read (AffinityGroupsQueryBase.checkBrokenGroups); labels add their members."""
    vm_ids = set(group["vms"]).union(*(labels[i]["vms"] for i in group["vm_labels"]))
    host_ids = set(group["hosts"]).union(*(labels[i]["hosts"] for i in group["host_labels"]))
    running_on = [vms[v]["host"] for v in vm_ids if vms[v]["host"]]
    used = set(running_on)
    on_vms, on_hosts = group["vms_rule"], group["hosts_rule"]
    if on_vms["enabled"] and (len(used) > 1 if on_vms["positive"] else len(used) < len(running_on)):
        return True
    if on_hosts["enabled"]:
        return not used <= host_ids if on_hosts["positive"] else bool(used & host_ids)
    return False


def _member_list(kind, ids, entities=None):
    """`<vms>`/`<hosts>` of references; with `entities` (id -> dict) each carries its name."""
    items = []
    for member in ids:
        if entities is None:
            items.append(bodies.ref(kind, member))
        else:
            items.append(f'<{kind} href="{API}/{kind}s/{member}" id="{member}">'
                         f"<name>{escape(entities[member]['name'])}</name></{kind}>")
    return f"<{kind}s>{''.join(items)}</{kind}s>"


def _label_list(tag, ids, labels=None):
    """`<vm_labels>` (or another tag) of label references; with `labels`, named."""
    items = []
    for label in ids:
        name = f"<name>{escape(labels[label]['name'])}</name>" if labels else ""
        items.append(f'<affinity_label href="{API}/affinitylabels/{label}" id="{label}">'
                     f"{name}</affinity_label>")
    return f"<{tag}>{''.join(items)}</{tag}>"


def group_xml(state, group, follow=frozenset()):
    """One `<affinity_group>`; `follow` names the member lists ("vms", "hosts") to inline with names."""
    gid = group["id"]
    base = f"{API}/clusters/{group['cluster']}/affinitygroups/{gid}"
    links = "".join(f'<link href="{base}/{rel}" rel="{rel}"/>'
                    for rel in ("vms", "hosts", "vmlabels", "hostlabels"))
    vms_rule = group["vms_rule"]
    # The legacy fields are the VM rule's; positive is left out when that rule is disabled.
    legacy_positive = f"<positive>{_flag(vms_rule['positive'])}</positive>" if vms_rule["enabled"] else ""
    return (f'<affinity_group href="{base}" id="{gid}"><name>{escape(group["name"])}</name>{links}'
            f"<broken>{_flag(broken(group, state.vms, state.labels))}</broken>"
            f"<enforcing>{_flag(vms_rule['enforcing'])}</enforcing>"
            f"{_rule('hosts_rule', group['hosts_rule'])}{legacy_positive}"
            f"<priority>{priority_text(group['priority'])}</priority>{_rule('vms_rule', vms_rule)}"
            f"{bodies.ref('cluster', group['cluster'])}"
            f"{_label_list('host_labels', group['host_labels'])}"
            f"{_member_list('host', group['hosts'], state.hosts if 'hosts' in follow else None)}"
            f"{_label_list('vm_labels', group['vm_labels'])}"
            f"{_member_list('vm', group['vms'], state.vms if 'vms' in follow else None)}"
            "</affinity_group>")


def label_xml(label, follow=frozenset()):
    """One `<affinity_label>`; members (ids only) only for the lists named in `follow`."""
    lid = label["id"]
    base = f"{API}/affinitylabels/{lid}"
    members = "".join(_member_list(_MEMBER_KINDS[key], label[key])
                      for key in ("hosts", "vms") if key in follow)
    return (f'<affinity_label href="{base}" id="{lid}"><name>{escape(label["name"])}</name>'
            f'<link href="{base}/hosts" rel="hosts"/><link href="{base}/vms" rel="vms"/>'
            "<has_implicit_affinity_group>false</has_implicit_affinity_group>"
            f"<read_only>false</read_only>{members}</affinity_label>")


def groups_answer(state, cluster_id, rest, query):
    """(status, text) for `/clusters/{c}/affinitygroups` and below; `rest` is the path after it."""
    groups = [g for g in state.groups.values() if g["cluster"] == cluster_id]
    if not rest:
        follow = search.follow(query, "affinity groups", {"vms", "hosts"})
        listed = groups[:search.limit(query)]
        return 200, f"<affinity_groups>{''.join(group_xml(state, g, follow) for g in listed)}</affinity_groups>"
    group = next((g for g in groups if g["id"] == rest[0]), None)
    if group is None or len(rest) > 2:
        return 404, ""
    if len(rest) == 1:
        return 200, group_xml(state, group, search.follow(query, "affinity groups", {"vms", "hosts"}))
    # The member sub-collections list id, name and href per member.
    if rest[1] in _MEMBER_KINDS:
        return 200, _member_list(_MEMBER_KINDS[rest[1]], group[rest[1]], getattr(state, rest[1]))
    if rest[1] in _LABEL_LISTS:
        return 200, _label_list("affinity_labels", group[_LABEL_LISTS[rest[1]]], state.labels)
    return 404, ""


def labels_answer(state, rest, query):
    """(status, text) for `/affinitylabels` and below; `rest` is the path after it."""
    if not rest:
        follow = search.follow(query, "affinity labels", {"vms", "hosts"})
        listed = list(state.labels.values())[:search.limit(query)]
        return 200, f"<affinity_labels>{''.join(label_xml(x, follow) for x in listed)}</affinity_labels>"
    label = state.labels.get(rest[0])
    if label is None or len(rest) > 2:
        return 404, ""
    if len(rest) == 1:
        return 200, label_xml(label, search.follow(query, "affinity labels", {"vms", "hosts"}))
    if rest[1] in _MEMBER_KINDS:
        return 200, _member_list(_MEMBER_KINDS[rest[1]], label[rest[1]])
    return 404, ""
