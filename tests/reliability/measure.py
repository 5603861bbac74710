"""Prints the figures of docs/RELIABILITY.md: `python -m tests.reliability.measure [SOURCE]`.

SOURCE is the folder of a checkout whose proxy is measured (default: this one), e.g. main
unpacked with `git archive`, for the "before" column.  Default settings everywhere; the
idle-connection case starts the proxy with an open-file limit of 1,024 (soft and hard).
"""
import contextlib
import pprint
import sys
import tempfile
from pathlib import Path

from tests.reliability import scenarios
from tests.support import PLUGINS, ROOT, ProxyProcess


@contextlib.contextmanager
def proxy(source, tmp, **kwargs):
    p = ProxyProcess(Path(tmp), PLUGINS / "basic", cwd=source, **kwargs)
    try:
        yield p
    finally:
        p.stop()


def main(argv):
    source = Path(argv[0]).resolve() if argv else ROOT
    print(f"measuring the proxy in {source}")
    with tempfile.TemporaryDirectory() as tmp:
        with proxy(source, tmp, nofile=(1024, 1024)) as p:
            report("2. 1,100 idle connections, open-file limit 1,024", scenarios.idle_flood(p.url, p.proc.pid))
        with proxy(source, tmp) as p:
            report("3. headers at 1 byte/s: seconds until disconnected (None: still connected at 60 s)",
                   scenarios.slow_headers(p.url, give_up=60))
            report("5. 8 concurrent 50 MiB bodies", scenarios.big_bodies(p.url, p.proc.pid))
        with proxy(source, tmp) as p:
            report("8. browser requests: status (200 = run)", scenarios.browser_requests(p.url))
            report("10. arrays nested 100,000 deep: fault", scenarios.deep_nesting(p.url))
            report("10. a chunked request: the answers' statuses", scenarios.chunked(p.url))
            report("load: 100 concurrent callers, 100 ms connect timeout", scenarios.burst(p.url))
    return 0


def report(title, figures):
    if isinstance(figures, dict):
        figures = {k: v for k, v in figures.items() if k != "body"}
    print(f"{title}:\n  {pprint.pformat(figures, width=110)}", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
