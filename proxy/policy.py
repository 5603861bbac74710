"""Per-unit policy: the `[units.NAME]` tables of the configuration.

    [units.host_memory_balance]
    timeout = 5                 # seconds; overrides plugins.timeout for this unit
    shadow = "memory_balance_v2"  # run this unit too, journal it, never answer with it

    [units.must_have_gpu]
    on_failure = "closed"       # a filter that fails removes every host (default "open")

Each key is declared once, in KEYS.  The names are known only once the plugins are
discovered, so `problems()` is asked then: at start a wrong name is a configuration error,
at a reload it is logged and the proxy keeps serving.
"""

import dataclasses
import math

from .errors import ConfigError

ON_FAILURE = ("open", "closed")


@dataclasses.dataclass(frozen=True)
class UnitPolicy:
    timeout: float | None = None  # None: plugins.timeout
    on_failure: str = "open"  # filters only: what a failed filter means
    shadow: str = ""  # a unit of the same type run after the live one, for the journal only


def _timeout(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
        return "must be a number of seconds greater than 0"


def _on_failure(v):
    if v not in ON_FAILURE:
        return 'must be "open" (a failed filter is ignored) or "closed" (a failed filter removes every host)'


def _shadow(v):
    if not isinstance(v, str) or not v:
        return "must be the name of another unit of the same type"


# key -> (check returning an error text or None, help)
KEYS = {
    "timeout": (_timeout, "seconds this unit's call may take (overrides plugins.timeout)"),
    "on_failure": (_on_failure, 'filters: "open" ignores a failed filter, "closed" removes every host'),
    "shadow": (_shadow, "a unit run after this one on the same arguments, journaled, never sent"),
}


def parse(table, where):
    """{unit name: UnitPolicy} from the `units` table of a TOML file; ConfigError naming the table."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: units must hold tables, one per unit: [units.NAME]")
    policies = {}
    for name, keys in table.items():
        here = f"{where}: [units.{name}]"
        if not isinstance(keys, dict):
            raise ConfigError(f"{here} must be a table (write [units.{name}] and its keys below it)")
        for key, value in keys.items():
            if key not in KEYS:
                raise ConfigError(f"{here}: unknown key {key!r}; known: {', '.join(KEYS)}")
            problem = KEYS[key][0](value)
            if problem:
                raise ConfigError(f"{here}: {key} {problem}, got {value!r}")
        values = dict(keys)
        if "timeout" in values:
            values["timeout"] = float(values["timeout"])
        policies[name] = UnitPolicy(**values)
    return policies


def problems(policies, catalog):
    """What is wrong with the tables once the units are known: [text naming the table]."""
    found = []
    types = {}
    for unit in catalog.units:
        types.setdefault(unit.name, unit.type)
    for name, p in policies.items():
        if name not in types:
            known = ", ".join(sorted(types)) or "none"
            found.append(f"[units.{name}]: no unit named {name!r} was discovered (units: {known})")
            continue
        if p.on_failure != "open" and types[name] != "filter":
            found.append(f"[units.{name}]: on_failure applies to filters; {name} is a {types[name]} unit")
        if p.shadow and types.get(p.shadow) != types[name]:
            found.append(f"[units.{name}]: shadow {p.shadow!r} is not a {types[name]} unit that was discovered")
    return found


def render_example():
    """Commented lines for config/proxy.toml."""
    lines = ["", "# Per-unit policy, one table per unit name (none by default):", "# [units.NAME]"]
    lines += [f"# {key} = ...   # {help}" for key, (_, help) in KEYS.items()]
    return lines
