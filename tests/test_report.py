"""`simulate UNIT --report FILE.html`: one self-contained page whose charts carry the data.

The parse check is the test; rendering the page in a headless chromium is an extra, run
when chromium is installed (the test named ..._in_chromium)."""
import html.parser
import os
import shutil
import struct
import subprocess
import sys
import zlib

import pytest

from proxy import holding, report, whatif
from proxy.errors import ProxyError
from tests.support import ROOT

CLUSTER = str(ROOT / "config" / "cluster-small.json")


class Page(html.parser.HTMLParser):
    """Ids, texts and external references of a page."""

    def __init__(self, text):
        super().__init__()
        self.ids, self.texts, self.external, self.tags = [], [], [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name == "id":
                self.ids.append(value)
            if name in ("src", "href", "xlink:href") and value and not value.startswith("#"):
                self.external.append(value)

    def handle_data(self, data):
        if data.strip():
            self.texts.append(data.strip())


@pytest.fixture(scope="module")
def result():
    """Three hand-made moves on the small cluster: host1's VMs go to host3, host2, host3."""
    snap = first = holding.load_file(CLUSTER)
    host1 = next(h for h in snap.hosts.values() if h.name == "host1")
    rows = []
    for n, (vm, target) in enumerate(zip(snap.vms_on(host1.id)[:3], ("host3", "host2", "host3")), 1):
        to = next(h.id for h in snap.hosts.values() if h.name == target)
        snap = whatif.apply_move(snap, vm.id, to)
        f = whatif.figures(snap, "host_memory_balance", {})
        rows.append({"round": n, "vm": vm.id, "from": host1.id, "to": to, "moved_gib": vm.memory / whatif.GIB,
                     "ic_mem": f["ic_mem"], "ic_cpu": f["ic_cpu"], "hosts_under_threshold": f["hosts_under_threshold"]})
    return {"rounds": rows, "before": whatif.figures(first, "host_memory_balance", {}),
            "after": whatif.figures(snap, "host_memory_balance", {}), "stopped": "3 round(s) done",
            "failed": False, "first": first, "last": snap, "cluster_id": None}


@pytest.fixture(scope="module")
def page(result):
    return report.render("host_memory_balance", result)


def test_the_charts_carry_a_point_per_round_and_a_bar_per_host(page, result):
    found = Page(page)
    for key in ("ic_mem", "ic_cpu"):
        assert [i for i in found.ids if i.startswith(f"{key}-round-")] == [f"{key}-round-{n}" for n in range(4)]
    hosts = len(result["first"].hosts)
    for when in ("before", "after"):
        assert [i for i in found.ids if i.startswith(f"host-{when}-")] == [f"host-{when}-{n}" for n in range(hosts)]
    assert found.tags.count("svg") == 2
    assert "Imbalance per round (population sd / mean of the Up hosts)" in found.texts
    assert "Used memory per host, before and after (every Up host)" in found.texts
    assert {"host1", "host2", "host3", "host4"} <= set(found.texts)


def test_the_page_needs_nothing_from_the_network(page):
    found = Page(page)
    assert found.external == [] and "script" not in found.tags and "link" not in found.tags
    assert page.startswith("<!DOCTYPE html>") and "<?xml" not in page


def test_the_summary_and_table_say_what_moved(page, result):
    found = Page(page)
    assert "stopped: 3 round(s) done" in " ".join(found.texts)
    assert found.texts.count("host1") >= 3 + 1  # three rows from host1, and its axis label


def test_the_cli_writes_the_page(tmp_path):
    out = tmp_path / "whatif.html"
    done = subprocess.run([sys.executable, "-m", "proxy", "simulate", "host_memory_balance", "--snapshot", CLUSTER,
                           "--rounds", "3", "--report", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    found = Page(out.read_text())
    assert "ic_mem-round-1" in found.ids and "ic_mem-round-2" not in found.ids  # one move, then it stopped


def test_a_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    with pytest.raises(ProxyError, match=r"pip install '\.\[report\]'"):
        report.render("host_memory_balance", {})


def test_the_page_renders_non_blank_in_chromium(page, tmp_path):
    """Extra: a real browser draws the page offline (needs chromium)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        assert not os.environ.get("CI"), "CI must run the browser check: .ci/run installs Debian's chromium"
        pytest.skip("chromium is not installed: the parse checks above are the test")
    (tmp_path / "p.html").write_text(page)
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--no-first-run", f"--screenshot={shot}", "--window-size=1000,1400",
                    (tmp_path / "p.html").as_uri()], capture_output=True, timeout=120, check=True)
    data = shot.read_bytes()
    chunks, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            chunks.append(data[pos + 8:pos + 8 + length])
        pos += 12 + length
    pixels = zlib.decompress(b"".join(chunks))
    assert len(set(pixels)) > 10, "the screenshot is blank"
