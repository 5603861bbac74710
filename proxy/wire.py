"""How the server, the fork server and the workers talk: JSON messages on Unix sockets.

Workers use a stream socket with a 4-byte length prefix, because a request with 10,000
hosts is larger than a datagram.  The control channel to the fork server is a
SOCK_SEQPACKET socket: small messages, kept whole by the kernel, and able to carry the
file descriptor of a freshly forked worker's socket (SCM_RIGHTS).
JSON, not pickle: the server never unpickles what a plugin produced.
"""

import array
import json
import socket
import struct
import time

_LEN = struct.Struct("!I")
CONTROL_MAX = 1 << 20  # a catalog of a few hundred units fits easily


class FrameTooLarge(Exception):
    pass


def encode(obj):
    return json.dumps(obj, separators=(",", ":"), default=_plain).encode()


def decode(data):
    return json.loads(data)


def _plain(obj):
    # Units often return tuples and sets; anything else has no engine meaning.
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    raise TypeError(f"{type(obj).__name__!r} values cannot be sent to the engine")


def frame(obj):
    """The bytes of one message on a stream socket: its length, then its JSON (or obj's bytes)."""
    data = encode(obj) if not isinstance(obj, bytes) else obj
    return _LEN.pack(len(data)) + data


def send_frame(sock, obj):
    sock.sendall(frame(obj))


def send_frame_nowait(sock, data, deadline):
    """Send a frame's bytes on a non-blocking socket: at once when the socket's buffer takes
    them all (a request to a worker always fits), else waiting until `deadline`
    (time.monotonic()).  Why not sendall with a timeout: that polls before it sends, and each
    system call costs a busy server's thread a hand-over of the interpreter lock."""
    try:
        sent = sock.send(data)
    except BlockingIOError:
        sent = 0
    if sent < len(data):
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            sock.sendall(memoryview(data)[sent:])
        finally:
            sock.setblocking(False)


def recv_frame(sock, limit):
    """One message, or None on a clean EOF before any byte of it."""
    head = _recv_exact(sock, _LEN.size)
    if head is None:
        return None
    (size,) = _LEN.unpack(head)
    if size > limit:
        raise FrameTooLarge(f"message of {size} bytes exceeds the limit of {limit}")
    body = _recv_exact(sock, size)
    if body is None:
        raise EOFError("connection closed in the middle of a message")
    return decode(body)


def _recv_exact(sock, n):
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            if got:
                raise EOFError("connection closed in the middle of a message")
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


class FrameReader:
    """Incremental reader for a non-blocking socket driven by a selector."""

    def __init__(self, limit):
        self.limit = limit
        self.buf = bytearray()

    def wanted(self):
        """How many bytes to ask the socket for: what the frame still lacks once its length
        is known (at most 1 MiB a read), else 64 KiB.  A larger buffer than the answer is
        allocated whole first: 1 MiB each read took an mmap and an munmap, and an munmap in a
        threaded process interrupts the other CPUs to flush their address caches."""
        if len(self.buf) < _LEN.size:
            return 1 << 16
        (size,) = _LEN.unpack_from(self.buf)
        return max(1, min(_LEN.size + size - len(self.buf), 1 << 20))

    def feed(self, data):
        """Add bytes; return the decoded message once it is complete, else None."""
        self.buf += data
        if len(self.buf) < _LEN.size:
            return None
        (size,) = _LEN.unpack_from(self.buf)
        if size > self.limit:
            raise FrameTooLarge(f"answer of {size} bytes exceeds the output limit of {self.limit}")
        if len(self.buf) < _LEN.size + size:
            return None
        return decode(bytes(self.buf[_LEN.size:_LEN.size + size]))


def send_control(sock, obj, fds=()):
    data = encode(obj)
    if fds:
        sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        sock.send(data)


def recv_control(sock):
    """(message, [fds]) from the control channel, or (None, []) when it is closed."""
    fds = array.array("i")
    data, ancdata, _flags, _addr = sock.recvmsg(CONTROL_MAX, socket.CMSG_LEN(4 * fds.itemsize))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    if not data:
        return None, list(fds)
    return json.loads(data), list(fds)
