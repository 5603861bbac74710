"""`simulate UNIT --report FILE.html`: the what-if as one self-contained HTML page.

The charts are matplotlib figures rendered to SVG and written into the page itself (no
script, no link, nothing fetched: the page opens offline and can be mailed).  Text stays
text in the SVG (svg.fonttype none), and every bar and point carries an id, so the page
can be searched and checked.  matplotlib is the optional extra `report`.
"""

import html
import io

from .errors import ProxyError
from .state import MIB

MAX_HOSTS_SHOWN = 60  # more bars than this are unreadable: then only the hosts a move touched


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ProxyError("--report needs matplotlib: pip install '.[report]' (in a checkout) or "
                         "'ovirt-scheduler-proxy[report]'") from None
    matplotlib.use("Agg")  # no display: render to files only
    matplotlib.rcParams["svg.fonttype"] = "none"  # titles and labels stay searchable text
    matplotlib.rcParams["svg.hashsalt"] = "ovirt-scheduler-proxy"  # the same page for the same run
    from matplotlib import pyplot
    return pyplot


def _svg(fig, pyplot):
    out = io.StringIO()
    fig.savefig(out, format="svg", bbox_inches="tight")
    pyplot.close(fig)
    text = out.getvalue()
    return text[text.index("<svg"):]  # the XML prolog and DOCTYPE do not belong inside HTML


def imbalance_chart(result, pyplot):
    """Ic_mem and Ic_cpu per round (round 0: before the first move)."""
    rows = [(0, result["before"]["ic_mem"], result["before"]["ic_cpu"])]
    rows += [(r["round"], r["ic_mem"], r["ic_cpu"]) for r in result["rounds"]]
    fig, ax = pyplot.subplots(figsize=(8, 3.5))
    for key, column, colour in (("ic_mem", 1, "tab:blue"), ("ic_cpu", 2, "tab:orange")):
        ax.plot([r[0] for r in rows], [r[column] for r in rows], color=colour, label=key, zorder=1)
        for row in rows:
            point, = ax.plot([row[0]], [row[column]], "o", color=colour, markersize=4, zorder=2)
            point.set_gid(f"{key}-round-{row[0]}")
    ax.set_title("Imbalance per round (population sd / mean of the Up hosts)")
    ax.set_xlabel("round")
    ax.set_ylabel("Ic")
    ax.legend()
    return _svg(fig, pyplot)


def shown_hosts(result):
    first, last = result["first"], result["last"]
    hosts = [h for h in first.hosts.values() if h.status == "up"
             and (result["cluster_id"] is None or h.cluster_id == result["cluster_id"])]
    if len(hosts) <= MAX_HOSTS_SHOWN:
        return hosts, "every Up host"
    touched = {r["from"] for r in result["rounds"]} | {r["to"] for r in result["rounds"]}
    return [h for h in hosts if h.id in touched or last.hosts[h.id] != h], "the hosts a move touched"


def memory_chart(result, pyplot):
    """Each shown host's used memory, before the first round and after the last."""
    hosts, which = shown_hosts(result)
    last = result["last"]
    fig, ax = pyplot.subplots(figsize=(max(6, 0.35 * len(hosts) + 2), 4))
    width = 0.4
    for offset, label, pick, colour in ((-width / 2, "before", lambda h: h, "tab:gray"),
                                        (width / 2, "after", lambda h: last.hosts[h.id], "tab:green")):
        used = [_used_gib(pick(h)) for h in hosts]
        bars = ax.bar([i + offset for i in range(len(hosts))], used, width, label=label, color=colour)
        for i, bar in enumerate(bars):
            bar.set_gid(f"host-{label}-{i}")
    ax.set_xticks(range(len(hosts)), [h.name for h in hosts], rotation=60, ha="right", fontsize=7)
    ax.set_title(f"Used memory per host, before and after ({which})")
    ax.set_ylabel("GiB used")
    ax.legend()
    return _svg(fig, pyplot)


def _used_gib(host):
    if host.memory is None or host.free_memory is None:
        return 0.0
    return (host.memory - host.free_memory) / (1024 * MIB)


def render(unit, result):
    """The page, as a string."""
    pyplot = _pyplot()
    before, after = result["before"], result["after"]
    names = {h.id: h.name for h in result["first"].hosts.values()}
    vms = {v.id: v.name for v in result["first"].vms.values()}
    rows = "".join(
        f"<tr><td>{r['round']}</td><td>{_e(vms.get(r['vm'], r['vm']))}</td><td>{_e(names.get(r['from'], ''))}"
        f"</td><td>{_e(names.get(r['to'], ''))}</td><td>{r['moved_gib']:.2f}</td><td>{r['ic_mem']:.4f}</td>"
        f"<td>{r['ic_cpu']:.4f}</td><td>{r['hosts_under_threshold']}</td></tr>" for r in result["rounds"])
    summary = (f"Ic_mem {before['ic_mem']:.4f} → {after['ic_mem']:.4f}; Ic_cpu {before['ic_cpu']:.4f} → "
               f"{after['ic_cpu']:.4f}; hosts under threshold {before['hosts_under_threshold']} → "
               f"{after['hosts_under_threshold']}; stopped: {result['stopped']}")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>What-if: {_e(unit)}</title>
<style>body{{font-family:sans-serif;margin:1.5em;background:#fff;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}
figure{{margin:1em 0}}</style></head>
<body><h1>What-if: {_e(unit)}, {len(result['rounds'])} migration(s)</h1>
<p id="summary">{_e(summary)}</p>
<figure id="imbalance">{imbalance_chart(result, pyplot)}</figure>
<figure id="memory">{memory_chart(result, pyplot)}</figure>
<table id="rounds"><tr><th>round</th><th>VM</th><th>from</th><th>to</th><th>GiB</th><th>Ic_mem</th>
<th>Ic_cpu</th><th>under threshold</th></tr>{rows}</table>
<p>A simulation: nothing was migrated.</p></body></html>
"""


def _e(text):
    return html.escape(str(text))


def write(path, unit, result):
    page = render(unit, result)
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(page)
    except OSError as e:
        raise ProxyError(f"--report {path}: {e.strerror}") from None

