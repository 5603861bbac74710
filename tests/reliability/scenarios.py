"""The hostile clients of docs/RELIABILITY.md, each a function that returns what it measured.

The reliability tests assert their bounds; `python -m tests.reliability.measure` prints the
figures for this checkout or another one (the "before" column of docs/RELIABILITY.md).
Every wait here polls or blocks on a socket with a deadline; none sleeps a fixed time.
"""
import os
import select
import socket
import threading
import time
import xmlrpc.client
from urllib.parse import urlsplit

HOSTS = ["6a1e0000-0000-4000-8000-000000000001", "6a1e0000-0000-4000-8000-000000000002"]
ENGINE_CALL = xmlrpc.client.dumps((["keep_all"], HOSTS, "vm", {}), "runFilters").encode()
MIB = 1024 * 1024


def address(url):
    parts = urlsplit(url)
    return parts.hostname, parts.port


def request(body, content_type="text/xml", host="localhost", extra=b"", length=None):
    """The bytes of a POST as the engine's Java client frames it, plus `extra` header lines
    (content_type None: no Content-Type header; length: a Content-Length for a body sent later)."""
    head = b"POST / HTTP/1.1\r\nHost: %s\r\n" % host.encode()
    if content_type is not None:
        head += b"Content-Type: %s\r\n" % content_type.encode()
    length = len(body) if length is None else length
    return head + b"User-Agent: Apache XML RPC 3.1.3\r\n%sContent-Length: %d\r\n\r\n" % (extra, length) + body


def readable(sock, timeout):
    """True when sock has data or was closed within timeout seconds (poll: fds above 1,024 too)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(max(timeout, 0) * 1000))


def read_answers(sock, deadline):
    """Every byte the server sends until it closes or the deadline passes."""
    data = b""
    while time.monotonic() < deadline:
        if not readable(sock, deadline - time.monotonic()):
            break
        try:
            chunk = sock.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


def statuses(data):
    """The status codes of the HTTP answers in `data` (interim 100 answers included)."""
    return [int(line.split()[1]) for line in data.split(b"\r\n") if line.startswith(b"HTTP/1.")]


def open_call(url, body=ENGINE_CALL):
    """A socket on which the engine's call has been sent; the caller reads the answer."""
    sock = socket.create_connection(address(url), timeout=5)
    sock.sendall(request(body))
    return sock


def engine_call(url, body=ENGINE_CALL, connect_timeout=0.1, timeout=10.0):
    """One call as the engine makes it (100 ms to connect); {connect_ms, answer_ms, status, body}."""
    start = time.monotonic()
    try:
        sock = socket.create_connection(address(url), timeout=connect_timeout)
    except OSError as e:
        return {"connect_ms": None, "answer_ms": None, "status": None, "error": f"connect: {e}"}
    connected = time.monotonic()
    with sock:
        sock.sendall(request(body, extra=b"Connection: close\r\n"))
        data = read_answers(sock, connected + timeout)
    done = time.monotonic()
    codes = statuses(data)
    return {"connect_ms": (connected - start) * 1000, "answer_ms": (done - start) * 1000 if codes else None,
            "status": codes[-1] if codes else None, "body": data.partition(b"\r\n\r\n")[2]}


# --- the proxy process, seen through /proc --------------------------------------------------

def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for process {pid}")


# --- row 2: idle connections ------------------------------------------------------------------

def closed_by_peer(sock):
    sock.setblocking(False)  # a socket with a timeout would wait for data first
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def idle_flood(url, pid, n=1100, window=2.0):
    """n connections that never send anything, then an engine call; then the proxy's open
    files, and its CPU use over a `window` of seconds while the connections stay open."""
    socks, refused = [], 0
    for _ in range(n):
        try:
            socks.append(socket.create_connection(address(url), timeout=1))
        except OSError:
            refused += 1
    try:
        call = engine_call(url)
        cpu, start = cpu_seconds(pid), time.monotonic()
        time.sleep(window)  # a measurement window (CPU time over wall time), not a wait for anything
        cpu_percent = 100 * (cpu_seconds(pid) - cpu) / (time.monotonic() - start)
        closed = sum(closed_by_peer(s) for s in socks)
        fds = open_fds(pid)
    finally:
        for s in socks:
            s.close()
    return {"idle": n, "connect_failed": refused, "closed_by_proxy": closed, "proxy_fds": fds,
            "proxy_cpu_percent_after": cpu_percent, **call}


# --- row 3: slow headers ----------------------------------------------------------------------

def slow_headers(url, interval=1.0, give_up=30.0):
    """Sends a request line one byte per `interval`; seconds until the proxy hung up (None: never)."""
    line = b"POST / HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 10_000
    start = time.monotonic()
    with socket.create_connection(address(url), timeout=5) as sock:
        for byte in line:
            if time.monotonic() - start > give_up:
                return None
            try:
                sock.send(bytes([byte]))
            except OSError:
                return time.monotonic() - start
            if readable(sock, interval):  # an error answer or the close: either way the proxy takes no more
                return time.monotonic() - start
    return None


# --- row 5: large bodies ----------------------------------------------------------------------

def big_body(size):
    """An XML-RPC call of about `size` bytes: discover with an array of host ids (a fault after parsing)."""
    value = b"<value>6a1e0000-0000-4000-8000-000000000001</value>"
    head = b"<?xml version='1.0'?><methodCall><methodName>discover</methodName><params><param><value><array><data>"
    tail = b"</data></array></value></param></params></methodCall>"
    return head + value * ((size - len(head) - len(tail)) // len(value)) + tail


def send_with_continue(url, body, results):
    """POST with `Expect: 100-continue`, as curl does: the body goes after 100 Continue, or after
    a second without an answer (a server may not send 100); the final status is kept."""
    try:
        with socket.create_connection(address(url), timeout=60) as sock:
            sock.sendall(request(b"", extra=b"Expect: 100-continue\r\n", length=len(body)))
            first = read_answers_until(sock, b"\r\n\r\n", time.monotonic() + 1)
            if statuses(first) in ([], [100]):
                sock.sendall(body)
                first += read_answers_until(sock, b"</methodResponse>", time.monotonic() + 60)
            results.append((statuses(first) or [None])[-1])
    except OSError as e:
        results.append(f"error: {e}")


def read_answers_until(sock, marker, deadline):
    data = b""
    while marker not in data and time.monotonic() < deadline:
        chunk = sock.recv(65536) if readable(sock, deadline - time.monotonic()) else b""
        if not chunk:
            break
        data += chunk
    return data


def big_bodies(url, pid, n=8, size=50 * MIB):
    """n concurrent bodies of `size` bytes; their statuses and the proxy's peak RSS."""
    body, results = big_body(size), []
    before = peak_rss_mb(pid)
    threads = [threading.Thread(target=send_with_continue, args=(url, body, results)) for _ in range(n)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return {"bodies": n, "mib_each": size // MIB, "statuses": sorted(results, key=str),
            "seconds": time.monotonic() - start, "peak_rss_mb_before": before, "peak_rss_mb": peak_rss_mb(pid)}


# --- row 8: requests only a browser sends -----------------------------------------------------

BROWSER_REQUESTS = {
    "cross-site form (text/plain, Origin)": dict(content_type="text/plain", extra=b"Origin: http://evil.example\r\n"),
    "no-cors fetch (no Content-Type)": dict(content_type=None, extra=b"Origin: http://evil.example\r\n"),
    "DNS rebinding (foreign Host)": dict(host="evil.example:18781"),
}


def browser_requests(url):
    """{case: status} for requests a web page could make; 200 means the call was run."""
    answers = {}
    for case, kwargs in BROWSER_REQUESTS.items():
        with socket.create_connection(address(url), timeout=5) as sock:
            sock.sendall(request(ENGINE_CALL, **kwargs))
            answers[case] = (statuses(read_answers(sock, time.monotonic() + 5)) or [None])[0]
    return answers


# --- row 10: deep nesting, chunked bodies -----------------------------------------------------

def deep_nesting(url, depth=100_000):
    """runFilters with its first argument nested `depth` arrays deep: (fault code, message)."""
    nested = b"<value><array><data>" * depth + b"</data></array></value>" * depth
    rest = xmlrpc.client.dumps((HOSTS, "vm", {})).encode().split(b"<params>", 1)[1]
    body = (b"<?xml version='1.0'?><methodCall><methodName>runFilters</methodName><params><param>"
            + nested + b"</param>" + rest + b"</methodCall>")
    call = engine_call(url, body, connect_timeout=1)
    try:
        xmlrpc.client.loads(call["body"])
    except xmlrpc.client.Fault as e:
        return e.faultCode, e.faultString
    except Exception as e:  # an answer that is not XML-RPC at all
        return None, f"{type(e).__name__}: {call.get('status')}"
    return 0, "no fault"


def chunked(url):
    """A chunked POST, then an engine call on the same connection: (status of the first answer,
    what followed it).  The right outcomes: a refusal and the close, or two XML-RPC answers."""
    body = xmlrpc.client.dumps((), "discover").encode()
    raw = (b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n"
           + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    with socket.create_connection(address(url), timeout=5) as sock:
        sock.sendall(raw + request(ENGINE_CALL))
        data = read_answers(sock, time.monotonic() + 3)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), b"0"))
    return (statuses(head) or [None])[0], rest[length:][:80]


# --- load: the engine's 100 ms connect timeout under a burst ----------------------------------

def burst(url, n=100):
    """n callers at once, each with the engine's 100 ms connect timeout; how many connected and answered."""
    barrier, results = threading.Barrier(n), []

    def caller():
        barrier.wait()
        results.append(engine_call(url, timeout=30))

    threads = [threading.Thread(target=caller) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    connects = [r["connect_ms"] for r in results if r["connect_ms"] is not None]
    return {"callers": n, "connected": len(connects), "answered": sum(r["status"] == 200 for r in results),
            "max_connect_ms": max(connects, default=None),
            "max_answer_ms": max((r["answer_ms"] for r in results if r["answer_ms"]), default=None)}
