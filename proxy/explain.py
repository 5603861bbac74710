"""Why a unit decided what it did: short reasons a unit attaches to its answer.

    from proxy import explain
    explain.reason(host_id, "free 412 MiB, under the 500 MiB threshold")   # about one host
    explain.because("moves tiny1 (256 MiB), the smallest VM that fits elsewhere")  # the decision

Units that never call these need nothing.  The reasons live in the worker process (a worker
runs exactly one call), travel back in messages.Answer.reasons, and are journaled and shown
by `ovirt-scheduler-proxy explain`.  They are bounded: an engine sends thousands of hosts,
and a chatty unit must not make its answer, or the journal, grow with them.
"""

MAX_TEXT = 300  # characters per reason; longer ones are cut with "…"
MAX_HOSTS = 500  # hosts with a reason per call; reasons for further hosts are counted, not kept

_hosts = {}
_decision = []
_dropped = [0]


def _clip(text):
    text = str(text)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"


def reason(host_id, text):
    """Why host_id scored, passed or was chosen (or not) as it was; the last reason for a host wins."""
    host_id = str(host_id)
    if host_id in _hosts or len(_hosts) < MAX_HOSTS:
        _hosts[host_id] = _clip(text)
    else:
        _dropped[0] += 1


def because(text):
    """Why the call decided as it did as a whole (a balance decision, or nothing to do)."""
    _decision[:] = [_clip(text)]


def collected():
    """{"hosts": {id: text}, "decision": text, "dropped": n} of this call, or None if the unit gave none."""
    if not _hosts and not _decision:
        return None
    found = {"hosts": dict(_hosts), "decision": _decision[0] if _decision else ""}
    if _dropped[0]:
        found["dropped"] = _dropped[0]
    return found


def reset():
    """Forget the reasons given so far (a worker runs one call; in-process callers reuse it)."""
    _hosts.clear()
    _decision.clear()
    _dropped[0] = 0
