"""`ovirt-scheduler-proxy check`: what can be known before deploying, one line per finding.

The configuration as `serve` loads it, the log file, the plugin folder (each module
imported in isolation by the same discovery `serve` and `list` use, with the same
rejections) and the engine (log in, read the API's version and one host).  Exit code 0
when every finding is ok, 1 otherwise.

`serve` runs the engine part at start and logs it, but serves anyway: the engine may
come up later.  A wrong [engine] section is then one log line at start, not a surprise
inside every unit call.  It runs it as `python -m proxy.check` (main() below), a child of
its own: the SDK it needs then never loads into the server (~19 MiB the server would keep).
"""

import dataclasses
import json
import os
import pwd
import sys
import time
import types
from pathlib import Path

from . import config, engine, logs, metrics, policy, sdk_internals
from .errors import ConfigError, ProxyError
from .executor import Executor

ENGINE_TIMEOUT = 15.0  # seconds for the whole engine probe: login, API root, one host
CA_HINT = ("on the engine machine it is /etc/pki/ovirt-engine/ca.pem; elsewhere download "
           "https://ENGINE/ovirt-engine/services/pki-resource?resource=ca-certificate&format=X509-PEM-CA")


@dataclasses.dataclass(frozen=True)
class Finding:
    ok: bool
    subject: str  # what was checked: config, log, plugins, engine
    text: str

    def __str__(self):
        return f"{'ok' if self.ok else 'FAIL':<4}  {self.subject}: {self.text}"


def run(config_path, overrides, out=sys.stdout):
    """Print every finding as it is made; returns the exit code (0: all ok)."""
    logs.configure("WARNING", "")  # findings are the output; the log only for the unexpected
    problems = 0
    for finding in findings(config_path, overrides):
        print(finding, file=out, flush=True)
        problems += not finding.ok
    print(f"{problems} problem(s) found." if problems else "Everything checked is ok.", file=out)
    return 1 if problems else 0


def findings(config_path, overrides):
    try:
        cfg = config.load(config_path, overrides)
    except ConfigError as e:
        yield Finding(False, "config", str(e))
        return
    yield Finding(True, "config", f"{config_path} loads" if config_path else
                  "no --config given: the defaults, as `serve` without --config uses them")
    yield log_file(cfg.log.file)
    yield from plugins(cfg)
    try:
        password = cfg.engine_password()
    except ConfigError as e:
        yield Finding(False, "engine", str(e))
        return
    yield engine_finding(cfg, password)


def log_file(path):
    if not path:
        return Finding(True, "log", "log.file is empty: standard error (the journal under systemd)")
    path = Path(path)
    if not path.parent.is_dir():
        return Finding(False, "log", f"log.file: the folder {path.parent} does not exist; create it, "
                                     "writable by the proxy's user")
    writable = os.access(path, os.W_OK) if path.exists() else os.access(path.parent, os.W_OK | os.X_OK)
    if not writable:
        return Finding(False, "log", f"log.file: {path} is not writable by user {_user()}; change its "
                                     "owner or mode, or run this check as the proxy's user")
    return Finding(True, "log", f"log.file {path} is writable")


def catalog_of(cfg):
    """The units of cfg's plugin folder and the rejections, by the discovery `serve` runs."""
    if not cfg.plugin_folder.is_dir():
        raise ConfigError(f"plugins.folder: {cfg.plugin_folder} is not a folder")
    # Only the catalog is wanted: no worker to fork and kill, no read of the engine (without
    # the password, its refused login was logged when the read won the race with stop()), and
    # what the fork server logs goes to the terminal that asked, not to the service's log file.
    executor = Executor(cfg.replace({"plugins.spare_workers": 0, "engine.max_age": 0, "log.file": "",
                                     "log.level": "WARNING"}), password="")
    try:
        return executor.start()
    finally:
        executor.stop()


def plugins(cfg):
    try:
        catalog = catalog_of(cfg)
    except ProxyError as e:
        yield Finding(False, "plugins", str(e))
        return
    folder = cfg.plugin_folder
    if catalog.units:
        names = ", ".join(f"{u.name} ({u.type})" for u in catalog.units)
        yield Finding(True, "plugins", f"{len(catalog.units)} unit(s) in {folder}: {names}")
    else:
        yield Finding(False, "plugins", f"no policy unit in {folder}; set plugins.folder (--plugins)")
    for r in catalog.rejections:
        yield Finding(False, "plugins", f"rejected {r.module}{':' + r.unit if r.unit else ''}: {r.reason}")
    for problem in policy.problems(cfg.units, catalog):
        yield Finding(False, "config", problem)


def engine_finding(cfg, password, source="check"):
    """The engine part: the [engine] settings, then a login, the API's version and one host."""
    return _settings_finding(cfg.engine, password) or _probe_finding(cfg.engine, password, source)


def _settings_finding(e, password):
    """What is wrong with the [engine] settings before the engine is asked, or None."""
    if not e.url:
        return Finding(False, "engine", "engine.url is empty: units that use the engine will fail; set "
                                        "url in [engine] (https://ENGINE/ovirt-engine/api)")
    if e.ca_file and not os.access(e.ca_file, os.R_OK):
        problem = "cannot be read by user " + _user() if os.path.exists(e.ca_file) else "does not exist"
        return Finding(False, "engine", f"engine.ca_file: {e.ca_file} {problem}; put the engine's CA "
                                        f"there ({CA_HINT})")
    if not password:
        return Finding(False, "engine", "no engine password: set engine.password_file (a file holding "
                                        "it) or the OVIRT_ENGINE_PASSWORD environment variable")
    return None


def _probe_finding(e, password, source):
    settings = engine.EngineSettings(url=e.url, user=e.user, password=password, ca_file=e.ca_file,
                                     insecure=e.insecure)
    try:
        text = _probe(settings)
    except Exception as exc:
        message = engine.describe_error(exc, settings)
        if message is None:
            raise
        metrics.engine_request(source, failed=True)
        return Finding(False, "engine", message)
    metrics.engine_request(source, failed=False)
    return Finding(True, "engine", text)


def _probe(s):
    """Log in, read the API's product information and one host; the text of an ok finding.

    Its own connection and session (not engine.connect()'s shared token), logged out after.
    """
    conn = sdk_internals.Connection(url=s.url.rstrip("/"), username=s.user, password=s.password,
                                    ca_file=s.ca_file or None, insecure=s.insecure,
                                    deadline=time.monotonic() + ENGINE_TIMEOUT)
    try:
        system = conn.system_service()
        info = system.get().product_info
        hosts = system.hosts_service().list(max=1)
    finally:
        _close(conn)
    name = (info and info.name) or "oVirt engine"
    version = (info and info.version and info.version.full_version) or "of an unknown version"
    host = f"read host {hosts[0].name}" if hosts else \
        f"but {s.user} sees no host: give it a role that may read hosts (e.g. UserRole on the cluster)"
    return f"{s.url}: logged in as {s.user}; {name} {version}; {host}"


def _close(conn):
    try:
        conn.close(logout=True)
    except Exception:  # the engine went away after the probe's failure: nothing to log out of
        conn.close(logout=False)


def _user():
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def main():
    """`python -m proxy.check`: the engine finding of the settings on stdin (JSON: url, user,
    password, ca_file, insecure), as JSON on stdout: {"ok", "text", "asked"}; "asked" is
    true when the engine itself was asked (the server counts it in its metrics)."""
    given = json.load(sys.stdin)
    password = given.pop("password")
    settings = types.SimpleNamespace(**given)
    finding = _settings_finding(settings, password)
    asked = finding is None
    if asked:
        finding = _probe_finding(settings, password, "startup")
    json.dump({"ok": finding.ok, "text": finding.text, "asked": asked}, sys.stdout)


if __name__ == "__main__":
    main()
