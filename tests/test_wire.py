"""Messages between the server, the fork server and the workers."""
import os
import socket
import threading
import time

import pytest
from hypothesis import given, strategies as st

from proxy import wire

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                    max_leaves=20)


@given(JSON)
def test_frames_round_trip_whole_and_in_pieces(obj):
    a, b = socket.socketpair()
    with a, b:
        wire.send_frame(a, obj)
        assert wire.recv_frame(b, 1 << 20) == obj
    data = len(wire.encode(obj)).to_bytes(4, "big") + wire.encode(obj)
    reader = wire.FrameReader(1 << 20)
    results = [reader.feed(data[i:i + 3]) for i in range(0, len(data), 3)]
    assert results[-1] == obj and all(r is None for r in results[:-1])


def test_limits_and_eof():
    a, b = socket.socketpair()
    with a, b:
        wire.send_frame(a, "x" * 100)
        with pytest.raises(wire.FrameTooLarge):
            wire.recv_frame(b, 10)
    a, b = socket.socketpair()
    with b:
        a.close()
        assert wire.recv_frame(b, 10) is None  # a clean end: the server dropped a spare
    with pytest.raises(wire.FrameTooLarge, match="output limit of 10"):
        wire.FrameReader(10).feed((100).to_bytes(4, "big"))


def test_sets_and_tuples_travel_odd_types_do_not():
    assert wire.decode(wire.encode({"r": ("vm", {"b", "a"})})) == {"r": ["vm", ["a", "b"]]}
    with pytest.raises(TypeError, match="'object' values cannot be sent"):
        wire.encode([object()])


def test_control_messages_carry_file_descriptors():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r, w = os.pipe()
    with a, b:
        wire.send_control(a, {"worker": 42}, [w])
        msg, fds = wire.recv_control(b)
        assert msg == {"worker": 42} and len(fds) == 1
        os.write(fds[0], b"through the passed descriptor")
        assert os.read(r, 100) == b"through the passed descriptor"
        a.close()
        assert wire.recv_control(b) == (None, [])
    for fd in (r, w, fds[0]):
        os.close(fd)


def test_a_frame_larger_than_the_socket_buffer_is_sent_whole_and_the_socket_left_non_blocking():
    a, b = socket.socketpair()
    a.setblocking(False)
    text = "x" * (4 << 20)  # far beyond a Unix socket's buffer: sent in pieces, as the reader reads
    got = []
    reader = threading.Thread(target=lambda: got.append(wire.recv_frame(b, 8 << 20)))
    reader.start()
    with a, b:
        wire.send_frame_nowait(a, wire.frame(text), time.monotonic() + 10)
        reader.join(10)
        assert got == [text] and a.gettimeout() == 0.0


def test_a_peer_that_never_reads_ends_the_send_at_the_deadline():
    a, b = socket.socketpair()
    a.setblocking(False)
    with a, b:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            wire.send_frame_nowait(a, wire.frame("x" * (4 << 20)), start + 0.3)
        assert 0.25 < time.monotonic() - start < 3 and a.gettimeout() == 0.0


def test_a_reader_asks_for_what_its_frame_lacks():
    reader = wire.FrameReader(1 << 30)
    assert reader.wanted() == 1 << 16  # the length is not known yet
    assert reader.feed((10).to_bytes(4, "big") + b'"abc') is None
    assert reader.wanted() == 6
    assert reader.feed(b'defgh"') == "abcdefgh"
    large = wire.FrameReader(1 << 30)
    large.feed((5 << 20).to_bytes(4, "big"))
    assert large.wanted() == 1 << 20  # at most 1 MiB a read
