"""The ovirtsdk4 internals the proxy relies on, fenced in one module.

Everything here reaches below the SDK's public API: name-mangled methods, the request
path of services, the format of its curl error messages.  setup.cfg caps the SDK's
version, and tests/test_sdk_internals.py fails loudly if a release changes what is
overridden here (`check()` names the missing piece).
"""

import io
import json
import math
import re
import time
import xml.etree.ElementTree as ET
from urllib.parse import urlencode

import ovirtsdk4 as sdk
import pycurl

_JSON_TYPE = re.compile(r"^(application|text)/json(;.*)?$", re.I)

# What this module overrides or calls that is not the SDK's public API.
INTERNALS = (
    (sdk.Connection, "_Connection__send"), (sdk.Connection, "_get_sso_response"),
    (sdk.Connection, "_get_access_token"), (sdk.Connection, "check_xml_content_type"),
    (sdk.service.Service, "_internal_get"), (sdk.service.Service, "_internal_read_body"),
    (sdk.service.Service, "_raise_error"),
)


def check():
    """Names of the SDK internals this module needs that the installed SDK lacks."""
    return [f"{owner.__name__}.{name}" for owner, name in INTERNALS if not callable(getattr(owner, name, None))]


class PromptMulti:
    """Wraps the SDK's CurlMulti so its wait loop notices a timeout when it happens.

    The SDK waits in `select(1.0)`, which does not know curl's own timers: a request that
    times out would be noticed up to a second past the deadline.
    """

    def __init__(self, multi):
        self._multi = multi

    def __getattr__(self, name):
        return getattr(self._multi, name)

    def select(self, timeout):
        due_ms = self._multi.timeout()
        if due_ms >= 0:
            timeout = min(timeout, due_ms / 1000)
        return self._multi.select(timeout)


class SsoReplyError(sdk.Error):
    """The SSO endpoint answered something that is not a JSON object; `status` is its HTTP
    status (None when unknown), so the message can blame the credentials or the server."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


class Connection(sdk.Connection):
    """An ovirtsdk4 Connection bounded by the call's deadline, never revoking the shared token.

    Three SDK internals are replaced, each pinned by tests/test_sdk_internals.py: the
    per-request curl handle gets a millisecond timeout (the SDK's `timeout` is whole
    seconds and the 401 retry goes around `send`), the SSO requests get one too (the SDK
    sets none), and each token obtained is passed to `on_token`.
    """

    DEFAULT_TIMEOUT = 30.0  # seconds per request when no deadline is given (a unit run by hand)

    def __init__(self, *, deadline=None, on_token=None, **kwargs):
        self._deadline = deadline
        self._on_token = on_token
        # Whole seconds as a backstop, should an SDK release bypass the overrides below.
        super().__init__(timeout=max(1, math.ceil(self._seconds_left())), **kwargs)
        self._multi = PromptMulti(self._multi)

    def _seconds_left(self):
        if self._deadline is None:
            return self.DEFAULT_TIMEOUT
        return self._deadline - time.monotonic()

    def _limit(self, curl):
        left = self._seconds_left()
        if left <= 0:
            raise sdk.TimeoutError("no time was left in the call for the request")
        ms = max(1, int(left * 1000))
        curl.setopt(pycurl.TIMEOUT_MS, ms)
        curl.setopt(pycurl.CONNECTTIMEOUT_MS, ms)

    # The SDK builds every API request (the 401 retry included) in Connection.__send.
    def _Connection__send(self, request):
        if self._seconds_left() <= 0:
            raise sdk.TimeoutError("no time was left in the call for the request")
        context = super()._Connection__send(request)
        self._limit(context[0])  # the transfer starts at the next perform(), so this applies
        return context

    def _get_sso_response(self, url, params=""):
        curl = pycurl.Curl()
        body, headers = io.BytesIO(), []
        try:
            self._limit(curl)
            curl.setopt(pycurl.URL, url)
            curl.setopt(pycurl.POST, 1)
            curl.setopt(pycurl.COPYPOSTFIELDS, urlencode(params))
            curl.setopt(pycurl.HTTPHEADER, [f"User-Agent: PythonSDK/{sdk.get_version()}",
                                            "Accept: application/json"])
            if url.startswith("https"):
                curl.setopt(pycurl.SSL_VERIFYPEER, 0 if self._insecure else 1)
                curl.setopt(pycurl.SSL_VERIFYHOST, 0 if self._insecure else 2)
                if self._ca_file:
                    curl.setopt(pycurl.CAINFO, self._ca_file)
            curl.setopt(pycurl.WRITEFUNCTION, body.write)
            # Only the last response's headers count (a proxy may answer 100 Continue first).
            curl.setopt(pycurl.HEADERFUNCTION, lambda line: headers.clear()
                        if line.startswith(b"HTTP/") else headers.append(line))
            curl.perform()
            status = curl.getinfo(pycurl.RESPONSE_CODE)
        finally:
            curl.close()
        content_type = next((h.split(b":", 1)[1].strip().decode("latin-1") for h in headers
                             if h.lower().startswith(b"content-type:")), "")
        if not _JSON_TYPE.match(content_type):
            raise SsoReplyError(f"the SSO service at {url} answered HTTP {status} with "
                                 f"{content_type or 'no content type'}, not JSON", status)
        try:
            reply = json.loads(body.getvalue().decode("utf-8"))
        except ValueError as e:
            raise SsoReplyError(f"the SSO service at {url} sent unreadable JSON: {e}") from None
        if isinstance(reply, list):
            reply = reply[0] if reply else {}
        if not isinstance(reply, dict):
            raise SsoReplyError(f"the SSO service at {url} sent {type(reply).__name__}, not an object")
        return reply

    def _get_access_token(self):
        try:
            new = super()._get_access_token()
        except KeyError as e:
            raise SsoReplyError(f"the SSO reply has no {e} and no error") from None
        if self._on_token:
            self._on_token(new)
        return new

    def close(self, logout=False):
        """Releases the connection; logout stays False so the shared token survives."""
        super().close(logout=logout)


# How the SDK reports a transfer that failed inside its multi loop: it formats curl's list.
_MULTI_FAILURE = re.compile(r"Failed to read response: \[\(<pycurl\.Curl object at \w+>, (\d+), "
                            r"['\"](.*)['\"]\)\]$", re.S)


def curl_failure(exc):
    """(libcurl error code, curl's message) behind an error, or (None, None)."""
    seen = exc
    while seen is not None:
        if isinstance(seen, pycurl.error) and seen.args:
            return seen.args[0], seen.args[1] if len(seen.args) > 1 else str(seen)
        seen = seen.__cause__ or seen.__context__
    m = _MULTI_FAILURE.match(str(exc))
    return (int(m.group(1)), m.group(2)) if m else (None, None)


class RawList(sdk.service.Service):
    """GET `path` with `query` through the SDK's own request path (token, 401 renewal,
    faults, deadlines), with the XML body (bytes) handed to `parse`.

    The SDK's readers build an object per element: for /hosts?follow=statistics that is
    ~0.9 s for 1,000 hosts × 13 statistics.  ElementTree and the SDK's value parsers
    read the same body in about a quarter of that (tests/test_engine.py compares them).
    """

    def __init__(self, connection, path, query, parse):
        super().__init__(connection, path)
        self._query, self._parse = query, parse

    def list(self):
        return self._internal_get(query=self._query, wait=True)

    def _internal_read_body(self, response):
        if not response.body:
            self._raise_error(response)
        self._connection.check_xml_content_type(response)
        # The engine's answer, over the connection the admin configured, not a caller's
        # input: the C parser (defusedxml's is pure Python, 4× slower), DTDs refused.
        if b"<!DOCTYPE" in response.body[:4096]:
            raise BadReply(f"the engine's answer to {self._path} carries a DTD, which the API never sends")
        try:
            return self._parse(response.body)
        except (ValueError, ET.ParseError) as e:
            raise BadReply(f"the engine's answer to {self._path} could not be read: {e}") from None


class BadReply(Exception):
    """The engine's XML could not be read."""


