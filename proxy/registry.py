"""The plugin registry: which policy units a plugin folder holds, and which were rejected.

A unit is a class, defined in a `*.py` module of the plugin folder, with `do_filter`,
`do_score` or `do_balance` (the original oVirt proxy's convention, kept so its plugins
run unchanged).  Modules are imported by the fork server, each first in a throw-away child
(see `forkserver.discover`), so a module that hangs or exits at import cannot take the
proxy down; this module only says what a module holds and merges the answers.
"""

import dataclasses
import functools
import importlib.util
import inspect
import os
import re
import sys
import traceback
from pathlib import Path

from . import messages

# A unit's type → the method its class defines, and the key its type has in discover().
UNIT_TYPES = {
    "filter": ("do_filter", "filters"),
    "score": ("do_score", "scores"),
    "balance": ("do_balance", "balance"),
}

# docs/ENGINE_PROTOCOL.md §5: what the engine's CustomPropertiesUtils accepts (Java String.matches,
# so the whole string).  A unit whose map fails this is skipped by the engine anyway.
_PROPERTIES_SYNTAX = re.compile(r"(?:[a-z_A-Z0-9]+=[^;]*(?:;[a-z_A-Z0-9]+=[^;]*)*;?)?", re.S)

MODULE_PREFIX = "proxy_units."  # keeps a plugin named json.py from shadowing the stdlib


@dataclasses.dataclass(frozen=True)
class Unit:
    type: str  # filter, score or balance
    name: str  # the class name: what the engine knows the unit by
    module: str  # file name in the plugin folder
    description: str
    properties: str  # the engine-syntax parameter map (properties_validation)
    # A balance unit's `balancing_limits = False` opts out of the cooldown and the budget:
    # it sees Limits(applies=False) and the proxy enforces nothing on its answers.
    balancing_limits: bool = True
    # `reuse_worker = True` says the unit keeps no state between calls: one worker may then
    # serve its calls one after another (plugins.worker_calls), saving the fork per call.
    # Without it every call gets a fresh process, so a unit's module state never carries over.
    reuse_worker: bool = False

    @property
    def key(self):
        return f"{self.module}:{self.name}"

    @property
    def method(self):
        return UNIT_TYPES[self.type][0]


@dataclasses.dataclass(frozen=True)
class Rejection:
    module: str
    unit: str  # "" when the whole module was rejected
    reason: str


def module_files(folder):
    """The plugin modules of a folder, in a stable order; `_x.py` files are helpers, not plugins."""
    folder = Path(folder)
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith(("_", ".")))


def fingerprint(folder):
    """Changes whenever a plugin file is added, removed or rewritten (cheap: one scandir)."""
    try:
        with os.scandir(folder) as entries:
            return tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size)
                                for e in entries if e.name.endswith(".py")))
    except OSError:
        return None


def properties_problem(value):
    """Why a properties_validation value would be refused by the engine, or None."""
    if not isinstance(value, str):
        return f"properties_validation must be a string, not {type(value).__name__}"
    if not _PROPERTIES_SYNTAX.fullmatch(value):
        return (f"properties_validation {value!r} is not in the engine's syntax "
                "'key=regex;key=regex' (keys: letters, digits and _ only; no spaces or empty entries)")
    return None


def load_module(path):
    """Import one plugin file under a private name, replacing an earlier import of it."""
    path = Path(path)
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.append(folder)  # appended, so plugins can import sibling helpers but not shadow the stdlib
    name = MODULE_PREFIX + path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def units_of(module, file_name):
    """The units a module defines, and the ones it defines badly: (units, rejections)."""
    units, rejections = [], []
    for cls_name, cls in inspect.getmembers(module, inspect.isclass):
        if cls.__module__ != module.__name__:
            continue  # imported from elsewhere: it belongs to the module that defines it
        for utype, (method, _) in UNIT_TYPES.items():
            if not callable(getattr(cls, method, None)):
                continue
            props = getattr(cls, "properties_validation", "")
            problem = properties_problem(props)
            if problem:
                rejections.append(Rejection(file_name, cls_name, problem))
                continue
            doc = inspect.getdoc(getattr(cls, method)) or ""
            units.append(Unit(utype, cls_name, file_name, " ".join(doc.split()), props,
                              getattr(cls, "balancing_limits", True) is not False,
                              getattr(cls, "reuse_worker", False) is True))
    return units, rejections


def trial_import(path):
    """What the module at `path` holds, as a messages.ImportReport; run in a throw-away child."""
    try:
        units, rejections = units_of(load_module(path), path.name)
    except SystemExit as e:
        return messages.ImportReport(error=f"called sys.exit({e.code!r}) while being imported")
    except BaseException as e:
        at = where(e)
        return messages.ImportReport(error=f"failed to import: {type(e).__name__}: {e}"
                                           + (f" (at {at})" if at else ""))
    return messages.ImportReport(units=[dataclasses.asdict(u) for u in units],
                                 rejections=[dataclasses.asdict(r) for r in rejections])


def from_report(path, report):
    """(units, rejections) of one module from its ImportReport."""
    if report.error is not None:
        return (), (Rejection(path.name, "", report.error),)
    return (tuple(Unit(**u) for u in report.units), tuple(Rejection(**r) for r in report.rejections))


def where(exc):
    """'file:line' (or "") of the innermost frame in plugin code, so the admin knows where to look."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/proxy/" not in f.filename]
    if not frames:
        return ""
    f = frames[-1]
    return f"{os.path.basename(f.filename)}:{f.lineno}"


def merge(found):
    """Merge per-module answers; a second unit with a taken (type, name) is rejected, not swapped in."""
    units, rejections, seen = [], [], {}
    for module_units, module_rejections in found:
        rejections.extend(module_rejections)
        for unit in module_units:
            first = seen.get((unit.type, unit.name))
            if first:
                rejections.append(Rejection(unit.module, unit.name,
                                            f"duplicate {unit.type} unit name: {first.module} already "
                                            f"defines {unit.name}; rename one of the classes"))
                continue
            seen[(unit.type, unit.name)] = unit
            units.append(unit)
    return Catalog(tuple(units), tuple(rejections))


@dataclasses.dataclass(frozen=True)
class Catalog:
    units: tuple = ()
    rejections: tuple = ()

    @functools.cached_property
    def _index(self):
        return {(u.type, u.name): u for u in self.units}

    def find(self, utype, name):
        return self._index.get((utype, name))

    def to_wire(self):
        return {"units": [dataclasses.asdict(u) for u in self.units],
                "rejections": [dataclasses.asdict(r) for r in self.rejections]}

    @classmethod
    def from_wire(cls, data):
        return cls(tuple(Unit(**u) for u in data["units"]),
                   tuple(Rejection(**r) for r in data["rejections"]))
