"""Bad input of every kind gets a clear error, or a closed connection plus a log line, and the server
keeps serving everyone else: each test checks an already-open session and a new one afterwards."""
from __future__ import annotations

import os
import socket
import threading

import pytest

from apps.sfs_like import rpc
from apps.sfs_like.client import Client, ProtocolError, recv_exact, recv_frame
from apps.sfs_like.framing import (HEADER_SIZE, LENGTH, MAX_FRAME, MAX_HANDSHAKE_FRAME, MAX_IO,
                                   frame)
from apps.sfs_like.handshake import MAGIC, FingerprintMismatch, HandshakeError
from apps.sfs_like.keys import ServerAddress

FRAME_TIMEOUT = 1.0


@pytest.fixture
def server(start_server, export, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"top secret")
    (export / "leak").symlink_to(outside / "secret")
    (export / "leakdir").symlink_to(outside)
    (export / "alias").symlink_to(export / "hello.txt")
    return start_server(export, colors="on", workers=2,
                        extra=("--frame-timeout", str(FRAME_TIMEOUT), "--suite", "sfs2003"))


@pytest.fixture
def bystander(server):
    """A session opened before the bad input: it must keep working afterwards."""
    with Client(server.address) as c:
        assert c.get("hello.txt") == b"hello, world\n"
        yield c
        assert c.get("sub/inner.bin") == bytes(range(256)) * 10
        with Client(server.address) as fresh:
            assert fresh.get("hello.txt") == b"hello, world\n"
        assert server.alive()


def _connect(server) -> socket.socket:
    a = ServerAddress.parse(server.address)
    s = socket.create_connection((a.host, a.port), timeout=10 * FRAME_TIMEOUT)
    return s


def _wait_closed(sock: socket.socket) -> None:
    """Read until the server closes (EOF); the server logs its reason before it closes."""
    while True:
        try:
            if not sock.recv(65536):
                return
        except ConnectionResetError:
            return


def _assert_closed_with(server, sock, reason: str) -> None:
    _wait_closed(sock)
    sock.close()
    assert reason in server.log(), server.log()


@pytest.mark.parametrize("name, status, text", [
    ("..", rpc.INVAL, "'..' is refused"),
    ("/etc/passwd", rpc.INVAL, "not one path component"),
    ("leak", rpc.ACCES, "symlink leading out of the export"),
    ("leakdir", rpc.ACCES, "symlink leading out of the export"),
])
def test_names_that_leave_the_export_get_error_replies(server, bystander, name, status, text):
    with Client(server.address) as c:
        for call in (lambda: c.lookup(rpc.ROOT_FH, name), lambda: c.create(rpc.ROOT_FH, name)):
            with pytest.raises(rpc.RpcError) as err:
                call()
            assert err.value.status == status and text in err.value.message
        assert c.get("alias") == b"hello, world\n"        # a symlink inside the export is fine
        assert c.get("hello.txt") == b"hello, world\n"    # and the session goes on


@pytest.mark.parametrize("size", [MAX_IO + 1, 263_100])
def test_a_write_over_the_limit_gets_an_error_reply_and_changes_nothing(server, bystander, export,
                                                                      size):
    """WRITE data is <= 256 KiB (PROTOCOL.md), as a READ count is; a larger WRITE still fits in a
    frame (MAX_FRAME has 1 KiB to spare) and was written, with status OK."""
    with Client(server.address) as c:
        fh = c.create(rpc.ROOT_FH, "w.bin")
        first = os.urandom(MAX_IO)
        assert c.write(fh, 0, first) == MAX_IO                   # the limit itself is fine
        with pytest.raises(rpc.RpcError) as err:      # past Client.write's own check, as a
            xid = c.next_xid()                         # client of one's own would send it
            c.call(xid, rpc.req_write_head(xid, fh, 0), b"x" * size)
        assert err.value.status == rpc.INVAL
        assert err.value.message == f"WRITE of {size} bytes, the limit is {MAX_IO}"
        assert (export / "w.bin").read_bytes() == first         # unchanged
        assert c.get("w.bin") == first                          # and the session goes on


def test_the_client_refuses_io_over_the_limit_before_sending(server, bystander, export):
    """Client.write sent a WRITE past 256 KiB for the server to refuse, and one past the frame
    limit failed in framing after its request number was taken. Both are refused at the call
    now, nothing is sent, and the session goes on."""
    with Client(server.address) as c:
        fh = c.create(rpc.ROOT_FH, "w.bin")
        reads_before = c.stats()["reads"]
        xid_before = c._xid
        for call, proc, n in [(lambda: c.write(fh, 0, b"x" * (MAX_IO + 1)), "WRITE", MAX_IO + 1),
                              (lambda: c.write(fh, 0, b"x" * (4 * MAX_IO)), "WRITE", 4 * MAX_IO),
                              (lambda: c.read(fh, 0, MAX_IO + 1), "READ", MAX_IO + 1),
                              (lambda: c.read(fh, 0, -1), "READ", -1)]:
            with pytest.raises(ValueError, match=f"^{proc} of {n} bytes: the protocol allows "
                                                 f"0..{MAX_IO} per request$"):
                call()
        assert c._xid == xid_before                    # no request was numbered, so none sent
        assert c.stats()["reads"] == reads_before
        assert c.write(fh, 0, b"fine") == 4
    assert (export / "w.bin").read_bytes() == b"fine"


@pytest.mark.parametrize("proc", ["LOOKUP", "STATS"])
def test_trailing_bytes_after_the_arguments_get_an_error_reply(server, bystander, proc):
    """A LOOKUP with bytes after the name succeeded, as did every procedure's arguments with
    bytes after them. Now: INVAL naming the procedure, and the connection is still usable.
    STATS is answered by the crypto layer, not the file layer: it is checked there."""
    with Client(server.address) as c:
        xid = c.next_xid()
        request = {"LOOKUP": rpc.req_lookup(xid, rpc.ROOT_FH, "hello.txt"),
                   "STATS": rpc.req_stats(xid)}[proc]
        with pytest.raises(rpc.RpcError) as err:
            c.call(xid, request + b"\0\0\0\0\0")
        assert err.value.status == rpc.INVAL
        assert err.value.message == f"malformed {proc} arguments: 5 trailing bytes"
        assert c.get("hello.txt") == b"hello, world\n"    # the session goes on
        assert c.stats()["connections"] >= 2


def test_symlink_escape_through_a_path(server, bystander):
    with Client(server.address) as c:
        with pytest.raises(rpc.RpcError) as err:
            c.get("leakdir/secret")
        assert err.value.status == rpc.ACCES


def test_garbage_before_handshake(server, bystander):
    s = _connect(server)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    _assert_closed_with(server, s, "framing violated")
    s = _connect(server)
    s.sendall(frame(b"NOTSFS!!" + os.urandom(40)))
    _assert_closed_with(server, s, "bad magic")


@pytest.mark.parametrize("first, says", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "first bytes b'GET '"),
    (LENGTH.pack(MAX_HANDSHAKE_FRAME + 1) + b"x" * 40, "257 bytes announced, the limit is 256"),
], ids=["http", "257"])
def test_a_first_frame_over_the_hello_limit_gets_a_refusal_before_the_close(server, bystander,
                                                                            first, says):
    """curl or a browser pointed at the port: told in one plaintext refusal frame what this port
    speaks, then closed (it was closed with nothing at all: curl said 'Empty reply')."""
    s = _connect(server)
    s.sendall(first)
    refusal = bytes(recv_frame(s, MAX_HANDSHAKE_FRAME))
    assert refusal.startswith(MAGIC + b"\x01"), refusal
    text = refusal[len(MAGIC) + 1:].decode()
    assert "not an SFS-like client hello" in text and says in text, text
    _assert_closed_with(server, s, "framing violated")


@pytest.mark.parametrize("hello, reason", [
    (b"NOTSFS!!" + bytes(40), "bad magic b'NOTSFS!!'"),
    (b"", "empty client hello"),
    (MAGIC + b"\x07sfs2003" + bytes(31), "malformed client hello"),      # (was refused already)
], ids=["bad-magic", "empty", "short"])
def test_a_malformed_hello_gets_the_documented_refusal_then_the_close(server, bystander, hello,
                                                                     reason):
    """PROTOCOL.md: a malformed hello is answered `SFSLIKE1 0x01 <reason>`, then closed. A hello
    with bad magic, or an empty one, was closed with no refusal at all."""
    s = _connect(server)
    s.sendall(frame(hello))
    refusal = bytes(recv_frame(s, MAX_HANDSHAKE_FRAME))
    assert refusal.startswith(MAGIC + b"\x01" + reason.encode()), refusal
    _assert_closed_with(server, s, f"handshake failed: {reason}")


def test_refused_suite_gets_a_reason(server, bystander):
    with pytest.raises(HandshakeError, match="suite 'modern' not offered"):
        Client(server.address, "modern")


def test_wrong_fingerprint_is_refused_by_the_client(server, bystander):
    host_port, fp = server.address.rsplit(":", 1)
    wrong = ("a" if fp[0] != "a" else "b") + fp[1:]
    with pytest.raises(FingerprintMismatch, match="pins"):
        Client(f"{host_port}:{wrong}")


def test_frame_over_the_maximum(server, bystander):
    c = Client(server.address)
    c.sock.sendall(LENGTH.pack(MAX_FRAME + 1) + b"x" * 100)
    _assert_closed_with(server, c.sock, f"the limit is {MAX_FRAME}")


def test_truncated_frame(server, bystander):
    c = Client(server.address)
    wire = b"".join(bytes(p) for p in c.channel.send.seal([rpc.req_getattr(1, rpc.ROOT_FH)]))
    c.sock.sendall(wire[:HEADER_SIZE + 5])
    c.sock.shutdown(socket.SHUT_WR)
    _assert_closed_with(server, c.sock, "truncated frame")


def test_forged_mac(server, bystander):
    c = Client(server.address)
    wire = bytearray(b"".join(bytes(p) for p in c.channel.send.seal([rpc.req_getattr(1, rpc.ROOT_FH)])))
    wire[-1] ^= 0x40
    c.sock.sendall(wire)
    _assert_closed_with(server, c.sock, "bad MAC on frame 0")


def test_replayed_frame(server, bystander):
    c = Client(server.address)
    wire = b"".join(bytes(p) for p in c.channel.send.seal([rpc.req_getattr(1, rpc.ROOT_FH)]))
    c.sock.sendall(wire)
    rpc.parse_reply(c.recv_reply(), 1)          # the original is answered
    c.sock.sendall(wire)                        # the copy is not
    _assert_closed_with(server, c.sock, "bad MAC on frame 1")


def test_reordered_frames(server, bystander):
    c = Client(server.address)
    first = b"".join(bytes(p) for p in c.channel.send.seal([rpc.req_getattr(1, rpc.ROOT_FH)]))
    second = b"".join(bytes(p) for p in c.channel.send.seal([rpc.req_getattr(2, rpc.ROOT_FH)]))
    c.sock.sendall(second + first)
    _assert_closed_with(server, c.sock, "bad MAC on frame 0")


def test_slow_client_that_never_finishes_a_frame(server, bystander):
    c = Client(server.address)
    c.sock.sendall(LENGTH.pack(100) + b"partial")
    silent = _connect(server)                   # and one that never even says hello
    # While both hang, the bystander is served (it is checked again on teardown).
    assert bystander.get("sub/inner.bin") == bytes(range(256)) * 10
    _assert_closed_with(server, c.sock, "slow client: frame unfinished")
    _assert_closed_with(server, silent, "no handshake within")


def test_client_detects_a_forged_reply(server, bystander):
    """A man in the middle flips one bit of the first reply after READY: the client must refuse it."""
    a = ServerAddress.parse(server.address)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def proxy():
        down, _ = listener.accept()
        up = socket.create_connection((a.host, a.port))
        def client_to_server():
            try:
                while data := down.recv(65536):
                    up.sendall(data)
            except OSError:
                pass
        threading.Thread(target=client_to_server, daemon=True).start()
        try:
            for n in range(3):                  # server hello, READY, first reply
                body = bytearray(recv_frame(up))
                if n == 2:
                    body[len(body) // 2] ^= 1
                down.sendall(LENGTH.pack(len(body)) + body)
        finally:
            down.close()
            up.close()

    t = threading.Thread(target=proxy, daemon=True)
    t.start()
    with Client(f"127.0.0.1:{port}:{a.fingerprint}") as c:
        with pytest.raises(ProtocolError, match="failed verification"):
            c.getattr(rpc.ROOT_FH)
    t.join(timeout=10)
    listener.close()


@pytest.mark.parametrize("call", ["write", "create", "read"])
def test_a_fifo_in_the_export_is_refused_and_blocks_nobody(server, bystander, export, call):
    """WRITE to (or CREATE of) a FIFO opened it for writing, which waits for a reader: the file
    layer, and with it every client, hung. It gets INVAL now, and everyone goes on."""
    os.mkfifo(export / "fifo")
    with Client(server.address, timeout=10 * FRAME_TIMEOUT) as c:
        fh, attr = c.lookup(rpc.ROOT_FH, "fifo")
        assert attr.type == rpc.FT_OTHER
        with pytest.raises(rpc.RpcError) as err:
            {"write": lambda: c.write(fh, 0, b"x"), "create": lambda: c.create(rpc.ROOT_FH, "fifo"),
             "read": lambda: c.read(fh, 0, 10)}[call]()
        assert err.value.status == rpc.INVAL
        assert err.value.message == f"{call.upper()} of a FIFO: not a regular file"
        assert bystander.get("hello.txt") == b"hello, world\n"
        assert c.get("hello.txt") == b"hello, world\n"


def test_connections_past_the_limit_are_told_the_server_is_full(start_server, export):
    srv = start_server(export, extra=("--max-connections", "2"))
    a, b = Client(srv.address), Client(srv.address)
    with pytest.raises(HandshakeError, match="server refused the session: server full: 2 connections open"):
        Client(srv.address)
    assert a.get("hello.txt") == b"hello, world\n"       # the two keep working
    a.close()
    while b.stats()["connections"] != 1:                 # until the server has closed a's end
        pass
    with Client(srv.address) as c:                       # a place is free again
        assert c.get("hello.txt") == b"hello, world\n"
    assert b.stats()["refused_connections"] == 1
    b.close()
    assert "refusing new ones" in srv.log()


def test_idle_session_is_closed_after_the_idle_timeout(start_server, export):
    srv = start_server(export, extra=("--idle-timeout", "1"))
    idle = Client(srv.address)
    idle.sock.settimeout(60)
    _assert_closed_with(srv, idle.sock, "idle: nothing received or sent for 1 s")
    with Client(srv.address) as c:
        assert c.get("hello.txt") == b"hello, world\n"


@pytest.mark.parametrize("src, dst, status", [
    ("..", "x", rpc.INVAL), ("hello.txt", "../x", rpc.INVAL), ("hello.txt", "/tmp/x", rpc.INVAL),
    ("leak", "x", rpc.ACCES), ("hello.txt", "leak", rpc.ACCES), ("hello.txt", "leakdir", rpc.ACCES),
])
def test_rename_with_names_that_leave_the_export_gets_error_replies(server, bystander, export, src,
                                                                   dst, status):
    with Client(server.address) as c:
        with pytest.raises(rpc.RpcError) as err:
            c.rename(rpc.ROOT_FH, src, rpc.ROOT_FH, dst)
        assert err.value.status == status
        assert c.get("hello.txt") == b"hello, world\n"    # nothing moved, the session goes on
    assert (export / "leak").is_symlink() and (export / "leakdir").is_symlink()


def test_a_client_that_resets_its_connection_is_logged_as_leaving_not_warned_about(server, bystander):
    """Every load-generator run ended with `WARNING ... recv failed: [Errno 104] Connection reset
    by peer` in the server's log: a client closing with replies unread resets the connection."""
    import struct
    import time
    c = Client(server.address)
    c.getattr(rpc.ROOT_FH)
    xid = c.next_xid()
    c.send_request(rpc.req_read(xid, rpc.ROOT_FH, 0, 1))    # a reply it will never read
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.sock.close()                                           # RST, not FIN
    deadline = time.monotonic() + 10
    while "peer reset the connection" not in server.log():
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.02)                                     # polling a log file, not synchronising
    line = next(l for l in server.log().splitlines() if "peer reset the connection" in l)
    assert " INFO " in line and "recv failed" not in server.log() and "send failed" not in server.log()


def test_every_refused_hello_is_counted_when_many_arrive_at_once(server, bystander):
    """STATS' rejected_handshakes counts every refusal, first frames over the hello limit
    included, by the time the refused peer sees the close. (Each hello is refused on its own
    connection's color; the server counts them all on the network color, since colors adding to
    one counter at once could lose counts, a race the GIL mostly hides from this test.)"""
    before = bystander.stats()["rejected_handshakes"]
    bad = [frame(b"NOTSFS!!" + bytes(40)), frame(b""), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]
    socks = [_connect(server) for _ in range(60)]
    for i, s in enumerate(socks):
        s.sendall(bad[i % len(bad)])
    for s in socks:
        _wait_closed(s)
        s.close()
    assert bystander.stats()["rejected_handshakes"] - before == len(socks)


@pytest.mark.parametrize("request_", [b"\0\0\0\7", b"\0\0", b""], ids=["xid-only", "2-bytes", "empty"])
def test_a_request_shorter_than_its_header_leaves_the_session_in_step(server, bystander, request_):
    """Client.send_request sealed the request, then failed (IndexError) naming it for its
    timeout message: the sealed frame was never sent, its sequence number (and ARC4 stretch)
    was used up, and the server closed the session at the next request for a bad MAC. Found by
    test_fuzz_rpc. Now it is sent, answered INVAL with its xid (0 when it has none), and the
    session goes on."""
    with Client(server.address) as c:
        c.send_request(request_)
        xid = int.from_bytes(request_, "big") if len(request_) == 4 else 0
        with pytest.raises(rpc.RpcError) as err:
            rpc.parse_reply(c.recv_reply(), xid)
        assert err.value.status == rpc.INVAL and "shorter than its header" in err.value.message
        assert c.get("hello.txt") == b"hello, world\n"
    assert "bad MAC" not in server.log()
