"""Client library and CLI: pins the server's fingerprint and verifies every reply's MAC.

    python -m apps.sfs_like.client HOST:PORT:FINGERPRINT ls [DIR | FILE]
    python -m apps.sfs_like.client HOST:PORT:FINGERPRINT cat FILE
    python -m apps.sfs_like.client HOST:PORT:FINGERPRINT get FILE [LOCAL]
    python -m apps.sfs_like.client HOST:PORT:FINGERPRINT put LOCAL [FILE]
    python -m apps.sfs_like.client HOST:PORT:FINGERPRINT rm FILE

Paths are relative to the export; '/' separates components, one LOOKUP each. The client does not
sanitise '..' itself: the server must refuse it, and the tests check that it does.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import stat
import struct
import sys
import time

from . import rpc
from .framing import HEADER_SIZE, LENGTH, MAX_FRAME, MAX_IO, FrameError, frame
from .handshake import READY, ClientHandshake, HandshakeError
from .keys import ServerAddress
from .rpc import ProtocolError
from .suites import AuthError

DEFAULT_BLOCK = 64 * 1024


def _check_io_size(proc: str, n: int) -> None:
    """Refuse what the server would refuse (INVAL) before it costs a frame on the wire; a WRITE
    past the frame limit would otherwise fail in framing, after the request had been numbered."""
    if not 0 <= n <= MAX_IO:
        raise ValueError(f"{proc} of {n} bytes: the protocol allows 0..{MAX_IO} per request")


def _fh_and_attr(body) -> tuple[int, rpc.Attr]:
    """The results of LOOKUP and CREATE (and the start of CREATE_TEMP's)."""
    return rpc.FH.unpack_from(body, 0)[0], rpc.Attr.unpack(body, rpc.FH.size)


class ServerTimeout(TimeoutError):
    """The server did not finish something within the client's timeout: its message says what
    (nothing at all, or only part of a reply or of the handshake) and how long."""


class _Deadline:
    """One timeout for a whole exchange (a request sent and its reply received in full, or the
    connect and the handshake), not for each recv: a server trickling a byte just inside each
    recv's timeout held a `get` for ever. Every socket call on the way is given what is left."""

    def __init__(self, sock: socket.socket | None, timeout: float | None, what: str) -> None:
        self.sock, self.timeout, self.what = sock, timeout, what
        self.end = None if timeout is None else time.monotonic() + timeout
        self.received = 0           # bytes of the answer received so far

    def left(self) -> float | None:
        """Seconds left (None: no timeout); ServerTimeout once none are."""
        if self.end is None:
            return None
        left = self.end - time.monotonic()
        if left <= 0:
            raise self.expired()
        return left

    def arm(self) -> None:
        """Give the socket's next call what is left of the deadline."""
        if self.end is not None:
            self.sock.settimeout(self.left())

    def expired(self, sent: int | None = None, total: int = 0) -> ServerTimeout:
        limit = f"{self.timeout:g} s (--timeout)"
        if sent is not None:
            return ServerTimeout(f"the server took in only {sent} of the {total} bytes of {self.what} "
                                 f"in {limit}")
        if not self.received:
            return ServerTimeout(f"the server sent nothing for {limit}")
        return ServerTimeout(f"the server sent only {self.received} bytes of {self.what} in {limit}")


class StdoutClosed(Exception):
    """Whoever reads our standard output stopped (`cat FILE | head`): not an error of ours."""


def recv_exact(sock: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ProtocolError(f"server closed the connection ({got} of {n} bytes received)")
        got += k
    return buf


def recv_frame(sock: socket.socket, limit: int = MAX_FRAME) -> bytearray:
    (length,) = LENGTH.unpack(recv_exact(sock, HEADER_SIZE))
    if length > limit:
        raise FrameError(f"server announced a {length}-byte frame, the limit is {limit}")
    return recv_exact(sock, length)


class Client:
    """One authenticated session. Not thread-safe: one request at a time, or pipelined by hand."""

    def __init__(self, address, suite: str = "sfs2003", timeout: float | None = 30.0) -> None:
        self.address = address if isinstance(address, ServerAddress) else ServerAddress.parse(address)
        self.suite = suite
        # `timeout` bounds each whole exchange: the connect and the handshake together, then
        # each request from its first byte sent to its reply's last byte received
        self.timeout = timeout
        deadline = _Deadline(None, timeout, "its handshake")
        try:
            self.sock = socket.create_connection((self.address.host, self.address.port),
                                                 timeout=timeout)
        except TimeoutError:    # not the server going quiet (main's TimeoutError): none answered
            raise ConnectionError(f"no server answered at {self.address.host}:{self.address.port} "
                                  f"within {timeout:g} s (--timeout)") from None
        deadline.sock = self.sock
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._xid = 0
        self._unanswered = 0      # requests sent whose replies were not read (an interrupted call)
        self._torn = False        # a frame half sent or half read: the stream is out of step
        try:
            self.channel = self._handshake(deadline)
            self.sock.settimeout(timeout)   # for whoever uses the socket itself (the load generator)
        except BaseException:
            self.sock.close()
            raise

    def _deadline(self, what: str) -> _Deadline:
        return _Deadline(self.sock, self.timeout, what)

    def _recv_exact(self, n: int, deadline: _Deadline) -> bytearray:
        """recv_exact within `deadline`: ServerTimeout, saying how much came, once it passes."""
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            deadline.arm()
            try:
                k = self.sock.recv_into(view[got:], n - got)
            except TimeoutError:
                raise deadline.expired() from None
            if k == 0:
                raise ProtocolError(f"server closed the connection ({got} of {n} bytes received)")
            got += k
            deadline.received += k
        return buf

    def _recv_frame(self, deadline: _Deadline) -> bytearray:
        (length,) = LENGTH.unpack(self._recv_exact(HEADER_SIZE, deadline))
        if length > MAX_FRAME:
            raise FrameError(f"server announced a {length}-byte frame, the limit is {MAX_FRAME}")
        return self._recv_exact(length, deadline)

    def _send_all(self, wire: list, deadline: _Deadline) -> None:
        """Send every byte of `wire` within `deadline`: with a timeout on the socket, sendmsg may
        send only a part of it (a large WRITE into a small send buffer); the rest follows."""
        total = sum(len(w) for w in wire)
        done = 0
        while wire:
            deadline.arm()
            try:
                sent = self.sock.sendmsg(wire)
            except TimeoutError:
                raise deadline.expired(sent=done, total=total) from None
            done += sent
            while wire and sent >= len(wire[0]):
                sent -= len(wire[0])
                wire.pop(0)
            if wire and sent:
                wire[0] = wire[0][sent:]

    def _handshake(self, deadline: _Deadline):
        hs = ClientHandshake.start(self.suite)
        self._send_all([memoryview(frame(hs.hello))], deadline)
        channel, transcript = hs.finish(self._server_hello(deadline), self.address.fingerprint)
        try:
            ready = channel.recv.open(bytes(self._recv_frame(deadline)))
        except AuthError as exc:
            raise HandshakeError(f"server could not prove it holds the pinned key: {exc}") from None
        if ready != READY + transcript:
            raise HandshakeError("server's READY does not match this session's transcript")
        return channel

    def _server_hello(self, deadline: _Deadline) -> bytes:
        """The server's first frame. A length beyond the limit means the peer is something else
        (an HTTP server answers "HTTP/1.1 400...", read as a 1.2 GB length): say so."""
        head = bytes(self._recv_exact(HEADER_SIZE, deadline))
        (length,) = LENGTH.unpack(head)
        if length > MAX_FRAME:
            what = " (an HTTP server?)" if head.startswith(b"HTTP") else ""
            raise HandshakeError(f"{self.address.host}:{self.address.port} does not speak the "
                                 f"SFS-like protocol{what}: its first bytes are {head!r}")
        return bytes(self._recv_exact(length, deadline))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- framing of requests and replies

    def next_xid(self) -> int:
        self._xid = (self._xid + 1) & 0xFFFFFFFF
        return self._xid

    def send_request(self, *parts, deadline: _Deadline | None = None) -> None:
        """Send one sealed frame, all of it, within `deadline` (by default the timeout from
        now): a part sent is followed by the rest, not dropped."""
        # everything that can fail comes before the seal: sealing takes the frame's sequence
        # number (and, in sfs2003, its stretch of the ARC4 stream), so a frame sealed and then
        # not sent put every later one out of step, and the server closed the session at the
        # next for a bad MAC (a request shorter than its header raised IndexError here)
        deadline = deadline or self._deadline(self._what(parts[0]))
        wire = [memoryview(p).cast("B") for p in self.channel.send.seal(list(parts))]
        self._torn = True
        self._send_all(wire, deadline)
        self._torn = False
        self._unanswered += 1

    @staticmethod
    def _what(request) -> str:
        """'the READ request', for a timeout's message."""
        head = bytes(request[:rpc.REQ_HEAD.size])
        proc = rpc.PROC_NAMES.get(head[-1], "a") if len(head) == rpc.REQ_HEAD.size else "a"
        return f"the {proc} request"

    def settle(self) -> None:
        """Read and drop the replies to requests whose call was interrupted (a signal between
        sending a WRITE and reading its reply), so the next reply read is the next call's.
        ProtocolError if a frame was cut in half: then only a new connection is in step."""
        if self._torn:
            raise ProtocolError("a frame was interrupted half way: this connection is out of step")
        while self._unanswered:
            self.recv_reply()

    def recv_reply(self, deadline: _Deadline | None = None) -> bytes:
        """The next reply, opened; all of it must come within `deadline` (by default the
        timeout from now)."""
        self._torn = True
        body = self._recv_frame(deadline or self._deadline("a reply"))
        self._torn = False
        self._unanswered = max(0, self._unanswered - 1)
        try:
            return self.channel.recv.open(bytes(body))
        except AuthError as exc:
            raise ProtocolError(f"reply failed verification: {exc}") from None

    def call(self, xid: int, *parts, parse=memoryview):
        """Send a request and return `parse(the results of its reply)`. Results that do not fit
        their layout (cut short, a count running past the end, a name that is not UTF-8) are the
        server breaking the protocol: ProtocolError, not a struct.error from deep inside."""
        proc = rpc.PROC_NAMES.get(parts[0][rpc.REQ_HEAD.size - 1], "?")
        deadline = self._deadline(f"the {proc} request")    # for the request and its reply
        self.send_request(*parts, deadline=deadline)
        deadline.what = f"its reply to {proc}"
        results = rpc.parse_reply(self.recv_reply(deadline), xid)
        try:
            return parse(results)
        except (struct.error, IndexError, ValueError, rpc.MalformedRequest) as exc:
            raise ProtocolError(f"malformed {proc} reply: {getattr(exc, 'message', exc)}") from None

    # ---- procedures

    def lookup(self, dir_fh: int, name: str) -> tuple[int, rpc.Attr]:
        xid = self.next_xid()
        return self.call(xid, rpc.req_lookup(xid, dir_fh, name), parse=_fh_and_attr)

    def getattr(self, fh: int) -> rpc.Attr:
        xid = self.next_xid()
        return self.call(xid, rpc.req_getattr(xid, fh), parse=rpc.Attr.unpack)

    def readdir(self, fh: int) -> list[tuple[str, int]]:
        """Every entry, one READDIR after another. A reply without EOF must move the cookie on
        (PROTOCOL.md): one that did not had this loop ask for the same entries forever."""
        entries, cookie = [], 0
        while True:
            xid = self.next_xid()
            chunk, eof, after = self.call(xid, rpc.req_readdir(xid, fh, cookie),
                                          parse=rpc.unpack_entries)
            entries.extend(chunk)
            if eof:
                return entries
            if after <= cookie:
                raise ProtocolError(f"READDIR from cookie {cookie} goes on from {after}, not further")
            cookie = after

    def read(self, fh: int, offset: int, count: int) -> tuple[bytes, bool]:
        _check_io_size("READ", count)
        xid = self.next_xid()
        data, eof = self.call(xid, rpc.req_read(xid, fh, offset, count),
                              parse=lambda body: (bytes(body[1:]), body[0] == 1))
        if len(data) > count:
            raise ProtocolError(f"READ of {count} bytes at {offset} returned {len(data)}")
        return data, eof

    def write(self, fh: int, offset: int, data: bytes) -> int:
        _check_io_size("WRITE", len(data))
        xid = self.next_xid()
        count = self.call(xid, rpc.req_write_head(xid, fh, offset), data,
                          parse=lambda body: rpc.U32.unpack_from(body, 0)[0])
        if count != len(data):      # the server writes all or fails: a put must not lose the rest
            raise ProtocolError(f"WRITE of {len(data)} bytes at {offset}: the server says it wrote {count}")
        return count

    def create(self, dir_fh: int, name: str) -> int:
        xid = self.next_xid()
        return self.call(xid, rpc.req_create(xid, dir_fh, name), parse=_fh_and_attr)[0]

    def create_temp(self, dir_fh: int) -> tuple[int, str]:
        """A hidden file for an upload, removed by the server if this connection ends before it
        is RENAMEd into place: (fh, the name the server gave it)."""
        xid = self.next_xid()
        return self.call(xid, rpc.req_create_temp(xid, dir_fh), parse=lambda body: (
            _fh_and_attr(body)[0], rpc.unpack_name(body, rpc.FH.size + rpc.ATTR.size)[0]))

    def remove(self, dir_fh: int, name: str) -> None:
        xid = self.next_xid()
        self.call(xid, rpc.req_remove(xid, dir_fh, name))

    def rename(self, from_dir_fh: int, from_name: str, to_dir_fh: int, to_name: str) -> None:
        xid = self.next_xid()
        self.call(xid, rpc.req_rename(xid, from_dir_fh, from_name, to_dir_fh, to_name))

    def stats(self) -> dict:
        xid = self.next_xid()
        return self.call(xid, rpc.req_stats(xid), parse=lambda body: json.loads(bytes(body)))

    # ---- paths

    @staticmethod
    def split(path: str) -> list[str]:
        return [part for part in path.split("/") if part]

    def walk(self, path: str) -> int:
        fh = rpc.ROOT_FH
        for name in self.split(path):
            fh, _ = self.lookup(fh, name)
        return fh

    def parent_and_name(self, path: str) -> tuple[int, str]:
        parts = self.split(path)
        if not parts:
            raise rpc.RpcError(rpc.INVAL, "the export root has no name")
        fh = rpc.ROOT_FH
        for name in parts[:-1]:
            fh, _ = self.lookup(fh, name)
        return fh, parts[-1]

    def read_file(self, path: str, block: int = DEFAULT_BLOCK):
        """Yield the file's bytes in READ-sized pieces, until the server says EOF. A server that
        never says it would have this read forever, so data past the file's size is checked
        against GETATTR (asked only then: the file may have grown since) and is an error if the
        size does not cover it."""
        fh = self.walk(path)
        offset = size = 0
        while True:
            data, eof = self.read(fh, offset, block)
            offset += len(data)
            if data:
                yield data
            if eof:
                return
            if not data:
                raise ProtocolError(f"READ at {offset} returned nothing but no EOF")
            if offset > size:
                size = self.getattr(fh).size
                if offset > size:
                    raise ProtocolError(f"READs went on to byte {offset} without EOF, past the "
                                        f"file's size ({size} bytes by GETATTR)")

    def get(self, path: str, block: int = DEFAULT_BLOCK) -> bytes:
        return b"".join(self.read_file(path, block))

    def put(self, path: str, data: bytes, block: int = MAX_IO) -> None:
        """Write `data` to a temporary file in the same directory (CREATE_TEMP), then RENAME it
        over `path`: until the last step the old file is untouched, so a put that dies half way
        (killed, cut off) never leaves `path` truncated, and the server removes the temporary
        file when the connection ends. On other failures it removes the file itself at once."""
        if path.endswith("/"):
            raise ValueError(f"remote name {path!r} ends in '/': name the file to write "
                             "(e.g. DIR/NAME)")
        dir_fh, name = self.parent_and_name(path)
        fh, tmp = self.create_temp(dir_fh)
        try:
            view = memoryview(data)
            for offset in range(0, len(data), block):
                self.write(fh, offset, view[offset:offset + block])
            self.rename(dir_fh, tmp, dir_fh, name)
        except BaseException:
            self._remove_quietly(dir_fh, tmp)
            raise

    def _remove_quietly(self, dir_fh: int, name: str) -> None:
        """Cleanup after a failed put: REMOVE `name`, keeping the put's own error. The replies of
        an interrupted call are read first (else the REMOVE would read the WRITE's reply, fail
        on the xid and be lost); if this connection is out of step or gone, a new one does it
        (file handles are the server's, not the connection's)."""
        try:
            self.settle()
            self.remove(dir_fh, name)
            return
        except rpc.RpcError:    # the server answered this REMOVE (NOENT, ...): nothing to retry
            return
        except Exception:
            pass
        try:
            with Client(self.address, self.suite, timeout=min(self.timeout or 10.0, 10.0)) as fresh:
                fresh.remove(dir_fh, name)
        except Exception:       # the server may be what failed: keep the first error
            pass

    def listdir(self, path: str = "") -> list[tuple[str, int]]:
        return self.readdir(self.walk(path))

    def lookup_path(self, path: str) -> tuple[int, rpc.Attr | None]:
        """The handle of `path` and its attributes (None for the export root, which is named by
        no LOOKUP): as walk(), with the attributes the last LOOKUP returned at no extra cost."""
        fh, attr = rpc.ROOT_FH, None
        for name in self.split(path):
            fh, attr = self.lookup(fh, name)
        return fh, attr

    def rm(self, path: str) -> None:
        dir_fh, name = self.parent_and_name(path)
        self.remove(dir_fh, name)


def int_in(lo: int, hi: int, limit: str = ""):
    """An argparse type: a whole number in lo..hi, else a one-line usage error (not a traceback
    from deep inside, e.g. struct.error for a negative READ size)."""
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not lo <= n <= hi:
            raise argparse.ArgumentTypeError(f"must be {lo}..{hi}{limit}, not {n}")
        return n
    return parse


_TYPE_MARK = {rpc.FT_FILE: "", rpc.FT_DIR: "/", rpc.FT_SYMLINK: "@", rpc.FT_OTHER: "?"}


def _shown(name: str) -> str:
    """How `ls` prints a name: as it is, or, when it is not printable or holds a quote or a
    backslash, as a Python string literal, so that each line is one name ("a\nb" printed raw
    looked like two files) and no raw name can pass for a quoted one. So are names no file can
    have, which only a broken server sends: '', '.', '..' and any with a '/' ("d/" printed raw
    passed for a directory d, "a/b" for a path)."""
    if (name.isprintable() and not any(c in name for c in "'\"\\/")
            and name not in ("", ".", "..")):
        return name
    return repr(name)


def _ls_lines(c: Client, path: str):
    """What `ls PATH` prints, as ls does: a directory's entries, one a line; anything else (a
    file, a FIFO...) is one line for PATH itself, as typed, with its type's mark. Listing a file
    failed with NOTDIR. PATH ending in '/' must be a directory, as for ls."""
    fh, attr = c.lookup_path(path)
    if attr is None or attr.type == rpc.FT_DIR:
        entries = c.readdir(fh)
        return [f"{_shown(name)}{_TYPE_MARK.get(ftype, '?')}\n" for name, ftype in entries]
    if path.endswith("/"):
        raise rpc.RpcError(rpc.NOTDIR, f"{path!r} is not a directory")
    shown = "/".join(_shown(part) if part else part for part in path.split("/"))
    return [f"{shown}{_TYPE_MARK.get(attr.type, '?')}\n"]


def one_line(text: str, limit: int = 1000) -> str:
    """An error as one line of printable text, at most `limit` characters: the server chooses
    an error reply's message (and a refusal's reason), newlines and terminal escapes included,
    and it may be a whole frame long."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[:limit] + "..."


def _to_stdout(pieces) -> None:
    """Write `pieces` to standard output; StdoutClosed when its reader has gone away (EPIPE
    from a socket is the server's doing and stays an OSError)."""
    out = sys.stdout.buffer
    try:
        for piece in pieces:
            out.write(piece)
        out.flush()
    except BrokenPipeError:
        raise StdoutClosed() from None


def _stdout_gone() -> int:
    """Exit quietly once stdout's reader left, as Python's documentation recommends: point stdout
    at /dev/null so that the interpreter's own flush at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 1


def _exit_on_signal(signum, frame) -> None:
    """SIGTERM (and SIGHUP) unwind like an exception, so that a `get` in progress removes its
    `.part` file (and a `put` its remote temporary file) on the way out."""
    raise SystemExit(128 + signum)


def _local_target(remote: str, local: str | None) -> str:
    """Where `get REMOTE [LOCAL]` writes, as cp decides: LOCAL, or REMOTE's base name inside LOCAL
    when LOCAL is a directory (or in the current one when LOCAL is not given). LOCAL ending in '/'
    must be an existing directory: NotADirectoryError, before anything is downloaded. A base name
    of '', '.' or '..' (`get sub/..`) names a directory above or at LOCAL, not a file in it: the
    download went beside that directory (its temporary file outside LOCAL), so it is refused."""
    name = os.path.basename(remote.rstrip("/"))
    if local and not os.path.isdir(local):
        if local.endswith("/"):
            raise NotADirectoryError(f"{local!r}: no such directory")
        return local
    if name in ("", ".", ".."):
        where = repr(local) if local else "the current folder"
        raise ValueError(f"{remote!r} ends in no file name to save under in {where}: "
                         "give LOCAL as a file name")
    return os.path.join(local, name) if local else name


def _download(pieces, local: str) -> None:
    """Write `pieces` to `local` as cp would. A regular file (or a new name) is written to a
    temporary file beside it and renamed into place when every piece has come: a failed `get` (no
    such file, a forged MAC, a lost connection) leaves `local` as it was, never empty or half
    written. A symlink is followed: the temporary file and the rename happen at its target, so
    the link stays a link. Anything else that exists (a character device, a FIFO, a socket) is
    written straight into, never replaced: `get FILE /dev/null` must not remove /dev/null."""
    try:
        st = os.stat(local)                  # follows symlinks, /dev/stdout's included
    except FileNotFoundError:
        st = None
    if st is not None and not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        fd = os.open(local, os.O_WRONLY)     # a FIFO gets the stream; no temporary file
        with os.fdopen(fd, "wb") as f:
            for piece in pieces:
                f.write(piece)
        return
    folder, name = os.path.split(os.path.realpath(local))
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.part")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as to open()
    except OSError as exc:      # name what the user asked to write, not our temporary file
        raise OSError(f"cannot write {local!r}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            for piece in pieces:
                f.write(piece)
        os.replace(tmp, os.path.join(folder, name))
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m apps.sfs_like.client",
                                description="SFS-like client: every reply's MAC and the server key are checked.")
    p.add_argument("server", help="HOST:PORT:FINGERPRINT, as the server printed it")
    p.add_argument("--suite", default="sfs2003", choices=("sfs2003", "modern"))
    p.add_argument("--block", type=int_in(1, MAX_IO, " (the server's READ limit, 256 KiB)"),
                   default=DEFAULT_BLOCK, help="READ size in bytes")
    p.add_argument("--timeout", type=int_in(1, 86400), default=30, metavar="SECONDS",
                   help="give up when connecting and the handshake, or any one request and its "
                        "whole reply, take longer than this (default 30)")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("ls").add_argument("path", nargs="?", default="")
    sub.add_parser("cat").add_argument("path")
    g = sub.add_parser("get")
    g.add_argument("path")
    g.add_argument("local", nargs="?")
    u = sub.add_parser("put")
    u.add_argument("local")
    u.add_argument("path", nargs="?")
    sub.add_parser("rm").add_argument("path")
    args = p.parse_args(argv)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    try:
        target = _local_target(args.path, args.local) if args.cmd == "get" else None
        with Client(args.server, args.suite, timeout=args.timeout) as c:
            if args.cmd == "ls":
                _to_stdout(line.encode("utf-8", "surrogateescape") for line in _ls_lines(c, args.path))
            elif args.cmd == "cat":
                _to_stdout(c.read_file(args.path, args.block))
            elif args.cmd == "get":
                _download(c.read_file(args.path, args.block), target)
            elif args.cmd == "put":
                with open(args.local, "rb") as f:
                    c.put(args.path or os.path.basename(args.local), f.read())
            elif args.cmd == "rm":
                c.rm(args.path)
    except StdoutClosed:
        return _stdout_gone()
    except KeyboardInterrupt:         # Ctrl-C: what was being written is removed already
        return 128 + signal.SIGINT
    except ServerTimeout as exc:      # by whom, how long, how much came, and what to change
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 1
    except TimeoutError:              # said as 'timed out': by whom, how long, and what to change
        print(f"error: the server sent nothing for {args.timeout} s (--timeout)", file=sys.stderr)
        return 1
    except (rpc.RpcError, HandshakeError, ProtocolError, FrameError, OSError, ValueError) as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
