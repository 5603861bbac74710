"""Configuration: every setting declared once, in SETTINGS.

The TOML loader, the command-line flags and the commented default file
(`config/proxy.toml`, produced by `render_default_file`) all come from that table, so a
new setting is one new line and cannot drift between the three.
"""

import dataclasses
import math
import os
import tomllib
from pathlib import Path
from types import MappingProxyType

from .access import allow_problem
from . import policy
from .errors import ConfigError
from .logs import FORMATS as LOG_FORMATS

SHIPPED_PLUGINS = Path(__file__).resolve().parent.parent / "balancers"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _port(zero_means):
    def check(v):
        if not 0 <= v <= 65535:
            return f"must be between 1 and 65535 (0: {zero_means})"
    return check


def _positive(v):
    if not (v > 0 and math.isfinite(v)):
        return "must be a number greater than 0"


def _non_negative(v):
    if not (v >= 0 and math.isfinite(v)):
        return "must be a number, 0 or greater"


def _zero_means(what):
    def check(v):
        if not (v >= 0 and math.isfinite(v)):
            return f"must be 0 or greater (0: {what})"
    return check


def _at_least(n):
    def check(v):
        if v < n:
            return f"must be at least {n}"
    return check


def _one_of(*allowed):
    def check(v):
        if v not in allowed:
            return "must be one of " + ", ".join(allowed)
    return check


def _level(v):
    if v.upper() not in LOG_LEVELS:
        return "must be one of " + ", ".join(LOG_LEVELS)


def _allow(v):
    for entry in v:
        problem = allow_problem(entry)
        if problem:
            return problem


def _url(v):
    if v and not v.startswith(("http://", "https://")):
        return "must start with http:// or https:// (e.g. https://engine.example.com/ovirt-engine/api)"


@dataclasses.dataclass(frozen=True)
class Setting:
    section: str
    key: str
    # str, int, float, bool, tuple (a TOML array of strings), or Path (a str resolved against the
    # config file's folder)
    type: type
    default: object
    help: str
    flag: str | None = None  # the command-line flag that overrides it, if any
    check: object = None  # returns an error text, or None when the value is fine

    @property
    def name(self):
        return f"{self.section}.{self.key}"


SETTINGS = (
    Setting("server", "host", str, "127.0.0.1",
            "Address to listen on. The engine connects to ExternalSchedulerServiceURL.", "--host"),
    Setting("server", "port", int, 18781, "TCP port (the engine's default URL is http://localhost:18781/).",
            "--port", _port("any free port")),
    Setting("server", "backlog", int, 1024,
            "Listen backlog: the engine gives up if a connection is not accepted within 100 ms.",
            None, _at_least(16)),
    Setting("server", "max_connections", int, 256,
            "Connections open at once. At the limit the connection waiting longest for a request is closed "
            "to make room; if every one is being answered, a new connection is closed at once.",
            None, _at_least(1)),
    Setting("server", "read_timeout", float, 10.0,
            "Seconds a client has for a request's headers and body from its first byte (and for the TLS "
            "handshake, and to take the answer); slower clients are disconnected.", None, _positive),
    Setting("server", "idle_timeout", float, 30.0,
            "Seconds a kept-alive connection may stay idle between requests.", None, _positive),
    Setting("server", "max_request", int, 64 * 1024 * 1024,
            "Bytes one request body may have, after gzip decoding (HTTP 413 above); 10,000 hosts are ~0.6 MB.",
            None, _at_least(64 * 1024)),
    Setting("server", "body_budget", int, 128 * 1024 * 1024,
            "Bytes all request bodies being read or run may take together; a request beyond it gets HTTP "
            "503 before its body is read. At least server.max_request.", None, _at_least(64 * 1024)),
    Setting("server", "tls_cert", Path, "",
            "PEM certificate (chain) to serve HTTPS with, e.g. issued by the engine's CA. Empty: plain HTTP."),
    Setting("server", "tls_key", Path, "", "PEM private key of server.tls_cert. Empty: it is in the tls_cert file."),
    Setting("server", "allow", tuple, (),
            'Client addresses or networks that may connect, e.g. ["192.0.2.10", "10.1.0.0/16"]. '
            "Empty: any client that can reach server.host.", None, _allow),
    Setting("server", "metrics_port", int, 0,
            "Port of the monitoring listener on server.host: GET /metrics (Prometheus) and GET /health. "
            "0: off.", "--metrics-port", _port("off")),
    Setting("plugins", "folder", Path, "",
            "Folder of policy-unit modules (*.py). Empty: the units shipped in balancers/.", "--plugins"),
    Setting("plugins", "timeout", float, 30.0,
            "Seconds one unit call may take before its process group is killed.", "--timeout", _positive),
    Setting("plugins", "concurrency", int, 8, "Unit calls that may run at the same time.", None, _at_least(1)),
    Setting("plugins", "spare_workers", int, 4,
            "Worker processes forked ahead of demand, so a call does not wait for a fork.", None, _at_least(0)),
    Setting("plugins", "worker_calls", int, 100,
            "Calls one worker process may serve, one after another, for a unit that allows it "
            "(reuse_worker = True on its class: it keeps no state between calls), while the engine "
            "state it holds is current and each call ends clean. 1: a fresh process for every call.",
            None, _at_least(1)),
    Setting("plugins", "output_limit", int, 8 * 1024 * 1024,
            "Bytes a unit may print to stdout or answer with; more is an error.", None, _at_least(1024)),
    Setting("plugins", "memory_limit", int, 1024 * 1024 * 1024,
            "Bytes of address space a worker may add to what it inherits from the fork server (the "
            "plugins, the engine snapshot); a unit that needs more fails with a MemoryError. "
            "0: no limit.", None, _non_negative),
    Setting("log", "level", str, "INFO", "DEBUG, INFO, WARNING or ERROR.", "--log-level", _level),
    Setting("log", "file", Path, "", "Log file. Empty: standard error (the journal under systemd).",
            "--log-file"),
    Setting("log", "format", str, "text",
            "text (one line per record) or json (one JSON object per line, call records with their fields).",
            "--log-format", _one_of(*LOG_FORMATS)),
    Setting("engine", "url", str, "",
            "oVirt engine API URL the units use, e.g. https://engine.example.com/ovirt-engine/api.",
            None, _url),
    Setting("engine", "user", str, "admin@internal", "Engine user the units log in as."),
    Setting("engine", "password_file", Path, "",
            "File holding the engine password. Empty: the OVIRT_ENGINE_PASSWORD environment variable."),
    Setting("engine", "ca_file", Path, "", "PEM file of the engine's CA. Empty: the system's CAs."),
    Setting("engine", "insecure", bool, False, "Skip TLS verification of the engine (testing only)."),
    Setting("engine", "max_age", float, 10.0,
            "Seconds a unit's view of the engine may be old: the proxy reads the engine's state once "
            "for all unit calls, at most about once per max_age. 0: no sharing, each unit reads the "
            "engine itself.", None, _non_negative),
    Setting("engine", "stale_limit", float, 60.0,
            "While the engine cannot be read, units get the last state read for up to this many "
            "seconds after it was read; then their reads fail.", None, _positive),
)
SETTINGS += (
    Setting("journal", "path", str, "journal.sqlite",
            "Decision journal (sqlite): every engine call, each unit's answer and reasons, the snapshots "
            "they ran on. A relative path is in the state directory: $STATE_DIRECTORY (the service's "
            "/var/lib/ovirt-scheduler-proxy), else $XDG_STATE_HOME/ovirt-scheduler-proxy "
            "(~/.local/state/ovirt-scheduler-proxy). Empty: no journal."),
    Setting("journal", "max_days", float, 14.0, "Days a call stays in the journal.", None, _positive),
    Setting("journal", "max_mb", float, 256.0,
            "Megabytes the journal may take; the oldest calls go first.", None, _positive),
    Setting("protocol", "score_rows", bool, False,
            "runCostFunctions answers [host, score, unit] rows, one per unit and host, with the units' raw "
            "scores (the engine applies the policy's factors). false: the summed [host, score] form with "
            "the factors applied here, which every engine accepts; true needs an engine whose parser takes "
            "3-element rows (4.1 and later: docs/ENGINE_PROTOCOL.md §2.4)."),
    Setting("balancing", "cooldown_minutes", float, 60.0,
            "Minutes after the proxy proposed moving a VM during which no balance unit may move it again "
            "(its answer is dropped: no migration), so a VM does not go back and forth. 0: no cooldown.",
            None, _zero_means("no cooldown")),
    Setting("balancing", "max_migrations_per_hour", int, 20,
            "Migrations the balance units may propose per cluster in any hour; once used, balance calls "
            "of that cluster answer no migration without running the unit. 0: no budget.",
            None, _zero_means("no budget")),
)
SECTIONS = tuple(dict.fromkeys(s.section for s in SETTINGS))
BY_NAME = {s.name: s for s in SETTINGS}


def _convert(setting, value, where):
    """Check a value's type against the table; TOML already typed it, flags arrive as strings."""
    want = setting.type
    if isinstance(value, str) and want in (int, float) and where.startswith("flag"):
        try:
            value = want(value)
        except ValueError:
            raise ConfigError(f"{setting.name} ({where}): expected a number, got {value!r}") from None
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if want is tuple and isinstance(value, list):
        value = tuple(value)  # a loaded configuration is immutable
    if want is tuple and isinstance(value, tuple) and not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{setting.name} ({where}): expected {_type_name(want)}, got {value!r}")
    expected = str if want is Path else want
    if type(value) is not expected:
        raise ConfigError(f"{setting.name} ({where}): expected {_type_name(want)}, "
                          f"got {type(value).__name__} {value!r}")
    problem = setting.check(value) if setting.check else None
    if problem:
        raise ConfigError(f"{setting.name} ({where}): {problem}, got {value!r}")
    return value


def _type_name(t):
    return {str: "a string", int: "a whole number", float: "a number", bool: "true or false",
            Path: "a path string", tuple: 'a list of strings, e.g. ["a", "b"]'}[t]


def read_file(path):
    """The settings a TOML file sets, as {name: value}; unknown keys are errors, not ignored."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as e:
        raise ConfigError(f"config file {path} cannot be read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    values = {}
    for section, table in data.items():
        if section == "units":  # [units.NAME]: per-unit policy, names known only after discovery
            values["units"] = policy.parse(table, str(path))
            continue
        if section not in SECTIONS:
            raise ConfigError(f"{path}: unknown section [{section}]; known: {', '.join(SECTIONS)}, units")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {section} must be a table ([{section}])")
        for key, value in table.items():
            setting = BY_NAME.get(f"{section}.{key}")
            if setting is None:
                known = ", ".join(s.key for s in SETTINGS if s.section == section)
                raise ConfigError(f"{path}: unknown key {key!r} in [{section}]; known: {known}")
            value = _convert(setting, value, f"in {path}")
            if setting.type is Path and value:
                value = str((path.parent / value).resolve())
            values[setting.name] = value
    return values


def load(path=None, overrides=None):
    """Defaults, then the file, then command-line overrides ({name: value}); returns a Config."""
    values = {s.name: s.default for s in SETTINGS}
    if path is not None:
        values.update(read_file(path))
    for name, value in (overrides or {}).items():
        if value is not None:
            setting = BY_NAME[name]
            value = _convert(setting, value, "flag " + setting.flag if setting.flag else "override")
            if setting.type is Path and value:
                value = str(Path(value).resolve())
            values[name] = value
    return Config(values)


# One frozen record type per section, so a loaded configuration cannot be changed in place:
# what differs (a simulated engine's URL, a command's own needs) is a new Config (replace()).
_SECTION_TYPES = {
    section: dataclasses.make_dataclass(
        f"{section.capitalize()}Settings", [s.key for s in SETTINGS if s.section == section], frozen=True)
    for section in SECTIONS}


class Config:
    """Settings by section: `config.plugins.timeout`; plus the derived values the proxy needs."""

    def __init__(self, values):
        values = dict(values, **{"log.level": values["log.level"].upper()})
        object.__setattr__(self, "units", MappingProxyType(dict(values.pop("units", {}))))
        object.__setattr__(self, "values", MappingProxyType(values))
        for section, record in _SECTION_TYPES.items():
            object.__setattr__(self, section, record(**{
                s.key: values[s.name] for s in SETTINGS if s.section == section}))

    def __setattr__(self, name, value):
        raise AttributeError(f"the configuration is read-only; use replace() to change {name}")

    def replace(self, changes, where="override"):
        """A new Config with {setting name: value} changed, each checked as a flag would be."""
        values = dict(self.values, units=dict(self.units))
        for name, value in changes.items():
            values[name] = _convert(BY_NAME[name], value, where)
        return Config(values)

    def unit(self, name):
        """The [units.NAME] policy of a unit (defaults when it has no table)."""
        return self.units.get(name) or policy.UnitPolicy()

    @property
    def plugin_folder(self):
        return Path(self.plugins.folder) if self.plugins.folder else SHIPPED_PLUGINS

    def engine_password(self):
        """Read at start-up so a missing file is a config error, not a failure in every call."""
        if not self.engine.password_file:
            return os.environ.get("OVIRT_ENGINE_PASSWORD", "")
        try:
            return Path(self.engine.password_file).read_text().rstrip("\r\n")
        except OSError as e:
            raise ConfigError(f"engine.password_file: cannot read {self.engine.password_file}: "
                              f"{e.strerror}") from None


def render_default_file():
    """The commented default configuration, as shipped in config/proxy.toml."""
    lines = ["# ovirt-scheduler-proxy configuration. Every key is optional; shown with its default.",
             "# Relative paths are relative to this file's folder. Command-line flags override it.",
             "# Generated by `ovirt-scheduler-proxy config`."]
    for section in SECTIONS:
        lines += ["", f"[{section}]"]
        for s in SETTINGS:
            if s.section == section:
                flag = f" (flag {s.flag})" if s.flag else ""
                lines.append(f"# {s.help}{flag}")
                lines.append(f"{s.key} = {_toml_value(s.default)}")
    return "\n".join(lines + policy.render_example()) + "\n"


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def render_settings_table():
    """The README's settings table (Markdown), from the same table; a test keeps them equal."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for s in SETTINGS:
        default = _toml_value(s.default)
        flag = f" Flag `{s.flag}`." if s.flag else ""
        rows.append(f"| `{s.name}` | `{default}` | {s.help}{flag} |")
    return "\n".join(rows) + "\n"
