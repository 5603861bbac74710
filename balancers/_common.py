"""Shared by the shipped policy units: reading property values and looking at engine data.

Not a plugin (the leading underscore keeps the registry from scanning it).  The engine sends
the cluster policy's properties as a map of strings holding the keys of *every* unit in the
policy, so each unit reads only its own keys, through these parsers, and gets a clear
ValueError (reported to the engine by the proxy) instead of a bare int() traceback.
"""

import re

from proxy import engine


MIB = 1024 * 1024

_WHOLE_NUMBER = re.compile(r"[0-9]+")  # str.isdigit() would also accept '²' or Arabic digits


def _raw(args, key):
    """The value as sent, or None when it is absent or empty.

    Empty counts as "not set": regexes such as `[0-9]*` let an admin save an empty value.
    """
    value = (args or {}).get(key)  # the engine passes the balance map without a null check
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def int_property(args, key, default, *, unit="", minimum=0, maximum=None):
    """A whole-number property; `default` when absent or empty."""
    raw = _raw(args, key)
    if raw is None:
        return default
    what = f"a whole number of {unit}" if unit else "a whole number"
    if not _WHOLE_NUMBER.fullmatch(raw):
        raise ValueError(f"{key} must be {what}, got {raw!r}")
    value = int(raw)
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and at most {maximum}"
        raise ValueError(f"{key} must be at least {minimum}{upper}, got {raw!r}")
    return value


def bool_property(args, key, default):
    """A True/False property (any case); `default` when absent or empty.

    bool('False') is True, which is how the original memory balancer lost its aggressive mode.
    """
    raw = _raw(args, key)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise ValueError(f"{key} must be True or False, got {raw!r}")


def unique(items, key=lambda item: item):
    """Items in their first-seen order, without repeats (the engine could send a host twice)."""
    seen, out = set(), []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            out.append(item)
    return out


def is_up(entity):
    """True when a host or VM status reads 'up' (an SDK enum or a plain string)."""
    status = getattr(entity, "status", None)
    return str(getattr(status, "value", status)).lower() == "up"


def running_vms_by_host(vms):
    """host id -> the VMs that are up on it, in the order the engine listed them."""
    by_host = {}
    for vm in vms:
        if vm.host_id is not None and is_up(vm):
            by_host.setdefault(vm.host_id, []).append(vm)
    return by_host


def hosts_and_source_vms(host_ids, find_source):
    """(the Up hosts among host_ids, the source find_source picks of them, the VMs up on it).

    Two requests whatever the host count, and only one in the common case of no source.
    Hosts that left Up since the engine listed them are neither sources nor targets.
    """
    with engine.connect() as conn:
        found = [h for h in engine.hosts(conn, host_ids).values() if is_up(h)]
        source = find_source(found)
        vms = engine.vms(conn, on_hosts=[source]) if source is not None else []
    return found, source, vms
