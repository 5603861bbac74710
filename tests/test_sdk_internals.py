"""The ovirtsdk4 internals the proxy overrides: still there, and pinned to the SDK versions
setup.cfg allows."""
import configparser
import re

import ovirtsdk4 as sdk
import pytest

from proxy import engine, readers, sdk_internals
from tests.support import ROOT


def test_every_overridden_internal_exists_in_the_installed_sdk():
    assert sdk_internals.check() == []


def test_check_names_a_missing_internal(monkeypatch):
    monkeypatch.delattr(sdk.Connection, "_get_sso_response")
    assert sdk_internals.check() == ["Connection._get_sso_response"]


def test_setup_cfg_caps_the_sdk_below_the_next_minor_release():
    """An SDK release outside the tested range must be a deliberate upgrade: raise the cap
    only after this suite passes against it."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    [spec] = [line for line in cfg["options"]["install_requires"].split("\n")
              if line.startswith("ovirt-engine-sdk-python")]
    upper = re.search(r"<\s*([0-9.]+)", spec)
    assert upper, f"{spec!r} has no upper bound"
    installed = tuple(int(x) for x in sdk.get_version().split(".")[:2])
    assert installed < tuple(int(x) for x in upper.group(1).split(".")[:2])


def test_the_connection_internals_behave_as_overridden():
    """Connection relies on these ovirtsdk4 4.6 internals; an SDK upgrade that drops one
    would silently lose the deadline (the whole-second `timeout` backstop would remain)."""
    for name in ("_Connection__send", "_get_sso_response", "_get_access_token", "_multi"):
        assert name == "_multi" or callable(getattr(sdk.Connection, name)), name
    conn = sdk.Connection(url="http://127.0.0.1:9/ovirt-engine/api")
    assert hasattr(conn._multi, "timeout") and hasattr(conn._multi, "select")
    conn.close()


@pytest.mark.parametrize("body, words", [
    (b"<hosts><host id='h'><memory>lots</memory></host></hosts>", "answer to /hosts could not be read"),
    (b"<hosts><host id='h'>", "answer to /hosts could not be read"),
    (b"<!DOCTYPE x [<!ENTITY a 'b'>]><hosts/>", "DTD"),
])
def test_an_unreadable_engine_answer_is_a_bad_reply(bound_engine, body, words):
    from ovirtsdk4.http import Response
    response = Response(body=body, code=200, headers=["Content-Type: application/xml"])
    with engine.connect() as conn:
        with pytest.raises(sdk_internals.BadReply, match=words):
            sdk_internals.RawList(conn, "/hosts", {}, readers.hosts_from_xml)._internal_read_body(response)


