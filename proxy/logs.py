"""Log set-up shared by the server and the fork server, so both write the same format.

Two formats (log.format): "text", one line per record, and "json", one JSON object per
line for log shippers.  Fields a record carries through logging's `extra=` (the per-call
record's request_id, client, method, units, duration_ms, outcome) are keys of the JSON
object; the text format shows only the message, so it reads as it always has.
"""

import datetime
import json
import logging
import sys

from .errors import ConfigError

FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
FORMATS = ("text", "json")
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in messages are escaped)."""

    def format(self, record):
        entry = {"time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
                 .isoformat(timespec="milliseconds"),
                 "level": record.levelname, "logger": record.name, "pid": record.process,
                 "message": record.getMessage()}
        entry.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level, file="", fmt="text"):
    """Send the process's logs to `file` (standard error if empty) in format `fmt`.

    A file that cannot be opened is a ConfigError naming log.file, so `serve` exits with
    code 2 and says which key to fix, not with a traceback.
    """
    try:
        handler = logging.FileHandler(file) if file else logging.StreamHandler(sys.stderr)
    except OSError as e:
        raise ConfigError(f"log.file: cannot open {file}: {e.strerror}; create its folder (writable by "
                          "the proxy's user) or set log.file (--log-file) elsewhere") from None
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        if isinstance(old, logging.FileHandler):
            old.close()  # a file we opened before; other handlers' streams are not ours
    root.addHandler(handler)
    root.setLevel(level)
