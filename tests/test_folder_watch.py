"""The plugin folder's watch: every change to a plugin file moves the mark; where inotify
cannot see every change, the mark is None (the caller scans)."""
import logging
import os
import shutil
import time

import pytest
from hypothesis import given, settings, strategies as st

from proxy import folder_watch, registry
from tests.support import wait_until

pytestmark = pytest.mark.skipif(folder_watch.inotify_simple is None, reason="inotify is Linux's")


@pytest.fixture(autouse=True)
def no_rescan_tick(monkeypatch):
    """The once-a-second mark would make two looks a second apart differ for no change."""
    monkeypatch.setattr(folder_watch, "RESCAN", 1e12)


def watched(folder):
    w = folder_watch.FolderWatch(folder)
    assert w.why_not is None and w.mark() is not None
    return w


def test_each_kind_of_change_to_a_plugin_file_is_counted_and_nothing_else(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    w = watched(tmp_path)
    try:
        before = w.mark()
        (tmp_path / "a.py").read_text()  # the fork server's imports read the files
        (tmp_path / "notes.txt").write_text("not a plugin")
        (tmp_path / "__pycache__").mkdir()
        assert w.mark() == before
        changes = [lambda: (tmp_path / "b.py").write_text("y = 2\n"),  # added
                   lambda: (tmp_path / "a.py").write_text("x = 3\n"),  # rewritten in place
                   lambda: (tmp_path / "a.py").write_text("x = 4\n"),  # again, same size, same clock tick
                   lambda: os.utime(tmp_path / "a.py", ns=(1, 1)),  # touched
                   lambda: os.rename(tmp_path / "b.py", tmp_path / "c.py"),  # renamed
                   lambda: (tmp_path / "c.py").unlink()]  # removed
        for change in changes:
            change()
            mark = w.mark()
            assert mark[0] == before[0] + 1
            before = mark
        assert w.mark() == before
    finally:
        w.close()
    assert w.mark() is None  # closed: the caller scans


def test_a_folder_inotify_cannot_follow_is_scanned_every_time(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    via_link = folder_watch.FolderWatch(tmp_path / "link")
    assert via_link.mark() is None and "symbolic link" in via_link.why_not
    shared = tmp_path / "shared.py"
    shared.write_text("x = 1\n")
    (real / "unit.py").symlink_to(shared)
    linked = folder_watch.FolderWatch(real)
    assert linked.mark() is None and "plugin files that are symbolic links" in linked.why_not
    missing = folder_watch.FolderWatch(tmp_path / "missing")
    assert missing.mark() is None and "No such file" in missing.why_not


def test_the_watch_gives_way_to_scans_when_it_can_no_longer_see_every_change(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="proxy.folder_watch")
    folder = tmp_path / "plugins"
    folder.mkdir()
    w = watched(folder)
    (tmp_path / "elsewhere.py").write_text("x = 1\n")
    (folder / "unit.py").symlink_to(tmp_path / "elsewhere.py")  # its target changes unseen
    assert w.mark() is None and "symbolic links" in w.why_not
    other = tmp_path / "other"
    other.mkdir()
    w = watched(other)
    shutil.rmtree(other)  # the watch is dropped with the folder
    assert w.mark() is None and "dropped" in w.why_not
    assert "scanned before every call from now on" in caplog.text


def test_the_mark_moves_every_rescan_seconds_for_changes_no_event_reports(tmp_path, monkeypatch):
    monkeypatch.setattr(folder_watch, "RESCAN", 0.05)
    w = watched(tmp_path)
    first = w.mark()
    wait_until(lambda: w.mark() != first, 5, "the mark to move with time alone")
    w.close()


OPS = st.lists(st.tuples(st.sampled_from(["write", "append", "touch", "remove", "rename", "read"]),
                         st.sampled_from(["a.py", "b.py", "_h.py", "notes.txt"])), max_size=12)


@settings(max_examples=40, deadline=None)
@given(OPS)
def test_no_change_to_the_fingerprint_goes_uncounted(tmp_path_factory, ops):
    """What the generation relies on: whenever the folder's fingerprint moved, so did the
    count of changes; and files that are not plugins never move it."""
    folder = tmp_path_factory.mktemp("plugins")
    w = watched(folder)
    try:
        mark, seen = w.mark(), registry.fingerprint(folder)
        for i, (op, name) in enumerate(ops):
            path = folder / name
            if op == "write":
                path.write_text(f"v = {i}\n")
            elif op == "append" and path.exists():
                with path.open("a") as f:
                    f.write("# more\n")
            elif op == "touch" and path.exists():
                os.utime(path, ns=(i, time.time_ns() + i))
            elif op == "remove":
                path.unlink(missing_ok=True)
            elif op == "rename" and path.exists():
                path.rename(path.with_name(f"r{i}" + path.suffix))
            elif op == "read" and path.exists():
                path.read_bytes()
            now_mark, now_seen = w.mark(), registry.fingerprint(folder)
            assert now_mark is not None
            assert now_seen == seen or now_mark[0] != mark[0], f"{op} {name} changed the folder uncounted"
            if not name.endswith(".py"):
                assert now_mark == mark, f"{op} {name}: not a plugin file, but counted"
            mark, seen = now_mark, now_seen
    finally:
        w.close()
