"""One client connection on the colored event loop: socket in, HttpSession, socket out.

Every callback of a connection (reading, writing, its timer) runs on the connection's color, so
they never overlap and need no lock; `colors.py` decides what that color is. The connection reads
once per readiness callback, answers every request completed so far, and stops reading while
replies wait for the socket (so a client that pipelines without reading cannot grow our memory).

Closing is graceful when we end the connection ourselves (an error reply, `Connection: close`, a
timeout): we shut down our sending side and read-and-discard until the client closes or a short
linger passes, so our last reply is not destroyed by a TCP reset.
"""
from __future__ import annotations

import fcntl
import os
import socket
import struct
import termios
import time

from . import responses
from .cache import Unavailable
from .protocol import HttpSession, SendFile

RECV_SIZE = 64 * 1024
JOIN_BYTES = 64 * 1024   # small replies queued together are sent as one buffer up to this size
LINGER_S = 2.0           # how long a closing connection waits for the client to close first
_CR_LF = (13, 10)        # a read starting with these may be only empty lines between requests


class Connection:
    __slots__ = ("server", "loop", "sock", "fd", "id", "color", "session", "closed", "draining",
                 "reading", "writing", "peer_closed", "last_active", "linger_until", "timer",
                 "file_fd", "file_off", "io_s", "created", "kernel_queued")

    def __init__(self, server, sock: socket.socket, conn_id: int, color):
        self.server = server
        self.loop = server.loop
        self.sock = sock
        self.fd = sock.fileno()
        self.id = conn_id
        self.color = color
        self.session = HttpSession(server.cache, server.limits)
        self.closed = self.draining = self.reading = self.writing = self.peer_closed = False
        self.last_active = self.created = time.monotonic()
        self.linger_until = 0.0
        self.timer = None
        self.file_fd = -1
        self.file_off = 0
        self.io_s = 0.0          # CPU time inside recv/send (only when the server profiles)
        self.kernel_queued = -1  # bytes in the kernel's send queue when the timer last looked

    # ---- lifetime ----------------------------------------------------------------------------
    def start(self) -> None:
        """First callback on the connection's color: from here on only that color touches us."""
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._read_on()
        self.timer = self.loop.call_later(self.server.timeout_check_s, self._on_timer,
                                          color=self.color)

    def _read_on(self):
        if not self.reading:
            self.reading = True
            if self.session.in_request:
                # Its bytes may have waited in the socket while we held reading back for our
                # replies to go out: the client's time for this request starts again now.
                self.session.request_started = time.monotonic()
            self.loop.add_reader(self.fd, self._on_readable, color=self.color)

    def _read_off(self):
        if self.reading:
            self.reading = False
            self.loop.remove_reader(self.fd)

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._read_off()
        if self.writing:
            self.writing = False
            self.loop.remove_writer(self.fd)
        if self.timer is not None:
            self.timer.cancel()
        if self.file_fd >= 0:
            os.close(self.file_fd)
            self.file_fd = -1
        self.sock.close()
        self.server.connection_closed(self)

    def _finish(self) -> None:
        """We are done sending: half-close, then drain until the client closes or linger ends."""
        if self.draining or self.closed:
            return
        if self.peer_closed:
            return self._close()
        self.draining = True
        self.linger_until = time.monotonic() + LINGER_S
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return self._close()
        self._read_on()

    # ---- reading -----------------------------------------------------------------------------
    def _on_readable(self) -> None:
        if self.closed:
            return
        profile = self.server.profile
        t0 = time.thread_time() if profile else 0.0
        try:
            data = self.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return self._close()
        finally:
            if profile:
                self.io_s += time.thread_time() - t0
        if self.draining:
            if not data:
                self._close()
            return
        if not data:
            self.peer_closed = True
            self._read_off()
            if not self.session.out:
                self._close()
            return
        now = time.monotonic()
        # Empty lines between requests are skipped (RFC 9112 2.2), and are no sign of life: a
        # client dripping CRLFs would otherwise hold its connection past every idle timeout.
        # (a request's first byte is a letter: only data that starts with CR or LF is copied)
        if self.session.in_request or data[0] not in _CR_LF or data.strip(b"\r\n"):
            self.last_active = now
        try:
            self.session.feed(data, now)
        except Exception as exc:                 # a bug of ours: a 500 is queued; report it
            self.server.report_bug(exc)
        self._flush()

    # ---- writing -----------------------------------------------------------------------------
    def _on_writable(self) -> None:
        if not self.closed:
            self._flush()

    def _flush(self) -> None:
        out = self.session.out
        sock = self.sock
        profile = self.server.profile
        while out:
            item = out[0]
            if item.__class__ is SendFile:
                if self.file_fd < 0:
                    out[0:1] = self._open_file(item)
                    continue
                if not self._send_file(item):
                    return self._wait_writable()
                del out[0]
                continue
            if len(out) > 1 and len(item) < JOIN_BYTES:
                # Small replies (pipelined requests) go out together, up to JOIN_BYTES: one send
                # instead of many. Larger ones go alone, so that a burst of pipelined requests for
                # a large cached file costs references to its one body, never copies of it.
                k, total = 1, len(item)
                while (k < len(out) and out[k].__class__ is not SendFile
                       and total + len(out[k]) <= JOIN_BYTES):
                    total += len(out[k])
                    k += 1
                if k > 1:
                    item = b"".join(out[:k])
                    out[:k] = [item]
            t0 = time.thread_time() if profile else 0.0
            try:
                sent = sock.send(item)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                return self._close()
            finally:
                if profile:
                    self.io_s += time.thread_time() - t0
            if sent == len(item):
                del out[0]
                continue
            out[0] = memoryview(item)[sent:]
            if sent:
                self.last_active = time.monotonic()    # a slow reader is not an idle one
            return self._wait_writable()
        if self.writing:
            self.writing = False
            self.loop.remove_writer(self.fd)
        if self.session.closing or self.peer_closed:
            return self._finish()
        self._read_on()

    def _wait_writable(self) -> None:
        """The socket is full: stop reading requests until the replies we owe are sent."""
        if self.closed:
            return
        self._read_off()
        if not self.writing:
            self.writing = True
            self.kernel_queued = self._kernel_queue()      # what the idle timer compares with
            self.loop.add_writer(self.fd, self._on_writable, color=self.color)

    def _open_file(self, item: SendFile) -> list:
        """Open a large file before its head is sent: [head, item] once open, else [an error
        reply]. Out of descriptors, say, the client hears 503 instead of a 200 and no body."""
        count = self.session.count              # its status is decided here, not when queued
        try:
            fd = self.server.cache.open_cached(item.entry)
        except Unavailable as exc:
            count(exc.status)
            return [item.error_reply(exc.status, exc.extra)]
        if fd < 0:
            count(404)
            return [item.error_reply(404)]          # gone, or now leading out of the root
        count(200)
        self.file_fd, self.file_off = fd, 0
        return [item.head, item]

    def _send_file(self, item: SendFile) -> bool:
        """Stream an opened large file; True when all of it is sent (or the connection ended)."""
        while self.file_off < item.size:
            try:
                n = os.sendfile(self.fd, self.file_fd, self.file_off, item.size - self.file_off)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                n = 0
            if n == 0:               # the file shrank or the peer left: end this connection
                self.session.closing = True
                self.session.out[1:] = []
                break
            self.file_off += n
            self.last_active = time.monotonic()
        os.close(self.file_fd)
        self.file_fd = -1
        return True

    def _kernel_queue(self) -> int:
        """Bytes we sent that the kernel still holds for the client (-1 if it cannot say)."""
        try:
            return struct.unpack("i", fcntl.ioctl(self.fd, termios.TIOCOUTQ, b"\0\0\0\0"))[0]
        except OSError:
            return -1

    def _kernel_sent_some(self) -> bool:
        """Whether the kernel's send queue for us shrank since we last looked. A client that
        reads slowly from a socket buffer of several MB may not make it writable again for longer
        than the idle timeout, and yet it reads all along."""
        queued = self._kernel_queue()
        sent, self.kernel_queued = 0 <= queued < self.kernel_queued, queued
        return sent

    # ---- timeouts ----------------------------------------------------------------------------
    def _on_timer(self) -> None:
        """Header timeout, keep-alive idle timeout and the closing linger, re-armed lazily.

        One timer per connection, which at each firing computes the deadline that applies now,
        so a busy connection costs no timer work per request.
        """
        if self.closed:
            return
        now = time.monotonic()
        server = self.server
        if self.writing and self._kernel_sent_some():
            self.last_active = now          # a slow reader, not an idle one
        if self.draining:
            deadline = self.linger_until
        elif self.writing:                  # we stopped reading until the client reads our replies
            deadline = self.last_active + server.idle_timeout
        elif self.session.in_request:
            deadline = self.session.request_started + server.header_timeout
        elif self.session.requests == 0:    # connected, sent nothing yet: the header timeout too
            deadline = self.created + server.header_timeout
        else:
            deadline = self.last_active + server.idle_timeout
        if now < deadline:
            self.timer = self.loop.call_later(min(deadline - now, server.timeout_check_s),
                                              self._on_timer, color=self.color)
            return
        self.timer = None
        if self.draining or self.writing or not self.session.in_request:
            return self._close()
        # A request began and did not finish in time (a slow or stalled client): 408, then close.
        self.session.in_request = False
        self.session.closing = True
        self.session.count(408)
        self.session.out.append(responses.error_reply(408))
        self.timer = self.loop.call_later(LINGER_S, self._on_timer, color=self.color)
        self._flush()
