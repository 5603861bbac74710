"""systemd's notification protocol, written by hand: READY=1, WATCHDOG=1, STOPPING=1.

Under the shipped unit (Type=notify, WatchdogSec=), systemd passes NOTIFY_SOCKET (and
WATCHDOG_USEC) in the environment.  The proxy says READY=1 once it listens, then WATCHDOG=1
every half watchdog period for as long as `alive()` holds (health.alive: the serving
thread runs and a fork server runs, replaced if it died).  A proxy that stops pinging, wedged
or unable to start a fork server, is killed by systemd and restarted (Restart=on-failure).
Outside systemd there is no NOTIFY_SOCKET and all of this does nothing.

The protocol is one datagram per message on a Unix socket (an abstract one when the
address starts with "@"): see sd_notify(3).  No libsystemd binding is needed for that.
"""

import logging
import os
import socket
import threading

log = logging.getLogger("proxy.systemd")

ENVIRONMENT = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notifier:
    def __init__(self, environ=None):
        # Taken out of the environment, as sd_notify's unset_environment does: the fork
        # server and the units inherit the proxy's environment and must not speak for it.
        environ = os.environ if environ is None else environ
        address, usec, pid = (environ.pop(name, None) for name in ENVIRONMENT)
        self.address = "\0" + address[1:] if address and address.startswith("@") else address
        self.interval = None
        if address and usec and usec.isdigit() and int(usec) > 0 and pid in (None, str(os.getpid())):
            self.interval = int(usec) / 1e6 / 2
        self.stopped = threading.Event()

    def send(self, state):
        """Send one notification (e.g. "READY=1"); False when there is no systemd to tell."""
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.connect(self.address)
                s.sendall(state.encode())
            return True
        except OSError as e:
            log.warning("cannot notify systemd (%s): %s", state, e)
            return False

    def start_watchdog(self, alive):
        """Ping systemd's watchdog while alive() holds; nothing without a watchdog."""
        if self.interval is None:
            return
        threading.Thread(target=self._watch, args=(alive,), name="watchdog", daemon=True).start()

    def _watch(self, alive):
        quiet = False
        while not self.stopped.wait(self.interval):
            try:
                ok = alive()
            except Exception:  # this thread must outlive any failure: a failure is "not alive"
                log.exception("liveness check failed")
                ok = False
            if ok:
                self.send("WATCHDOG=1")
                quiet = False
            elif not quiet:
                log.error("not alive: the watchdog is no longer pinged; systemd will restart the proxy")
                quiet = True

    def stop(self):
        self.stopped.set()
        self.send("STOPPING=1")
