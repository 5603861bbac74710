"""An executor on a plugin folder, and one-unit calls through it, for the execution tests."""
import time

from proxy import config, executor
from tests.support import alive, descendants, wait_until

TIMEOUT = 1.5
HOSTS = ["h1", "h2", "h3"]


def make(folder, **settings):
    """An executor on folder; settings as section__key=value (e.g. plugins__concurrency=4)."""
    cfg = config.load(None, {"plugins.folder": str(folder), "plugins.timeout": str(TIMEOUT)})
    cfg = cfg.replace({k.replace("__", "."): v for k, v in settings.items()})
    ex = executor.Executor(cfg, password="")
    ex.start()
    return ex


def call(ex, name, utype, args, timeout=TIMEOUT):
    unit = ex.catalog().find(utype, name)
    assert unit, f"{utype} {name} not discovered"
    [value], finished = ex.run([executor.Call(unit, args)], time.monotonic() + timeout)
    finished.release()
    return value


def forkserver_pid(ex):
    return ex.generation.proc.pid


def settle(ex, extra=()):
    """Workers and grandchildren below the fork server: only idle spares may remain."""
    def settled():
        left = [p for p in descendants(forkserver_pid(ex)) if alive(p)]
        return len(left) <= ex.config.plugins.spare_workers and not [p for p in extra if alive(p)]
    wait_until(settled, 3, "only idle spare workers to remain")
