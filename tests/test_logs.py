"""Log set-up: one format for the server and the fork server, to a file or standard error."""
import logging
import re

from proxy import logs


def test_a_log_file_gets_the_shared_format(tmp_path):
    path = tmp_path / "proxy.log"
    logs.configure("INFO", str(path))
    try:
        logging.getLogger("proxy.test").info("hello %s", "there")
        logging.getLogger("proxy.test").debug("not at INFO")
    finally:
        logs.configure("WARNING", "")
    text = path.read_text()
    assert re.fullmatch(r"\S+ \S+ INFO proxy\.test\[\d+\]: hello there\n", text), text


def test_configure_replaces_the_handlers_instead_of_adding():
    logs.configure("INFO", "")
    logs.configure("INFO", "")
    assert len(logging.getLogger().handlers) == 1
