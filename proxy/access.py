"""Who may call the proxy: the client allow-list, and refusing what only a browser would send.

The engine is the only legitimate caller.  Its Java client (docs/ENGINE_PROTOCOL.md §1.1)
posts `Content-Type: text/xml`, never an `Origin` header, and names in `Host` the host of
its configured URL.  A web page in a browser on the same machine can reach a proxy on
loopback too: a cross-site form or `fetch` posts `text/plain` (or no type) with an
`Origin`, and a DNS-rebinding page sends its own domain in `Host`.  Those are refused here
before anything is read or run.  docs/RELIABILITY.md lists each case.
"""

import functools
import ipaddress
import time

# Names that resolve to the loopback interface on every Linux distribution (and *.localhost,
# RFC 6761); a Host header naming anything else reached a loopback proxy through a browser.
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "localhost6", "localhost6.localdomain6",
                            "ip6-localhost", "ip6-loopback"})
BROWSER_ONLY_HEADERS = ("Origin", "Sec-Fetch-Site", "Sec-Fetch-Mode")


class Refusal(Exception):
    """A request answered with an HTTP error and not run; the message says why and what to do."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def allow_problem(entry):
    """Why an entry of server.allow is not an address or network, or None when it is one."""
    try:
        ipaddress.ip_network(entry)
    except ValueError as e:
        if "has host bits set" in str(e):
            near = ipaddress.ip_network(entry, strict=False)
            return f"{entry!r} has host bits set; write the network ({near}) or the single address"
        return f"{entry!r} is not an IP address or network (CIDR such as 192.168.1.0/24)"
    return None


def client_address(host):
    """The client's address as the allow-list compares it (IPv4-mapped IPv6 as IPv4)."""
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


class AllowList:
    """server.allow: an empty list lets in every client that can reach the listening address."""

    def __init__(self, entries):
        self.networks = tuple(ipaddress.ip_network(e) for e in entries)

    def __bool__(self):
        return bool(self.networks)

    def allows(self, host):
        if not self.networks:
            return True
        address = client_address(host)
        return any(address in net for net in self.networks if net.version == address.version)


@functools.lru_cache(maxsize=256)  # every request's Host is checked; it is nearly always the same
def is_loopback(host):
    """True for a loopback address or one of the loopback names."""
    host = host.lower().rstrip(".")
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return client_address(host).is_loopback
    except ValueError:
        return False


def _host_name(header):
    """The host of a Host header: `name`, `name:port`, `[v6]` or `[v6]:port`."""
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def check_request(method, headers, loopback_bound):
    """Raise Refusal for a request the engine would never send; headers: an email Message."""
    for name in BROWSER_ONLY_HEADERS:
        if name in headers:
            raise Refusal(403, f"refused: a request with an {name} header comes from a web browser, "
                               "not the oVirt engine")
    host = headers.get("Host")
    if loopback_bound and host is not None and not is_loopback(_host_name(host.strip())):
        raise Refusal(403, f"refused: Host {host!r} is not a loopback name or address, and the proxy "
                           "listens on loopback (a browser page rebinding its domain sends this); call "
                           "http://localhost:PORT/ or http://127.0.0.1:PORT/")
    if method != "POST":
        raise Refusal(501, f"unsupported method {method!r}: the proxy serves XML-RPC, which is POST only")
    if headers.get("Content-Type") is None or headers.get_content_type() != "text/xml":
        raise Refusal(415, f"refused: Content-Type {headers.get('Content-Type')!r}; XML-RPC requests are "
                           "sent as text/xml")


def exposure_warning(bound_loopback, tls, allow):
    """The start-up warning for a proxy reachable from other machines without protection."""
    if bound_loopback or (tls and allow):
        return None
    missing = [what for what, ok in (("TLS (server.tls_cert, server.tls_key)", tls),
                                     ("an allow-list (server.allow)", allow)) if not ok]
    return ("listening on a non-loopback address without " + " or ".join(missing) + ": "
            + ("anyone who can reach the port can call the units" if not allow else
               "calls and answers cross the network in clear text")
            + "; see README 'TLS and the allow-list'")


class Throttled:
    """Logs a warning at most once per interval for each (reason, client), so a flood of
    refused connections cannot flood the log; the next line counts the ones left out."""

    MAX_KEYS = 1024  # a scan from many addresses must not grow the table without bound

    def __init__(self, logger, interval=60.0):
        self.log, self.interval = logger, interval
        self.last = {}  # (reason, client) -> [time of the last line, refusals not logged since]

    def warning(self, reason, client, message):
        now = time.monotonic()
        entry = self.last.get((reason, client))
        if entry and now - entry[0] < self.interval:
            entry[1] += 1
            return
        if len(self.last) >= self.MAX_KEYS:
            self.last.clear()
        more = f" ({entry[1]} more like it not logged)" if entry and entry[1] else ""
        self.last[(reason, client)] = [now, 0]
        self.log.warning("%s%s", message, more)
