"""Balance units for the moves and limits tests: each proposes the VM named in its `vm`
property (to every other host sent) and says, as its decision's reason, what it saw of the
balancing interface, as JSON."""
import json

from proxy import balancing, engine, explain


def _seen():
    limits, recent = balancing.limits(), balancing.recent_moves()
    last = recent[-1] if recent else None  # a reason is cut at 300 characters: the newest move only
    return json.dumps({"applies": limits.applies, "cooling": len(limits.cooling),
                       "budget_left": limits.budget_left, "moves": len(recent),
                       "last": last and [last.vm_id[-2:], last.source_id, len(last.candidates), last.origin],
                       "history": [r.version for r in balancing.load_history()]})


def _propose(hosts, args):
    explain.because(_seen())
    vm = args.get("vm")
    if not vm:
        return None
    try:
        on = engine.snapshot().vms[vm].host_id
    except Exception:  # no shared snapshot in this test: every host is a candidate
        on = None
    return vm, [h for h in hosts if h != on]


class named_vm_mover:
    properties_validation = "vm=.*"

    def do_balance(self, hosts, args):
        """Moves the VM its vm property names, off its host."""
        return _propose(hosts, args)


class unlimited_mover:
    properties_validation = "vm=.*"
    balancing_limits = False  # opts out of the cooldown and the budget

    def do_balance(self, hosts, args):
        """As named_vm_mover, without the proxy's balancing limits."""
        return _propose(hosts, args)
