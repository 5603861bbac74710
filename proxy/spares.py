"""How many spare workers the fork server has ready, and when it forks their replacements.

The fork server keeps plugins.spare_workers forked ahead, so a call never waits for a
fork; the server asks for a replacement (messages.Spawn) each time it takes one.
"""

# A replacement fork costs ~2 ms of CPU; on 2 cores, forking while a call runs slows that
# call.  So while a spare is still idle, wait for a moment with no call running, but no
# longer than this (docs/EXECUTION.md §3.4: deferring saved ~1.5 ms a call).
REPLACE_DEFER_MAX = 0.05


class Spares:
    """The forked workers the server has not taken yet, as far as the fork server can tell.

    The server asks for a replacement (Spawn) as it starts taking a worker, which can be
    before the worker it ends up with is forked: the count then dips below zero (a take
    is waiting).  Clamping it at zero there would count that worker as a spare for ever
    after, and each wait would add another phantom: replacements would then be deferred
    (REPLACE_DEFER_MAX) while the server has none, and calls queue for workers (measured:
    at 50 calls/s, a fifth of the calls waited up to 0.2 s).
    """

    def __init__(self):
        self.idle = 0

    def forked(self):
        self.idle += 1

    def taken(self, n):
        """The server asked for n replacements: n workers taken, or about to be."""
        self.idle -= n

    def at_most(self, live):
        """No more spares than live workers (the server may close a stale spare unasked)."""
        self.idle = min(self.idle, live)

    def replace_delay(self):
        """Seconds a replacement fork may wait for a quiet moment: none when no spare is left."""
        return REPLACE_DEFER_MAX if self.idle > 0 else 0.0

    def all_idle(self, live):
        """True when every live worker is an idle spare: no call is running."""
        return live <= self.idle
