"""The server's network and crypto layers driven by hand on a fake loop with a fake clock
(`fakeloop.py`): timeouts, back-pressure and closing, checked deterministically, with no sleeps."""
from __future__ import annotations

import logging
import socket

import pytest

from apps.sfs_like import rpc
from apps.sfs_like.client import recv_frame
from apps.sfs_like.framing import frame
from apps.sfs_like.handshake import READY, ClientHandshake
from apps.sfs_like.server import Server

from .fakeloop import FakeLoop

FRAME_TIMEOUT = 3.0


@pytest.fixture
def export(tmp_path):
    d = tmp_path / "export"
    d.mkdir()
    (d / "hello.txt").write_bytes(b"hello, world\n")
    return d


def make_server(tmp_path, export, **kw):
    loop = FakeLoop()
    kw.setdefault("frame_timeout", FRAME_TIMEOUT)
    server = Server(loop, str(export), str(tmp_path / "key"), clock=loop.clock, **kw)
    server.listen("127.0.0.1", 0)
    return loop, server


class Session:
    """The client end of a socketpair the server adopted as a connection, after the handshake."""

    def __init__(self, loop: FakeLoop, server: Server, suite: str = "sfs2003") -> None:
        self.loop = loop
        self.sock, theirs = socket.socketpair()
        self.sock.settimeout(10)
        self.conn = server._adopt(theirs, "test-peer")
        hs = ClientHandshake.start(suite)
        self.sock.sendall(frame(hs.hello))
        loop.poll()
        self.channel, transcript = hs.finish(bytes(recv_frame(self.sock)), server.fingerprint)
        assert self.channel.recv.open(bytes(recv_frame(self.sock))) == READY + transcript

    def sealed(self, request: bytes) -> bytes:
        return b"".join(bytes(p) for p in self.channel.send.seal([request]))

    def reply(self) -> bytes:
        return self.channel.recv.open(bytes(recv_frame(self.sock)))


def test_frame_timer_restarts_when_a_frame_completes(tmp_path, export, caplog):
    """A client streaming frames back to back, so that the server's buffer always ends in the middle
    of the next frame, is not a slow client: the timeout bounds how long ONE frame takes."""
    loop, server = make_server(tmp_path, export)
    s = Session(loop, server)
    wires = [s.sealed(rpc.req_getattr(xid, rpc.ROOT_FH)) for xid in range(1, 12)]
    stream = b"".join(wires)
    cut = len(wires[0]) // 2
    s.sock.sendall(stream[:cut])                   # half of frame 1
    loop.poll()
    step = len(wires[0])
    pos = cut
    for _ in range(10):                           # 10 x 2 s = 20 s of streaming, timeout 3 s
        loop.advance(2.0)                         # the reaper runs: one frame took 2 s so far
        assert not s.conn.closing, caplog.text
        s.sock.sendall(stream[pos:pos + step])    # the rest of this frame and half the next
        pos += step
        loop.poll()
    for xid in range(1, 11):                      # every finished request was answered, in order
        assert rpc.REP_HEAD.unpack_from(s.reply()) == (xid, rpc.OK)
    # A frame that stays unfinished is still cut off once the timeout passes.
    with caplog.at_level(logging.INFO, "sfs_like.server"):
        loop.advance(FRAME_TIMEOUT + 0.5)
    assert s.conn.closing
    assert f"slow client: frame unfinished after {FRAME_TIMEOUT:g} s" in caplog.text
