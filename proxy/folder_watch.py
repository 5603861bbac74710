"""Whether the plugin folder may have changed: one system call before an engine call, not a scan.

A change to the plugin folder is seen by the next call (README, on `SIGHUP`).  Scanning the
folder before every call (`registry.fingerprint`: a scandir and a stat a file) made ~14
system calls a call, and on a busy server each one lets the call's thread drop the
interpreter lock and queue for it again behind the other callers: that took a quarter of the
server's CPU a call under 8 callers (docs/EXECUTION.md §8, "The server under concurrent calls").
inotify queues an event in the very system call that changes a file, so one non-blocking
read tells whether a plugin file was added, removed, renamed or written since the last look.
That also sees a rewrite the scan could miss: one of the same size within the filesystem's
clock tick (a few ms) leaves name, size and mtime as they were.

Where inotify cannot see every change, `mark()` answers None and the caller scans every
time, as before: no inotify (not Linux, the instance limit reached), plugin files that are
symbolic links (their targets change elsewhere), a watch the kernel dropped (the folder
deleted or moved), and a folder path through a symbolic link (re-pointing the link raises no
event in the old folder; the configuration resolves plugins.folder when it loads, so only a
caller that does not gets there).  A network filesystem raises no event for a change
made on another machine: the mark also moves every RESCAN seconds, so such a change is seen
within that time (the caller scans when only the period moved).
"""

import logging
import os
import threading
import time

try:
    import inotify_simple
except ImportError:  # not Linux: every call scans
    inotify_simple = None

log = logging.getLogger("proxy.folder_watch")

RESCAN = 1.0  # seconds: a scan at least this often, whatever inotify says

if inotify_simple is not None:
    _F = inotify_simple.flags
    # What can change a plugin file's name, size or mtime; not reads (the fork server's
    # imports) and not opens.
    _WATCHED = (_F.CREATE | _F.DELETE | _F.MODIFY | _F.ATTRIB | _F.CLOSE_WRITE | _F.MOVED_FROM
                | _F.MOVED_TO | _F.DELETE_SELF | _F.MOVE_SELF | _F.ONLYDIR)
    # After these the watch no longer sees the folder's changes (or lost some).
    _LOST = _F.IGNORED | _F.DELETE_SELF | _F.MOVE_SELF | _F.UNMOUNT | _F.Q_OVERFLOW


class FolderWatch:
    """inotify on one folder, for a generation's life; `close()` when it ends."""

    def __init__(self, folder):
        self.folder = os.fspath(folder)
        self.why_not = None  # why every look scans instead (None while inotify serves)
        self._lock = threading.Lock()  # one reader: an event is counted before another look
        self._changes = 0
        self._inotify = None
        try:
            self._inotify = self._arm()
        except OSError as e:
            self.why_not = f"inotify failed on it ({e})"
        if self.why_not:
            log.info("plugin folder %s: scanned before every call, as %s", self.folder, self.why_not)

    def _arm(self):
        if inotify_simple is None:
            self.why_not = "inotify is not available on this system"
        elif os.path.realpath(self.folder) != os.path.abspath(self.folder):
            self.why_not = "its path goes through a symbolic link"
        elif linked_plugin_files(self.folder):
            self.why_not = "it holds plugin files that are symbolic links"
        else:
            watch = inotify_simple.INotify(nonblocking=True)
            try:
                watch.add_watch(self.folder, _WATCHED)
            except OSError:
                watch.close()
                raise
            return watch
        return None

    def mark(self):
        """(how many times a plugin file was added, removed, renamed or written since the
        watch began, a count of RESCAN periods); None when only a scan can tell."""
        if self._inotify is None:
            return None
        with self._lock:
            if self._inotify is None:
                return None
            try:
                events = list(self._inotify.read(timeout=0))  # (documented as a generator in places)
            except OSError as e:
                self._give_up(f"reading its inotify events failed ({e})")
                return None
            if any(e.mask & _LOST for e in events):
                self._give_up("its inotify watch was dropped or overflowed (the folder deleted, moved or unmounted)")
                return None
            if any(e.name.endswith(".py") for e in events):
                self._changes += 1
                if linked_plugin_files(self.folder):
                    self._give_up("it now holds plugin files that are symbolic links")
                    return None
            return self._changes, int(time.monotonic() / RESCAN)

    def _give_up(self, why):
        self.why_not = why
        log.info("plugin folder %s: scanned before every call from now on, as %s", self.folder, why)
        self._inotify.close()
        self._inotify = None

    def close(self):
        with self._lock:
            if self._inotify is not None:
                self._inotify.close()
                self._inotify = None


def linked_plugin_files(folder):
    """True when a `*.py` entry of folder is a symbolic link (no stat: the entry's type).
    Hidden names are no module's (an editor's lock link, `.#unit.py`)."""
    try:
        with os.scandir(folder) as entries:
            return any(e.name.endswith(".py") and not e.name.startswith(".") and e.is_symlink() for e in entries)
    except OSError:
        return False
