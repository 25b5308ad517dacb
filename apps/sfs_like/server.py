"""The SFS-like file server: network layer, crypto layer and file layer on one colored event loop.

Per request:  socket readable -> `_readable` (network layer, default color: recv and cut frames)
  -> `_crypto_in` (the connection's crypto color: handshake, or verify + decrypt)
  -> `_file_op` (the file layer's color: run the RPC, return plaintext reply pieces, e.g. a cached block)
  -> `_crypto_out` (the connection's crypto color: the fsync a WRITE/CREATE/REMOVE/RENAME needs before its
     reply, then encrypt + MAC, then a non-blocking send; what the kernel does not take waits for
     a writer callback of the same color).
Which color each step gets is decided only by `colors.py`; `--colors off` makes them all the
default color, which is the unmodified single-threaded server.

Closing is done in three steps so no thread ever sends on, or polls, a closed (and possibly reused)
fd: stop reading (network color), stop sending (crypto color), close the socket (network color).
"""
from __future__ import annotations

import argparse
import errno
import fcntl
import json
import logging
import os
import resource
import signal
import socket
import struct
import sys
import termios
import time
from collections import deque

import runtime

from . import colors as color_policy
from . import heap, rpc
from .filelayer import UPLOAD_PREFIX, FileLayer
from .framing import MAX_FRAME, MAX_HANDSHAKE_FRAME, FrameError, FrameReader, frame
from .handshake import READY, HandshakeError, refusal, server_respond
from .keys import fingerprint, load_or_create
from .suites import SUITES, AuthError

log = logging.getLogger("sfs_like.server")

MAX_OUTSTANDING = rpc.MAX_OUTSTANDING   # requests a client may have unanswered before it is cut off
RECV_SIZE = 64 * 1024          # requests are small; a 256 KiB WRITE takes a few reads
SENDMSG_MAX_PIECES = 64
# Back-pressure: a connection whose unsent reply bytes exceed PAUSE_UNSENT is not read from until
# they drop to RESUME_UNSENT, so a client that sends requests but does not read replies is
# throttled. Its unsent output stays below PAUSE_UNSENT plus the replies to requests already read
# (at most MAX_OUTSTANDING of them), whatever it sends.
PAUSE_UNSENT = 4 << 20
RESUME_UNSENT = 1 << 20
ACCEPT_BACKOFF = 0.5           # seconds without accepting after accept() ran out of fds or memory
IDLE_TIMEOUT = 300.0           # default --idle-timeout
# accept() errors about one connection (it is consumed): go on accepting the others
_ACCEPT_PER_CONNECTION = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ENETDOWN,
                          errno.ENOPROTOOPT, errno.EHOSTDOWN, errno.ENONET, errno.EHOSTUNREACH,
                          errno.EOPNOTSUPP, errno.ENETUNREACH}


def _kernel_send_queue(sock: socket.socket) -> int:
    """Bytes sent on `sock` that the kernel has not yet delivered to the peer (-1: unknown)."""
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except (OSError, ValueError):
        return -1


def default_max_connections() -> int:
    """Half the process's fd limit (the rest is for the file layer's files), at most 1024."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(1, min(1024, soft // 2))


class Connection:
    __slots__ = ("id", "sock", "fd", "peer", "frames", "color", "channel", "outq", "closing",
                 "send_closed", "accepted_at", "partial_since", "last_active", "received", "replied",
                 "reads", "read_bytes", "seal_s", "send_s",
                 "unsent", "peak_unsent", "pause_asked", "reading_paused", "pauses",
                 "read_eof", "opened", "draining", "kernel_queued", "refused")

    def __init__(self, conn_id: int, sock: socket.socket, peer, color, now: float) -> None:
        self.id = conn_id
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.frames = FrameReader(MAX_FRAME, first_limit=MAX_HANDSHAKE_FRAME)
        self.color = color
        self.channel = None
        self.outq: deque = deque()
        self.closing = False          # set on the network color: no more reads
        self.send_closed = False      # set on the crypto color: no more sends
        self.accepted_at = now
        self.last_active = now        # last time bytes were received from or sent to the peer
        self.partial_since = None     # when the frame now arriving started (None: no partial frame)
        self.received = 0             # frames read, the hello included (network color)
        self.replied = 0              # replies sealed (crypto color)
        self.refused = False          # its hello was refused (crypto color; counted at the close)
        self.reads = 0
        self.read_bytes = 0
        self.seal_s = 0.0             # time inside seal() for READ replies: GIL-releasing crypto
        self.send_s = 0.0             # time inside sendmsg() for READ replies: GIL-releasing syscalls
        self.unsent = 0               # reply bytes sealed but not yet taken by the kernel (crypto color)
        self.peak_unsent = 0
        self.pause_asked = False      # crypto color: reading was asked to pause and not yet to resume
        self.reading_paused = False   # network color: the socket's reader is removed for back-pressure
        self.pauses = 0
        self.read_eof = False         # network color: the peer shut down its sending side
        self.opened = 0               # requests opened (crypto color)
        self.draining = False         # crypto color: no more requests come; close once all are answered
        self.kernel_queued = -1       # network color: the kernel's send queue at the last idle check


class Server:
    def __init__(self, loop: runtime.Loop, export: str, key_path: str, *, colors: str = "off",
                 suites=("sfs2003", "modern"), cache_bytes: int = 64 << 20,
                 frame_timeout: float = 10.0, idle_timeout: float = IDLE_TIMEOUT,
                 max_connections: int | None = None, clock=time.monotonic) -> None:
        self.loop = loop
        self.clock = clock            # monotonic seconds for every timeout (a test may pass a fake)
        self.colors = color_policy.policy(colors)
        self.file_color = self.colors.file()
        self.key = load_or_create(key_path)
        # the key is never served, even if it was placed (or hard-linked) in the export after the
        # start-up checks: refused by path and by identity (device, inode)
        key_st = os.stat(key_path)
        self.files = FileLayer(export, cache_bytes, sync_later=True,      # fsyncs on the crypto color
                               hidden=(os.path.realpath(key_path),),
                               hidden_ids=((key_st.st_dev, key_st.st_ino),))
        removed = self.files.remove_stale_uploads()
        if removed is None:
            log.info("another server serves this export: stale uploads (%s*) are left for one that "
                     "starts alone", UPLOAD_PREFIX)
        else:
            log.info("stale uploads (%s*, left by a server killed mid-put) removed from the "
                     "export: %d", UPLOAD_PREFIX, removed)
        self.public = self.key.public_key().public_bytes_raw()
        self.fingerprint = fingerprint(self.public)
        unknown = set(suites) - set(SUITES)
        if unknown:
            raise ValueError(f"unknown suites {sorted(unknown)}; known: {sorted(SUITES)}")
        self.suites = frozenset(suites)
        self.frame_timeout = frame_timeout
        self.idle_timeout = idle_timeout          # 0: sessions may stay idle for ever
        self.max_connections = max_connections or default_max_connections()
        self.accept_pauses = 0
        self.refused = 0                          # connections refused at max_connections
        self.evicted = 0                          # connections without a hello closed for new ones
        self._evict_logged = False
        self._full_logged = False
        self.conns: dict[int, Connection] = {}
        self._next_id = 0
        self._listener: socket.socket | None = None
        self._closed_totals = {"reads": 0, "read_bytes": 0, "seal_s": 0.0, "send_s": 0.0}
        self._closed_peak_unsent = 0
        self._closed_pauses = 0
        self.rejected = 0

    # ---- network layer (default color) ---------------------------------------------------

    def listen(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self._listener = sock
        self.loop.add_reader(sock, self._accept, color=color_policy.NET)
        interval = min(1.0, self.frame_timeout / 4, (self.idle_timeout or 4.0) / 4)
        self.loop.call_every(interval, self._reap_slow, color=color_policy.NET)
        return sock.getsockname()[:2]

    def address(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"[{host}]:{port}:{self.fingerprint}" if ":" in host else f"{host}:{port}:{self.fingerprint}"

    def _accept(self) -> None:
        for _ in range(16):
            try:
                sock, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _ACCEPT_PER_CONNECTION:
                    log.info("accept failed for one connection: %s", exc)
                    continue
                # EMFILE, ENFILE, ENOBUFS, ENOMEM...: the pending connection stays queued, so the
                # listener stays readable and retrying now would spin. Keep serving the sessions
                # we have and try again after a pause.
                self._pause_accepting(exc)
                return
            if len(self.conns) >= self.max_connections and not self._make_room():
                self._refuse(sock, peer)
                continue
            self._adopt(sock, peer)

    def _make_room(self) -> bool:
        """At the connection limit: close the oldest connection that has not sent its whole hello
        yet, for the one just accepted; False if every connection has. Connections that never
        finish the handshake held every place for --frame-timeout, again and again, and every
        new client was refused 'server full' meanwhile; a client's hello takes one round trip."""
        for conn in self.conns.values():            # oldest first
            if not conn.closing and conn.received == 0:
                self.evicted += 1
                if not self._evict_logged:
                    self._evict_logged = True
                    log.warning("%d connections open (--max-connections): closing those without "
                                "a hello, oldest first, for new ones", len(self.conns))
                self._close(conn, "connection limit reached: no hello yet, its place given to a "
                                  "new connection", quiet=True)
                return True
        return False

    def _pause_accepting(self, exc: OSError) -> None:
        self.accept_pauses += 1
        self.loop.remove_reader(self._listener)
        self.loop.call_later(ACCEPT_BACKOFF, self._resume_accepting, color=color_policy.NET)
        log.error("accept failed: %s; not accepting for %g s (%d connections open)",
                  exc, ACCEPT_BACKOFF, len(self.conns))

    def _resume_accepting(self) -> None:
        self.loop.add_reader(self._listener, self._accept, color=color_policy.NET)

    def _refuse(self, sock: socket.socket, peer) -> None:
        """At the connection limit: tell the client why (a handshake refusal) and close."""
        self.refused += 1
        if not self._full_logged:
            self._full_logged = True
            log.warning("%d connections open (--max-connections): refusing new ones, first %s",
                        len(self.conns), peer)
        try:
            sock.setblocking(False)
            sock.send(frame(refusal(f"server full: {self.max_connections} connections open")))
            sock.shutdown(socket.SHUT_WR)
            sock.recv(4096)         # a hello already here, read: closing then sends no RST
        except OSError:
            pass
        finally:
            sock.close()

    def _adopt(self, sock: socket.socket, peer) -> Connection:
        """Serve an accepted socket: a new connection, read on the network color."""
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn_id = self._next_id
        self._next_id += 1
        conn = Connection(conn_id, sock, peer, self.colors.crypto(conn_id), self.clock())
        self.conns[conn_id] = conn
        self.loop.add_reader(sock, self._readable, conn, color=color_policy.NET)
        return conn

    def _readable(self, conn: Connection) -> None:
        if conn.closing or conn.reading_paused or conn.read_eof:
            return
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionResetError:
            # A client that closes with replies still unread resets the connection (the load
            # generator does at the end of every run): its way of leaving, not a fault here.
            self._close(conn, "peer reset the connection", quiet=True)
            return
        except OSError as exc:
            self._close(conn, f"recv failed: {exc}")
            return
        conn.last_active = self.clock()
        if not data:
            if conn.frames.partial:
                self._close(conn, f"truncated frame: peer closed with {conn.frames.buffered} bytes "
                                  "of an unfinished frame")
            else:
                # The peer may have only shut down its sending side (a half-close): it still
                # reads. Stop reading, answer what it asked, then close (on the crypto color,
                # after the requests already passed on).
                conn.read_eof = True
                self.loop.remove_reader(conn.fd)
                self.loop.call_soon(self._peer_done, conn, color=conn.color)
            return
        try:
            frames = conn.frames.feed(data)
        except FrameError as exc:
            if conn.frames.first_pending:
                self._refuse_first_frame(conn, exc)
            self._close(conn, f"framing violated: {exc}")
            return
        # The frame timer bounds how long ONE frame takes to arrive: it starts with a frame's first
        # byte and restarts whenever a frame completes, so a client streaming frames back to back
        # (never an empty buffer after a recv) is not taken for a slow one.
        if not conn.frames.partial:
            conn.partial_since = None
        elif frames or conn.partial_since is None:
            conn.partial_since = self.clock()
        for body in frames:
            conn.received += 1
            # Requests unanswered: every frame but the first (the hello, whose answer is not
            # counted in `replied`) less the replies sealed. Counting the hello too cut off a
            # client with exactly MAX_OUTSTANDING requests in flight, which PROTOCOL.md allows.
            # `replied` is counted on the crypto color and read here with no lock: it only grows,
            # and a reply is counted before it is sent, so any request the client sent in answer
            # to a reply arrives after the count that reply made: never a false cut-off.
            if conn.received - 1 - conn.replied > MAX_OUTSTANDING:
                self._close(conn, f"more than {MAX_OUTSTANDING} requests outstanding")
                return
            self.loop.call_soon(self._crypto_in, conn, body, color=conn.color)

    def _refuse_first_frame(self, conn: Connection, exc: FrameError) -> None:
        """A first frame over the hello limit: usually not an SFS client at all (curl, a browser).
        It gets the handshake refusal, as any malformed hello does, so whoever pointed it here
        learns what the port speaks. Sent from this (network) color, as `_refuse` does: no frame
        of this connection reached its crypto color, so nothing else sends on it."""
        conn.refused = True
        reason = f"not an SFS-like client hello (first bytes {exc.head!r}): {exc}"
        try:
            conn.sock.send(frame(refusal(reason)))
        except OSError:
            pass                # best effort: the close follows either way

    def _reap_slow(self) -> None:
        """Cut off clients that hold a frame (or the handshake) unfinished for too long, and
        sessions in which nothing was received or sent for the idle timeout."""
        now = self.clock()
        for conn in list(self.conns.values()):
            if conn.closing:
                continue
            if (conn.partial_since is not None and not conn.reading_paused   # paused: we hold it up
                    and now - conn.partial_since > self.frame_timeout):
                self._close(conn, f"slow client: frame unfinished after {self.frame_timeout:g} s")
            elif conn.channel is None:
                if now - conn.accepted_at > self.frame_timeout:
                    self._close(conn, f"no handshake within {self.frame_timeout:g} s")
            elif self.idle_timeout and now - conn.last_active > self.idle_timeout / 2:
                # Nothing handed to the kernel for a while: but a client reading slowly from a
                # socket buffer of several MB can keep it full for longer than the idle timeout.
                # The kernel's send queue shrinking since the last look means it reads.
                queued = _kernel_send_queue(conn.sock)
                if 0 <= queued < conn.kernel_queued:
                    conn.last_active = now
                conn.kernel_queued = queued
                if now - conn.last_active > self.idle_timeout:
                    self._close(conn, f"idle: nothing received or sent for {self.idle_timeout:g} s")

    def _pause_reading(self, conn: Connection) -> None:
        """Back-pressure (network color): stop reading a client that does not read its replies."""
        if conn.closing or conn.reading_paused:
            return
        conn.reading_paused = True
        conn.pauses += 1
        self.loop.remove_reader(conn.fd)
        log.info("conn %d %s: more than %d reply bytes unsent: not reading its requests until they drain",
                 conn.id, conn.peer, PAUSE_UNSENT)

    def _resume_reading(self, conn: Connection) -> None:
        if conn.closing or not conn.reading_paused:
            return
        conn.reading_paused = False
        if conn.read_eof:
            return
        if conn.frames.partial:
            conn.partial_since = self.clock()     # the frame timer did not run while paused
        self.loop.add_reader(conn.sock, self._readable, conn, color=color_policy.NET)

    def _close(self, conn: Connection, reason: str, quiet: bool = False) -> None:
        """Step 1 (network color): stop reading; then let the crypto color stop sending."""
        if conn.closing:
            return
        conn.closing = True
        (log.info if quiet else log.warning)("conn %d %s: closing: %s", conn.id, conn.peer, reason)
        self.loop.remove_reader(conn.fd)
        self.loop.call_soon(self._close_sending, conn, color=conn.color)

    def _close_sending(self, conn: Connection) -> None:
        """Step 2 (crypto color): no more sends; the socket itself is closed on the network color."""
        conn.send_closed = True
        conn.outq.clear()
        conn.unsent = 0
        self.loop.call_soon(self._close_socket, conn, color=color_policy.NET)

    def _close_socket(self, conn: Connection) -> None:
        # Before the close, so that a peer who sees it is already counted. Only this (network)
        # color counts refusals: each connection's hello is refused on its own color, and two
        # colors adding to one counter at once would lose counts.
        self.rejected += conn.refused
        self.loop.remove_writer(conn.fd)
        conn.sock.close()
        self.conns.pop(conn.id, None)
        # its unfinished uploads go (after its requests already queued to the file layer)
        self.loop.call_soon(self.files.release, conn.id, color=self.file_color)
        if len(self.conns) < self.max_connections:
            self._full_logged = self._evict_logged = False
        totals = self._closed_totals
        totals["reads"] += conn.reads
        totals["read_bytes"] += conn.read_bytes
        totals["seal_s"] += conn.seal_s
        totals["send_s"] += conn.send_s
        self._closed_peak_unsent = max(self._closed_peak_unsent, conn.peak_unsent)
        self._closed_pauses += conn.pauses

    def _request_close(self, conn: Connection, reason: str, quiet: bool = False) -> None:
        """From a non-network color: closing starts on the network color."""
        conn.send_closed = True
        self.loop.call_soon(self._close, conn, reason, quiet, color=color_policy.NET)

    # ---- crypto layer (the connection's color) ----------------------------------------------

    def _crypto_in(self, conn: Connection, body: bytes) -> None:
        if conn.send_closed:
            return
        channel = conn.channel
        if channel is None:
            self._handshake(conn, body)
            return
        try:
            request = channel.recv.open(body)
        except AuthError as exc:
            self._request_close(conn, str(exc))
            return
        conn.opened += 1
        if len(request) >= 5 and request[4] == rpc.STATS:
            self._crypto_out(conn, [self._stats_reply(request)], False)
            return
        self.loop.call_soon(self._file_op, conn, request, color=self.file_color)

    def _handshake(self, conn: Connection, hello: bytes) -> None:
        try:
            reply, channel, transcript = server_respond(self.key, self.public, hello, self.suites)
        except (HandshakeError, ValueError) as exc:
            conn.refused = True       # counted on the network color, where every count is made
            # PROTOCOL.md promises the refusal for any malformed hello, so it goes out even when
            # the magic is wrong and the peer may be no SFS client: one short frame, sent without
            # waiting for the peer (what the kernel does not take is dropped by the close).
            self._send(conn, [frame(refusal(str(exc)))])
            self._request_close(conn, f"handshake failed: {exc}")
            return
        conn.channel = channel
        self._send(conn, [frame(reply)])
        self._send(conn, channel.send.seal([READY + transcript]))
        log.info("conn %d %s: session up, suite %s, color %r", conn.id, conn.peer, channel.suite, conn.color)

    def _peer_done(self, conn: Connection) -> None:
        """Crypto color, after every request the peer sent before its EOF was opened."""
        conn.draining = True
        self._close_if_answered(conn)

    def _close_if_answered(self, conn: Connection) -> None:
        if conn.draining and not conn.send_closed and conn.replied == conn.opened and not conn.outq:
            self._request_close(conn, "peer closed the connection", quiet=True)

    def _crypto_out(self, conn: Connection, parts: list, is_read: bool) -> None:
        parts = self.files.finish(parts)        # a WRITE's fsync: here, not on the file color
        if conn.send_closed:
            return
        t0 = time.perf_counter()
        wire = conn.channel.send.seal(parts)
        t1 = time.perf_counter()
        conn.replied += 1
        self._send(conn, wire)
        if is_read:
            conn.reads += 1
            conn.read_bytes += len(parts[1])
            conn.seal_s += t1 - t0
            conn.send_s += time.perf_counter() - t1
        if conn.draining:
            self._close_if_answered(conn)

    def _send_failed(self, conn: Connection, exc: OSError) -> None:
        """A reset (or, EPIPE, a peer already gone) seen by a send is the client leaving with
        replies unread, as the load generator does at the end of every run: the send may see it
        before the network color's recv does. Anything else is a fault worth a warning."""
        if isinstance(exc, ConnectionResetError):
            self._request_close(conn, "peer reset the connection", quiet=True)
        elif isinstance(exc, BrokenPipeError):
            self._request_close(conn, "peer closed the connection", quiet=True)
        else:
            self._request_close(conn, f"send failed: {exc}")

    def _send(self, conn: Connection, wire: list) -> None:
        if conn.outq:
            conn.outq.extend(wire)
            self._queued(conn, sum(len(piece) for piece in wire))
            return
        try:
            sent = conn.sock.sendmsg(wire)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._send_failed(conn, exc)
            return
        if sent:
            conn.last_active = self.clock()
        queued = 0
        for piece in wire:
            n = len(piece)
            if sent >= n:
                sent -= n
                continue
            conn.outq.append(memoryview(piece)[sent:])
            queued += n - sent
            sent = 0
        if conn.outq:
            self.loop.add_writer(conn.fd, self._flush, conn, color=conn.color)
            self._queued(conn, queued)

    def _queued(self, conn: Connection, n: int) -> None:
        """`n` more reply bytes wait in the connection's queue (crypto color): above the bound, ask
        the network color to stop reading it. Asking to pause and to resume both happen on this
        color, in order, so the network color sees them in the same order."""
        conn.unsent += n
        if conn.unsent > conn.peak_unsent:
            conn.peak_unsent = conn.unsent
        if conn.unsent > PAUSE_UNSENT and not conn.pause_asked:
            conn.pause_asked = True
            self.loop.call_soon(self._pause_reading, conn, color=color_policy.NET)

    def _flush(self, conn: Connection) -> None:
        """Writer callback (crypto color): push queued reply bytes until the kernel stops taking them."""
        if conn.send_closed:
            # Closing: the network color removes the writer and closes the socket. A run already
            # dispatched must not touch the loop itself: by now the fd number may belong to a new
            # connection, whose writer it would remove.
            return
        outq = conn.outq
        while outq:
            pieces = [outq[i] for i in range(min(len(outq), SENDMSG_MAX_PIECES))]
            try:
                sent = conn.sock.sendmsg(pieces)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._send_failed(conn, exc)
                return
            conn.unsent -= sent
            if sent:
                conn.last_active = self.clock()
            while sent:
                n = len(outq[0])
                if sent >= n:
                    outq.popleft()
                    sent -= n
                else:
                    outq[0] = memoryview(outq[0])[sent:]
                    sent = 0
        if not outq:
            self.loop.remove_writer(conn.fd)
            if conn.draining:
                self._close_if_answered(conn)
        if conn.pause_asked and conn.unsent <= RESUME_UNSENT and not conn.send_closed:
            conn.pause_asked = False
            self.loop.call_soon(self._resume_reading, conn, color=color_policy.NET)

    # ---- file layer (its own color) -----------------------------------------------------------

    def _file_op(self, conn: Connection, request: bytes) -> None:
        parts = self.files.handle(request, conn.id)
        is_read = len(parts) == 2 and request[4] == rpc.READ     # a READ reply carrying data
        self.loop.call_soon(self._crypto_out, conn, parts, is_read, color=conn.color)

    # ---- statistics, for the benchmark -----------------------------------------------------------

    def stats(self) -> dict:
        totals = dict(self._closed_totals)
        conns = list(self.conns.values())
        for conn in conns:
            totals["reads"] += conn.reads
            totals["read_bytes"] += conn.read_bytes
            totals["seal_s"] += conn.seal_s
            totals["send_s"] += conn.send_s
        loop_stats = self.loop.stats()
        totals.update({
            "cpu_s": time.process_time(),
            "busy_s": sum(w["busy_s"] for w in loop_stats["workers"]),
            "worker_busy_s": [w["busy_s"] for w in loop_stats["workers"]],
            "layer_time_s": self._layer_times(loop_stats["colors"]),
            "worker_callbacks": [w["callbacks"] for w in loop_stats["workers"]],
            "callbacks": loop_stats["callbacks"],
            "steals": loop_stats["steals"],
            "loop_errors": loop_stats["errors"],
            "connections": len(self.conns),
            "max_unsent_bytes": max([self._closed_peak_unsent] + [c.peak_unsent for c in conns]),
            "reading_paused": sum(1 for c in conns if c.reading_paused),
            "read_pauses": self._closed_pauses + sum(c.pauses for c in conns),
            "rejected_handshakes": self.rejected,
            "refused_connections": self.refused,
            "evicted_connections": self.evicted,
            "accept_pauses": self.accept_pauses,
            "cache_hits": self.files.cache.hits,
            "cache_misses": self.files.cache.misses,
            "colors": self.colors.name,
            "workers": len(loop_stats["workers"]),
        })
        return totals

    def _layer_times(self, colors: dict) -> dict:
        """Callbacks, busy and queue-wait seconds per layer's colors (in colors-off all are 'net')."""
        file_color = self.file_color
        out = {}
        for color, c in colors.items():
            layer = ("net" if color == color_policy.NET else "file" if color == file_color else "crypto")
            agg = out.setdefault(layer, [0, 0.0, 0.0])
            agg[0] += c["callbacks"]
            agg[1] += c["busy_s"]
            agg[2] += c["queue_wait_s"]
        return out

    def _stats_reply(self, request: bytes) -> bytes:
        """STATS takes no arguments: bytes after the header are malformed, as for every other
        procedure (the file layer checks theirs; STATS never reaches it)."""
        (xid,) = rpc.U32.unpack_from(request, 0)
        try:
            rpc.check_end(request, rpc.REQ_HEAD.size)
        except rpc.MalformedRequest as exc:
            return rpc.rep_malformed(xid, rpc.STATS, exc.message)
        return rpc.REP_HEAD.pack(xid, rpc.OK) + json.dumps(self.stats()).encode()


def _inside(path: str, folder: str) -> bool:
    """True when `path` is `folder` or lies beneath it (both already resolved)."""
    return os.path.commonpath([path, folder]) == folder


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m apps.sfs_like.server",
                                description="SFS-like file server over an encrypted, authenticated channel.")
    p.add_argument("--export", required=True, help="directory to serve")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--colors", choices=("off", "on"), default="off",
                   help="off: every callback on the default color (uniprocessor server); "
                        "on: per-connection crypto colors and a file-layer color")
    p.add_argument("--workers", type=int, default=1, help="worker threads of the colored loop")
    p.add_argument("--scheduler", choices=("hash", "steal"), default="hash")
    p.add_argument("--pin", action="store_true", help="pin worker i to allowed CPU i")
    p.add_argument("--cpus", default="", help="comma-separated CPUs this process may use (affinity)")
    p.add_argument("--suite", default="any", choices=("any", *SUITES),
                   help="cipher suite(s) accepted (default: any)")
    p.add_argument("--key", required=True, help="long-term key file (created when missing)")
    p.add_argument("--cache-mb", type=float, default=64.0, help="block cache size")
    p.add_argument("--frame-timeout", type=float, default=10.0,
                   help="seconds a client may leave a frame (or the handshake) unfinished")
    p.add_argument("--max-connections", type=int, default=None,
                   help="connections served at once; more are told 'server full' and closed "
                        "(default: half the fd limit, at most 1024)")
    p.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT,
                   help="seconds a session may go with nothing received or sent before it is "
                        "closed (0: never)")
    p.add_argument("--switch-interval", type=float, default=0.0002,
                   help="CPython's GIL switch interval in seconds (its default is 0.005): a worker "
                        "back from a crypto call waits at most this long for a GIL held by Python code")
    p.add_argument("--default-malloc", action="store_true",
                   help="keep glibc's own malloc thresholds: then large READs fault their buffers "
                        "in afresh each time (apps/sfs_like/heap.py)")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    if not os.path.isdir(args.export):
        p.error(f"--export {args.export!r} is not a directory (make it first)")
    if os.path.realpath(args.export) == os.sep:
        # The key must lie outside the export (below), which no path does here; and each client,
        # unauthenticated, could read and replace every file this process may (FileLayer("/")
        # itself works, for tests and embedding).
        p.error(f"--export {args.export!r} is the whole file system: every client could read and "
                "replace every file this server may, and the key file cannot lie outside it; "
                "export a folder")
    key_dir = os.path.dirname(os.path.abspath(args.key))
    if not os.path.isdir(key_dir):
        p.error(f"--key {args.key!r}: the folder {key_dir!r} does not exist")
    if _inside(os.path.realpath(args.key), os.path.realpath(args.export)):
        p.error(f"--key {args.key!r} is inside --export {args.export!r}: every client could read "
                "and replace the server's private key; keep it outside the export")
    if not 0 <= args.port <= 65535:
        p.error(f"--port must be 0..65535 (0 picks a free one), not {args.port}")
    if args.workers < 1:
        p.error(f"--workers must be at least 1, not {args.workers}")
    if args.max_connections is not None and args.max_connections < 1:
        p.error(f"--max-connections must be at least 1, not {args.max_connections}")
    if not (args.frame_timeout > 0 and args.idle_timeout >= 0 and args.cache_mb >= 0
            and args.switch_interval > 0):
        p.error("--frame-timeout and --switch-interval must be positive; --idle-timeout and "
                "--cache-mb must not be negative")
    try:
        args.cpu_set = {int(c) for c in args.cpus.split(",")} if args.cpus else set()
    except ValueError:
        p.error(f"--cpus {args.cpus!r}: expected comma-separated CPU numbers, e.g. 0,1")
    allowed = os.sched_getaffinity(0)
    if args.cpu_set - allowed:
        p.error(f"--cpus {args.cpus}: this process may only use CPUs {sorted(allowed)}")
    if args.log_level.upper() not in logging.getLevelNamesMapping():
        p.error(f"--log-level {args.log_level!r}: use DEBUG, INFO, WARNING or ERROR")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.cpu_set:
        os.sched_setaffinity(0, args.cpu_set)
    sys.setswitchinterval(args.switch_interval)       # the same in both modes
    if not args.default_malloc:
        heap.keep_freed_memory()
    suites = tuple(SUITES) if args.suite == "any" else (args.suite,)
    with runtime.Loop(workers=args.workers, scheduler=args.scheduler, pin=args.pin) as loop:
        # What the user can fix (an unreadable or malformed key, a port in use) is one line of
        # error, not a traceback.
        try:
            server = Server(loop, args.export, args.key, colors=args.colors, suites=suites,
                            cache_bytes=int(args.cache_mb * (1 << 20)),
                            frame_timeout=args.frame_timeout, idle_timeout=args.idle_timeout,
                            max_connections=args.max_connections)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"python -m apps.sfs_like.server: error: cannot start: {exc}") from None
        try:
            server.listen(args.host, args.port)
        except OSError as exc:
            raise SystemExit(f"python -m apps.sfs_like.server: error: cannot listen on "
                             f"{args.host}:{args.port}: {exc.strerror or exc}") from None
        # SIGTERM stops the server as Ctrl-C does: status 0, no traceback (it used to die of the
        # signal, status -15). Both are installed before the address is printed: whoever waits for
        # that line may signal at once (a Ctrl-C between the print and loop.run() was a traceback).
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, loop.stop)
        print(server.address(), flush=True)
        log.info("serving %s at %s, colors %s, %d worker%s, suites %s", server.files.root,
                 server.address(), args.colors, args.workers, "s" * (args.workers != 1),
                 ",".join(sorted(suites)))
        try:
            loop.run()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
