"""Log set-up: one format for the server and the fork server, to a file or standard error,
as text or as one JSON object per line; a log file that cannot be opened names log.file."""
import json
import logging
import re
import xmlrpc.client

import pytest

from proxy import logs
from proxy.errors import ConfigError
from tests.support import PLUGINS, wait_until


@pytest.fixture
def restore_logging():
    yield
    logs.configure("WARNING", "")


def test_a_log_file_gets_the_shared_format(tmp_path, restore_logging):
    path = tmp_path / "proxy.log"
    logs.configure("INFO", str(path))
    logging.getLogger("proxy.test").info("hello %s", "there", extra={"request_id": "x-1"})
    logging.getLogger("proxy.test").debug("not at INFO")
    text = path.read_text()
    assert re.fullmatch(r"\S+ \S+ INFO proxy\.test\[\d+\]: hello there\n", text), text


def test_the_json_format_is_one_object_per_line_with_the_extra_fields(tmp_path, restore_logging):
    path = tmp_path / "proxy.log"
    logs.configure("INFO", str(path), "json")
    log = logging.getLogger("proxy.test")
    log.info("two\nlines", extra={"request_id": "x-1", "units": ["a", "b"], "duration_ms": 1.5})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    first, second = [json.loads(line) for line in path.read_text().splitlines()]
    assert set(first) == {"time", "level", "logger", "pid", "message", "request_id", "units", "duration_ms"}
    assert (first["level"], first["logger"], first["message"]) == ("INFO", "proxy.test", "two\nlines")
    assert (first["units"], first["duration_ms"]) == (["a", "b"], 1.5)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", first["time"])
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exception"]


def test_configure_replaces_the_handlers_instead_of_adding(restore_logging):
    logs.configure("INFO", "")
    logs.configure("INFO", "")
    assert len(logging.getLogger().handlers) == 1


def test_a_log_file_that_cannot_be_opened_is_a_config_error_naming_log_file(tmp_path):
    with pytest.raises(ConfigError, match=r"^log\.file: cannot open .*missing/x\.log: No such file or directory; "
                                          r"create its folder"):
        logs.configure("INFO", str(tmp_path / "missing" / "x.log"))


def test_a_proxy_logging_json_writes_parseable_lines_from_every_process(start_proxy):
    p = start_proxy(PLUGINS / "misbehaving", "--log-format", "json", "--log-level", "DEBUG", "--timeout", "2")
    proxy = xmlrpc.client.ServerProxy(p.url)
    proxy.runFilters(["raises", "calls_sys_exit"], ["h1"], "vm", {})
    wait_until(lambda: "runFilters" in p.log(), 10, "the call's log record")
    records = [json.loads(line) for line in p.log().splitlines()]  # every line is one object
    [call] = [r for r in records if r.get("method") == "runFilters"]
    assert call["units"] == ["raises", "calls_sys_exit"] and call["outcome"] == "unit_errors"
    assert call["client"] == "127.0.0.1" and re.fullmatch(r"[0-9a-f]{4}-\d+", call["request_id"])
    assert isinstance(call["duration_ms"], float) and "UnitRaised: RuntimeError: boom" in call["detail"]
    assert call["message"].startswith(f"request {call['request_id']} runFilters units=raises,calls_sys_exit ")
    assert {r["logger"] for r in records} >= {"proxy", "proxy.server", "proxy.forkserver"}
    assert len({r["pid"] for r in records}) >= 2  # the server and the fork server
