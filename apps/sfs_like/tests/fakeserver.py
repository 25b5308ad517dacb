"""A hostile or broken SFS-like server for testing clients: it completes the real handshake (so
the client trusts it), then answers each request as the test says, however wrongly.

`FakeServer(answers)`: `answers` maps a procedure number to `answer(xid, args)`, which returns
the reply's plaintext (sealed here, as a real server would), `Raw(bytes)` to send bytes as they
are (a bad length prefix, a torn frame, a forged MAC), `Trickle(plaintext)` to seal it and send
it one byte every TRICKLE seconds, None to close the connection, or a list of these to do in
turn. `server.stall` is an answer that never comes (`server.stalled` is set meanwhile).
`FakeServer(trickle_handshake=True)` sends its side of the handshake a byte at a time too;
`server.trickled` is set once any trickle has sent its last byte. `FakeServer(read_slowly=True)`
reads requests 4 KiB every TRICKLE seconds, through a small receive buffer. Procedures not in `answers` get `honest`'s replies about one file, DATA, so a test
changes only the reply it attacks.
"""
from __future__ import annotations

import socket
import threading

from apps.sfs_like import rpc
from apps.sfs_like._crypto_import import X25519PrivateKey
from apps.sfs_like.client import recv_frame
from apps.sfs_like.framing import frame
from apps.sfs_like.handshake import READY, server_respond
from apps.sfs_like.keys import fingerprint

DATA = b"0123456789"
SIZE = len(DATA)
FILE = rpc.Attr(rpc.FT_FILE, 0o644, SIZE, 0)


TRICKLE = 0.1      # seconds between two bytes of a trickled reply


class Raw(bytes):
    """Bytes to put on the wire unsealed."""


class Trickle(bytes):
    """A reply's plaintext, to be sealed and sent one byte every TRICKLE seconds."""


def ok(xid: int, results: bytes = b"") -> bytes:
    return rpc.REP_HEAD.pack(xid, rpc.OK) + results


def _read(xid: int, args) -> bytes:
    _, offset, count = rpc.READ_ARGS.unpack(args)
    data = DATA[offset:offset + count]
    return ok(xid, bytes([offset + len(data) >= SIZE]) + data)


honest = {
    rpc.LOOKUP: lambda xid, args: ok(xid, rpc.FH.pack(2) + FILE.pack()),
    rpc.GETATTR: lambda xid, args: ok(xid, FILE.pack()),
    rpc.READ: _read,
    rpc.READDIR: lambda xid, args: ok(xid, rpc.pack_entries([("f", rpc.FT_FILE)], True, 1)),
    rpc.CREATE_TEMP: lambda xid, args: ok(xid, rpc.FH.pack(3) + FILE.pack() + rpc.pack_name(".t")),
    rpc.WRITE: lambda xid, args: ok(xid, rpc.U32.pack(len(args) - rpc.WRITE_HEAD.size) + FILE.pack()),
    rpc.REMOVE: lambda xid, args: ok(xid),
    rpc.RENAME: lambda xid, args: ok(xid),
}


class _SlowReader:
    """A socket's recv_into, 4 KiB every TRICKLE seconds at most."""

    def __init__(self, sock: socket.socket, stopping: threading.Event) -> None:
        self.sock, self.stopping = sock, stopping

    def recv_into(self, view, n: int) -> int:
        if self.stopping.wait(TRICKLE):
            raise ConnectionAbortedError("the test is over")
        return self.sock.recv_into(view, min(n, 4096))


class FakeServer:
    def __init__(self, answers: dict | None = None, suite: str = "sfs2003",
                 trickle_handshake: bool = False, read_slowly: bool = False) -> None:
        self.answers = {**honest, **(answers or {})}
        self.suite = suite
        self.trickle_handshake = trickle_handshake
        self.trickled = threading.Event()      # a trickle sent its last byte
        self.read_slowly = read_slowly
        self.key = X25519PrivateKey.generate()
        self.public = self.key.public_key().public_bytes_raw()
        self.listener = socket.socket()
        if read_slowly:                        # inherited by the accepted sockets
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}:{fingerprint(self.public)}"
        self.stopping = threading.Event()
        self.stalled = threading.Event()       # a request is being stalled
        self.requests: list[int] = []          # the procedures asked for, in order
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:                    # closed
                return
            threading.Thread(target=self._session, args=(sock,), daemon=True).start()

    def _session(self, sock: socket.socket) -> None:
        with sock:
            try:
                hello, channel, transcript = server_respond(self.key, self.public,
                                                            bytes(recv_frame(sock)), {self.suite})
                ours = frame(hello) + b"".join(channel.send.seal([READY + transcript]))
                if self.trickle_handshake:
                    self._trickle(sock, ours)
                else:
                    sock.sendall(ours)
                reader = _SlowReader(sock, self.stopping) if self.read_slowly else sock
                while True:
                    request = channel.recv.open(bytes(recv_frame(reader)))
                    xid, proc = rpc.REQ_HEAD.unpack_from(request)
                    self.requests.append(proc)
                    replies = self.answers[proc](xid, request[rpc.REQ_HEAD.size:])
                    for reply in replies if isinstance(replies, list) else [replies]:
                        if reply is None:
                            return
                        if isinstance(reply, Raw):
                            sock.sendall(reply)
                        elif isinstance(reply, Trickle):
                            self._trickle(sock, b"".join(channel.send.seal([bytes(reply)])))
                        else:
                            sock.sendall(b"".join(channel.send.seal([reply])))
            except Exception:                  # the client left, or gave up on us
                return

    def _trickle(self, sock: socket.socket, wire: bytes) -> None:
        """Send `wire` a byte every TRICKLE seconds (each well within any client timeout of a
        second or more); stop when the test ends."""
        for i in range(len(wire)):
            if self.stopping.wait(TRICKLE):
                raise ConnectionAbortedError("the test is over")
            sock.sendall(wire[i:i + 1])
        self.trickled.set()

    def stall(self, xid: int, args) -> None:
        """An answer that waits for the test to end, then closes the connection."""
        self.stalled.set()
        self.stopping.wait()

    def close(self) -> None:
        self.stopping.set()
        self.listener.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

