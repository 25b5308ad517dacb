"""The server's network and crypto layers driven by hand on a fake loop with a fake clock
(`fakeloop.py`): timeouts, back-pressure and closing, checked deterministically, with no sleeps."""
from __future__ import annotations

import errno
import logging
import os
import select
import socket
import subprocess
import sys

import pytest

from apps.sfs_like import rpc
from apps.sfs_like import server as server_mod
from apps.sfs_like.client import recv_frame
from apps.sfs_like.filelayer import FileLayer
from apps.sfs_like.framing import frame
from apps.sfs_like.handshake import READY, ClientHandshake
from apps.sfs_like.server import Server
from apps.sfs_like.suites import SUITES

from .conftest import REPO
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



def _pump(loop: FakeLoop, wanted: dict, max_rounds: int = 100_000) -> dict:
    """Read replies on the client sockets, letting the server flush its queues in between, until
    each session in `wanted` ({session: count}) has its count; returns {session: [reply, ...]}."""
    bufs = {s: bytearray() for s in wanted}
    got = {s: [] for s in wanted}
    for _ in range(max_rounds):
        if all(len(got[s]) >= n for s, n in wanted.items()):
            return got
        loop.poll()
        readable, _, _ = select.select([s.sock for s in wanted], [], [], 0)
        for s in wanted:
            if s.sock not in readable:
                continue
            data = s.sock.recv(1 << 20)
            assert data, "the server closed the connection"
            buf = bufs[s]
            buf += data
            while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[:4], "big"):
                n = int.from_bytes(buf[:4], "big")
                got[s].append(s.channel.recv.open(bytes(buf[4:4 + n])))
                del buf[:4 + n]
    raise AssertionError(f"replies did not arrive: {[(len(got[s]), n) for s, n in wanted.items()]}")


def test_a_client_that_does_not_read_its_replies_is_throttled_not_buffered(tmp_path, export, caplog):
    """Pipelined 256 KiB READs from a client that never reads: the server stops reading its requests
    once its unsent replies pass PAUSE_UNSENT, so they stay bounded (they grew without bound);
    another client is served meanwhile; once the client reads, every reply arrives, in order."""
    big = os.urandom(1 << 20)
    (export / "big.bin").write_bytes(big)
    loop, server = make_server(tmp_path, export)
    hog = Session(loop, server)
    hog.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    hog.sock.sendall(hog.sealed(rpc.req_lookup(1, rpc.ROOT_FH, "big.bin")))
    (reply,) = _pump(loop, {hog: 1})[hog]
    fh = rpc.FH.unpack_from(reply, rpc.REP_HEAD.size)[0]

    count, batch, xid, offsets = 256 * 1024, 16, 1, {}
    for _ in range(12):                           # up to 192 READs: 48 MiB of replies
        wire = []
        for _ in range(batch):
            xid += 1
            offsets[xid] = (xid * 7919) % (len(big) - count)
            wire.append(hog.sealed(rpc.req_read(xid, fh, offsets[xid], count)))
        hog.sock.sendall(b"".join(wire))
        loop.poll()
        assert not hog.conn.closing, caplog.text
        if hog.conn.reading_paused:
            break
    assert hog.conn.reading_paused, f"never paused; {hog.conn.unsent} bytes unsent"
    bound = server_mod.PAUSE_UNSENT + batch * (count + 1024)
    assert hog.conn.peak_unsent <= bound
    # While paused: more requests wait in the socket, unread; the server does not grow its queue.
    for _ in range(8):
        xid += 1
        offsets[xid] = xid * 13
        hog.sock.sendall(hog.sealed(rpc.req_read(xid, fh, offsets[xid], count)))
    before = hog.conn.unsent
    for _ in range(5):
        loop.poll()
    assert hog.conn.unsent == before and hog.conn.reading_paused
    # Someone else is served meanwhile.
    other = Session(loop, server)
    other.sock.sendall(other.sealed(rpc.req_lookup(50, rpc.ROOT_FH, "hello.txt")))
    (reply,) = _pump(loop, {other: 1})[other]
    assert rpc.REP_HEAD.unpack_from(reply) == (50, rpc.OK)
    stats = server.stats()
    assert stats["reading_paused"] == 1 and stats["read_pauses"] == 1
    assert stats["max_unsent_bytes"] == hog.conn.peak_unsent
    # The hog reads at last: it gets every reply, in order, with the right bytes, and is read again.
    replies = _pump(loop, {hog: xid - 1})[hog]
    for want_xid, reply in zip(range(2, xid + 1), replies):
        got_xid, status, _eof = rpc.READ_REPLY_HEAD.unpack_from(reply)
        assert (got_xid, status) == (want_xid, rpc.OK)
        off = offsets[want_xid]
        assert reply[rpc.READ_REPLY_HEAD.size:] == big[off:off + count]
    assert not hog.conn.reading_paused and not hog.conn.closing and hog.conn.unsent == 0
    assert hog.conn.peak_unsent <= bound


class FailingListener:
    """The server's listening socket, with accept() failing as it does at the fd limit."""

    def __init__(self, real: socket.socket, loop: FakeLoop) -> None:
        self.real, self.loop = real, loop
        self.fail = True
        self.calls = []

    def fileno(self) -> int:
        return self.real.fileno()

    def getsockname(self):
        return self.real.getsockname()

    def accept(self):
        self.calls.append(self.loop.now)
        if self.fail:
            raise OSError(errno.EMFILE, "Too many open files")
        return self.real.accept()


def test_accept_out_of_fds_backs_off_instead_of_spinning(tmp_path, export, caplog):
    """Past the fd limit accept() fails with EMFILE and leaves the connection queued, so the
    listener stays readable: the server retried at once, at 100% CPU, logging every attempt.
    Now it stops watching the listener until a back-off timer fires, and logs once per back-off."""
    loop, server = make_server(tmp_path, export)
    listener = server._listener = FailingListener(server._listener, loop)
    waiting = socket.create_connection(listener.getsockname()[:2])    # the listener is readable
    with caplog.at_level(logging.ERROR, "sfs_like.server"):
        for _ in range(5):
            loop.poll()
        assert listener.calls == [loop.now]                    # one attempt, not one per poll
        assert listener.fileno() not in loop.readers
        loop.advance(server_mod.ACCEPT_BACKOFF / 2)
        loop.poll()
        assert len(listener.calls) == 1
        loop.advance(server_mod.ACCEPT_BACKOFF / 2)            # the back-off timer fires
        for _ in range(5):
            loop.poll()
        assert len(listener.calls) == 2                        # one more attempt, then quiet again
        assert listener.fileno() not in loop.readers
        failures = [r for r in caplog.records if "accept failed" in r.getMessage()]
        assert len(failures) == 2 and "not accepting for" in failures[0].getMessage()
    # Once fds are free again, the waiting connection is accepted and served.
    listener.fail = False
    loop.advance(server_mod.ACCEPT_BACKOFF)
    loop.poll()
    assert len(server.conns) == 1 and server.stats()["accept_pauses"] == 2
    waiting.settimeout(10)
    hs = ClientHandshake.start("sfs2003")
    waiting.sendall(frame(hs.hello))
    loop.poll()
    hs.finish(bytes(recv_frame(waiting)), server.fingerprint)
    waiting.close()


def test_idle_sessions_are_closed_active_ones_are_not(tmp_path, export, caplog):
    loop, server = make_server(tmp_path, export, idle_timeout=5)
    idle, active = Session(loop, server), Session(loop, server)
    with caplog.at_level(logging.INFO, "sfs_like.server"):
        for xid in range(1, 7):                       # 12 s; the active one asks every 2 s
            loop.advance(2.0)
            active.sock.sendall(active.sealed(rpc.req_getattr(xid, rpc.ROOT_FH)))
            (reply,) = _pump(loop, {active: 1})[active]
            assert rpc.REP_HEAD.unpack_from(reply) == (xid, rpc.OK)
            assert idle.conn.closing == (loop.now - idle.conn.accepted_at > 5)
    assert idle.sock.recv(100) == b""                 # closed by the server
    assert not active.conn.closing
    assert "idle: nothing received or sent for 5 s" in caplog.text
    assert caplog.text.count("closing:") == 1


def test_half_close_still_gets_every_reply_then_the_close(tmp_path, export, caplog):
    """Requests, then shutdown(SHUT_WR): the EOF was taken for a full close, and with the replies
    still on their way through the file layer they were dropped. Now they are sent, then the close.
    The order is forced: the server reads the requests and the EOF before running anything else."""
    loop, server = make_server(tmp_path, export)
    s = Session(loop, server)
    s.sock.sendall(s.sealed(rpc.req_lookup(1, rpc.ROOT_FH, "hello.txt")) +
                   s.sealed(rpc.req_getattr(2, rpc.ROOT_FH)) + s.sealed(rpc.req_stats(3)))
    s.sock.shutdown(socket.SHUT_WR)
    readable, args = loop.readers[s.conn.fd]
    readable(*args)                        # the requests
    readable(*args)                        # the EOF
    with caplog.at_level(logging.INFO, "sfs_like.server"):
        loop.run_ready()
    replies = sorted((s.reply() for _ in range(3)), key=lambda r: rpc.REP_HEAD.unpack_from(r)[0])
    # (STATS, answered by the crypto layer, may overtake the others: PROTOCOL.md)
    assert [rpc.REP_HEAD.unpack_from(r) for r in replies] == [(1, rpc.OK), (2, rpc.OK), (3, rpc.OK)]
    assert rpc.Attr.unpack(replies[0], 13).size == len(b"hello, world\n")
    assert s.sock.recv(100) == b""         # and then the server closes
    assert s.conn.id not in server.conns
    assert "closing: peer closed the connection" in caplog.text


def test_a_writer_run_left_over_from_a_closed_connection_leaves_the_fd_alone(tmp_path, export):
    # A writer callback dispatched just before its connection closed runs after the socket is
    # gone; its fd number may already belong to a new connection, whose writer must survive.
    loop, server = make_server(tmp_path, export)
    old = Session(loop, server)
    server._request_close(old.conn, "test", quiet=True)
    loop.run_ready()                                   # closing: sending side, then the socket
    assert old.conn.send_closed and old.conn.id not in server.conns
    new_fd = old.conn.fd                               # as if a new connection got that number

    def new_writer():
        pass
    loop.writers[new_fd] = (new_writer, ())
    server._flush(old.conn)
    assert loop.writers[new_fd] == (new_writer, ())


def test_a_slow_but_steady_reader_is_not_closed_as_idle(tmp_path, export):
    # Replies fill the socket and the client reads them slowly: no byte is handed to the kernel
    # for longer than the idle timeout, but the kernel's queue shrinks, so the session lives.
    # Once the client stops reading altogether, it is idle and closed.
    (export / "big.bin").write_bytes(os.urandom(1 << 20))
    loop, server = make_server(tmp_path, export, idle_timeout=5)
    reader = Session(loop, server)
    reader.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 512 * 1024)
    reader.sock.sendall(reader.sealed(rpc.req_lookup(1, rpc.ROOT_FH, "big.bin")))
    (reply,) = _pump(loop, {reader: 1})[reader]
    fh = rpc.FH.unpack_from(reply, rpc.REP_HEAD.size)[0]
    reader.sock.sendall(b"".join(reader.sealed(rpc.req_read(2 + i, fh, (i % 4) << 18, 1 << 18))
                                 for i in range(8)))
    for _ in range(50):
        loop.poll()                                     # the replies fill the socket
    assert reader.conn.outq, "the replies should not all fit in the socket"
    for _ in range(4):                                  # 12 s, reading a little every 3 s
        loop.advance(3.0)
        assert not reader.conn.closing
        assert len(reader.sock.recv(64 * 1024)) > 0
    for _ in range(3):                                  # 9 s without reading a byte: the last
        loop.advance(3.0)                               # read is seen 3 s late, then 5 s idle
    assert reader.conn.closing


def test_64_pipelined_requests_are_answered_the_65th_closes_the_connection(tmp_path, export, caplog):
    """PROTOCOL.md: at most 64 requests unanswered, more closes the connection. The client's hello
    was counted as one of them, so 64 pipelined requests were cut off (`loadgen --depth 64`
    always failed). Each burst is read in one recv, before any of it is answered."""
    loop, server = make_server(tmp_path, export)
    limit = rpc.MAX_OUTSTANDING

    def burst(s: Session, first_xid: int, n: int) -> None:
        s.sock.sendall(b"".join(s.sealed(rpc.req_getattr(xid, rpc.ROOT_FH))
                                for xid in range(first_xid, first_xid + n)))
        readable, args = loop.readers[s.conn.fd]
        readable(*args)                            # all n frames, nothing answered yet

    full = Session(loop, server)
    for first in (1, 1 + limit):                   # twice: it counts unanswered requests only
        burst(full, first, limit)
        assert not full.conn.closing, caplog.text
        replies = _pump(loop, {full: limit})[full]
        assert [rpc.REP_HEAD.unpack_from(r) for r in replies] == [
            (xid, rpc.OK) for xid in range(first, first + limit)]

    over = Session(loop, server)
    with caplog.at_level(logging.WARNING, "sfs_like.server"):
        burst(over, 1, limit + 1)
    assert over.conn.closing
    assert f"closing: more than {limit} requests outstanding" in caplog.text
    loop.run_ready()
    assert over.sock.recv(1 << 20) == b""          # closed, none of the requests answered

    other = Session(loop, server)                  # everyone else is still served
    other.sock.sendall(other.sealed(rpc.req_getattr(7, rpc.ROOT_FH)))
    (reply,) = _pump(loop, {other: 1})[other]
    assert rpc.REP_HEAD.unpack_from(reply) == (7, rpc.OK)
    burst(full, 200, 1)
    (reply,) = _pump(loop, {full: 1})[full]
    assert rpc.REP_HEAD.unpack_from(reply) == (200, rpc.OK)


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_a_forged_frame_is_logged_as_a_bad_mac_in_either_suite(tmp_path, export, caplog, suite):
    """PROTOCOL.md: a frame whose MAC fails closes the connection and the server logs `bad MAC on
    frame <seq>`. The modern suite logged `bad tag on frame <seq>` (its MAC is the Poly1305 tag)."""
    loop, server = make_server(tmp_path, export)
    s = Session(loop, server, suite)
    s.sock.sendall(s.sealed(rpc.req_getattr(1, rpc.ROOT_FH)))
    (reply,) = _pump(loop, {s: 1})[s]
    forged = bytearray(s.sealed(rpc.req_getattr(2, rpc.ROOT_FH)))
    forged[-1] ^= 0x40
    s.sock.sendall(forged)
    with caplog.at_level(logging.WARNING, "sfs_like.server"):
        loop.poll()
    assert s.conn.closing
    assert "closing: bad MAC on frame 1 (forged, replayed or reordered)" in caplog.text


def test_a_peer_gone_before_its_reply_is_sent_is_logged_as_leaving(tmp_path, export, caplog):
    """The send of a reply can be the first to see that the client left (reset, or gone: EPIPE),
    before the network color's recv does; that was a WARNING 'send failed', and made the reset
    test in test_bad_input.py fail now and then."""
    loop, server = make_server(tmp_path, export)
    s = Session(loop, server)
    s.sock.sendall(s.sealed(rpc.req_getattr(1, rpc.ROOT_FH)))
    s.sock.close()                                 # gone before its reply
    with caplog.at_level(logging.INFO, logger="sfs_like.server"):
        for _ in range(20):
            loop.poll()
    assert s.conn.closing, caplog.text
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not warnings, caplog.text
    assert "peer closed the connection" in caplog.text


def test_start_up_removes_stale_uploads_and_nothing_else(tmp_path, export, caplog):
    """A server killed mid-put left its `.sfs-upload.*` file, an ordinary file after a restart.
    Start-up removes the regular files so named anywhere in the export; it follows no symlink
    and leaves every other name, and every file that is not regular, alone."""
    upload = ".sfs-upload.0123456789abcdef"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / upload).write_bytes(b"not the server's")
    (export / "a" / "b").mkdir(parents=True)
    for stale in (export / upload, export / "a" / "b" / upload):
        stale.write_bytes(b"half an upload")
    (export / "out").symlink_to(outside)                            # a directory outside
    (export / "a" / upload).symlink_to(outside / upload)            # a symlink of that name
    (export / "a" / "b" / ".sfs-upload.fedcba9876543210").mkdir()   # a directory of that name
    os.mkfifo(export / ".sfs-upload.00000000ffffffff")              # a FIFO of that name
    kept = {"hello.txt", ".sfs-upload.0123", ".sfs-upload.0123456789ABCDEF", "x" + upload,
            upload + ".bak"}
    for name in kept - {"hello.txt"}:
        (export / name).write_bytes(b"a user's")
    with caplog.at_level(logging.INFO, "sfs_like.server"):
        make_server(tmp_path, export)
    assert [r.getMessage() for r in caplog.records if "stale uploads" in r.getMessage()] == [
        "stale uploads (.sfs-upload.*, left by a server killed mid-put) removed from the export: 2"]
    assert {p.name for p in export.iterdir()} == kept | {"a", "out", ".sfs-upload.00000000ffffffff"}
    assert sorted(p.name for p in (export / "a").iterdir()) == [upload, "b"]
    assert os.listdir(export / "a" / "b") == [".sfs-upload.fedcba9876543210"]
    assert (outside / upload).read_bytes() == b"not the server's"


def _layer_in_a_child(export, *, stay: bool) -> subprocess.Popen:
    """A process with a FileLayer on `export` that prints what its start-up sweep removed, then
    runs until its stdin closes (`stay`) or exits."""
    code = ("import sys; from apps.sfs_like.filelayer import FileLayer; "
            "print(FileLayer(sys.argv[1]).remove_stale_uploads(), flush=True)"
            + ("; sys.stdin.read()" if stay else ""))
    return subprocess.Popen([sys.executable, "-c", code, str(export)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def test_start_up_leaves_the_uploads_alone_while_another_server_serves_the_export(export):
    """The benchmark runs several servers on one export. A server starting while another runs
    must not remove that one's uploads in progress: it sweeps only when no other server holds
    the export, which a server does until its process ends, however it ends (here: SIGKILL)."""
    running = _layer_in_a_child(export, stay=True)
    try:
        assert running.stdout.readline() == "0\n"          # it started alone: it swept
        in_progress = export / ".sfs-upload.0123456789abcdef"
        in_progress.write_bytes(b"the running server's upload")
        assert _layer_in_a_child(export, stay=False).communicate(timeout=30)[0] == "None\n"
        assert in_progress.exists()
    finally:
        running.kill()
        running.wait()
    assert _layer_in_a_child(export, stay=False).communicate(timeout=30)[0] == "1\n"
    assert not in_progress.exists()


def test_connections_that_send_no_hello_give_their_place_to_new_ones(tmp_path, export):
    """A client that opens connections up to --max-connections and never sends a hello had
    every new client refused 'server full' for as long as it reopened them (each lasts the frame
    timeout). At the limit the oldest connection without a hello is closed for the new one; a
    limit reached by sessions still refuses."""
    loop, server = make_server(tmp_path, export, max_connections=2)
    address = server._listener.getsockname()[:2]
    silent = [socket.create_connection(address) for _ in range(2)]
    loop.poll()
    assert len(server.conns) == 2
    fresh = socket.create_connection(address)
    fresh.settimeout(10)
    hs = ClientHandshake.start("sfs2003")
    fresh.sendall(frame(hs.hello))
    for _ in range(4):
        loop.poll()
    hs.finish(bytes(recv_frame(fresh)), server.fingerprint)       # served: no refusal
    silent[0].settimeout(10)
    assert silent[0].recv(100) == b""                             # the oldest was closed
    assert server.stats()["evicted_connections"] == 1
    # Now both places hold connections that sent a hello: the next one is refused as before.
    hs2 = ClientHandshake.start("sfs2003")
    silent[1].sendall(frame(hs2.hello))
    loop.poll()
    loop.poll()
    third = socket.create_connection(address)
    third.settimeout(10)
    loop.poll()
    assert b"server full: 2 connections open" in bytes(recv_frame(third))
    for sock in (*silent, fresh, third):
        sock.close()
