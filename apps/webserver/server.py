"""The listening socket, accepting, the connection limit, and the server's counters.

Accepting runs on the accept color (colors.py), which also owns the count of open connections:
a connection that ends tells the accept color with a callback instead of touching the count
itself, the libasync-smp way of sharing state without a lock. Over the limit, a new connection is
refused cleanly: it gets a 503 with `Connection: close`, and its socket lingers briefly (reading
and discarding) so the reply arrives instead of a reset. The server keeps serving the others.
"""
from __future__ import annotations

import errno
import itertools
import logging
import os
import socket
import time

from . import responses
from .cache import FileCache
from .colors import ColorPlan
from .connection import LINGER_S, Connection
from .protocol import Limits

log = logging.getLogger("apps.webserver")
ACCEPT_BATCH = 64
ACCEPT_PAUSE_S = 0.25    # out of descriptors or memory: stop accepting this long, then try again
# A shortage that keeps ending and coming back (each closed connection frees one descriptor, the
# next accept takes it) is reported once per this many seconds, with a count of the ones between.
SHORTAGE_REPORT_S = 10.0
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class Server:
    def __init__(self, loop, cache: FileCache, *, colors: ColorPlan, limits: Limits = Limits(),
                 max_connections: int = 1024, header_timeout: float = 10.0,
                 idle_timeout: float = 60.0, profile: bool = False):
        self.loop = loop
        self.cache = cache
        self.colors = colors
        self.limits = limits
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.timeout_check_s = min(header_timeout, idle_timeout)
        self.profile = profile
        self.listener: socket.socket | None = None
        self._ids = itertools.count(1)
        # Owned by the accept color:
        self.open: dict[int, Connection] = {}
        self.refusing = 0
        self.accept_paused = False
        self._pauses_in_row = 0
        self._shortage_reported_at: float | None = None
        self._shortages_unreported = 0
        self._shortage_is_reported = False     # the shortage now going on was logged
        self.totals = {"connections": 0, "refused": 0, "requests": 0, "io_s": 0.0,
                       "accept_pauses": 0}
        self.statuses: dict[int, int] = {}    # replies by status of closed connections, refusals
        self.bugs = 0

    # ---- set-up ------------------------------------------------------------------------------
    def listen(self, host: str = "127.0.0.1", port: int = 0, *, reuse_port: bool = False,
               backlog: int = 1024) -> tuple[str, int]:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((host, port))
            sock.listen(backlog)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self.listener = sock
        return sock.getsockname()[:2]

    def start(self) -> None:
        times = os.times()
        self._cpu_at_start = times.user + times.system
        self.loop.add_reader(self.listener.fileno(), self._on_accept, color=self.colors.accept())

    # ---- accept color ------------------------------------------------------------------------
    def _on_accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    return self._pause_accepting(exc)
                log.warning("accept failed: %s", exc)    # ECONNABORTED and the like: next one
                continue
            if self._pauses_in_row:
                if self._shortage_is_reported:
                    log.warning("accepting again after %d pauses", self._pauses_in_row)
                self._pauses_in_row = 0
            if len(self.open) >= self.max_connections:
                self._refuse(sock)
                continue
            conn_id = next(self._ids)
            self.open[conn_id] = None          # counted now; the Connection is made on its color
            self.totals["connections"] += 1
            color = self.colors.connection(conn_id)
            self.loop.call_soon(self._open_connection, sock, conn_id, color, color=color)

    def _open_connection(self, sock, conn_id: int, color) -> None:
        """On the connection's own color, so that its objects belong to the thread that uses them
        (on the free-threaded build a thread updates the reference counts of objects another
        thread made with atomic operations; see tools/freethreaded/README.md)."""
        try:
            conn = Connection(self, sock, conn_id, color)
            conn.start()
        except OSError:             # gone before we got to it (reset, or closed at shutdown)
            sock.close()
            self.loop.call_soon(self._opened, conn_id, None, color=self.colors.accept())
            return
        self.loop.call_soon(self._opened, conn_id, conn, color=self.colors.accept())

    def _opened(self, conn_id: int, conn: Connection | None) -> None:
        """Back on the accept color: the connection is on record, or its place is free again."""
        if conn_id in self.open:
            if conn is None:
                del self.open[conn_id]
            else:
                self.open[conn_id] = conn

    def _pause_accepting(self, exc: OSError) -> None:
        """Out of descriptors (or buffers): the pending connection stays in the backlog and the
        listener stays readable, so accepting again at once would spin, a failure and a log line
        each time. Stop watching the listener for a while instead; the connections we have keep
        being served, and closing them frees what the next accept needs."""
        if self.accept_paused:
            return
        self.accept_paused = True
        self.totals["accept_pauses"] += 1
        self._pauses_in_row += 1
        if self._pauses_in_row == 1:                  # one line per shortage, not per pause
            self._report_shortage(exc)
        self.loop.remove_reader(self.listener.fileno())
        self.loop.call_later(ACCEPT_PAUSE_S, self._resume_accepting, color=self.colors.accept())

    def _report_shortage(self, exc: OSError) -> None:
        """Log a new shortage, unless one was logged within SHORTAGE_REPORT_S: under a sustained
        shortage with connections closing, every accept that gets a freed descriptor ends one
        shortage and the next starts another, and two log lines every pause flooded the log."""
        now = time.monotonic()
        last = self._shortage_reported_at
        if last is not None and now - last < SHORTAGE_REPORT_S:
            self._shortages_unreported += 1
            self._shortage_is_reported = False
            return
        between = self._shortages_unreported
        log.warning("accept failed (%s): pausing accepts for %.2f s at a time until it succeeds%s",
                    exc, ACCEPT_PAUSE_S,
                    f" ({between} more shortages since the last report)" if between else "")
        self._shortage_reported_at, self._shortages_unreported = now, 0
        self._shortage_is_reported = True

    def _resume_accepting(self) -> None:
        if self.accept_paused and self.listener is not None:
            self.accept_paused = False
            self.loop.add_reader(self.listener.fileno(), self._on_accept, color=self.colors.accept())

    def _refuse(self, sock: socket.socket) -> None:
        self.totals["refused"] += 1
        self.statuses[503] = self.statuses.get(503, 0) + 1
        try:
            sock.setblocking(False)
            sock.send(responses.error_reply(503, extra=b"Retry-After: 1\r\n"))
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        if self.refusing >= self.max_connections:   # a flood: no lingering for these
            sock.close()
            return
        self.refusing += 1
        accept = self.colors.accept()
        fd = sock.fileno()
        state = {"done": False}

        def finish():
            if not state["done"]:
                state["done"] = True
                self.loop.remove_reader(fd)
                timer.cancel()
                sock.close()
                self.refusing -= 1

        def drain():
            try:
                if sock.recv(RECV_DISCARD):
                    return
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                pass
            finish()

        timer = self.loop.call_later(LINGER_S, finish, color=accept)
        self.loop.add_reader(fd, drain, color=accept)

    def connection_closed(self, conn: Connection) -> None:
        """Called on the connection's color; the bookkeeping happens on the accept color."""
        self.loop.call_soon(self._forget, conn, color=self.colors.accept())

    def _forget(self, conn: Connection) -> None:
        if self.open.pop(conn.id, None) is not None:
            self._add_counts(conn)

    def _add_counts(self, conn: Connection) -> None:
        self.totals["requests"] += conn.session.requests
        self.totals["io_s"] += conn.io_s
        _merge(self.statuses, conn.session.statuses)

    def report_bug(self, exc: BaseException) -> None:
        self.bugs += 1       # approximate under colors on; it only says "look at the log"
        log.error("internal error while serving a request", exc_info=exc)

    # ---- after the loop stopped --------------------------------------------------------------
    def final_counts(self) -> dict:
        """Totals including still-open connections; call only when the loop no longer runs."""
        counts = dict(self.totals)
        statuses = dict(self.statuses)
        for conn in filter(None, self.open.values()):
            counts["requests"] += conn.session.requests
            counts["io_s"] += conn.io_s
            _merge(statuses, conn.session.statuses)
        counts["statuses"] = {str(code): statuses[code] for code in sorted(statuses)}
        times = os.times()
        counts["cpu_s"] = times.user + times.system
        counts["cpu_s_serving"] = counts["cpu_s"] - getattr(self, "_cpu_at_start", 0.0)
        counts["cache_files"] = len(self.cache)
        counts["cache_bytes"] = self.cache.cached_bytes
        counts["bugs"] = self.bugs
        counts["at"] = time.time()
        return counts


RECV_DISCARD = 4096


def _merge(into: dict[int, int], counts: dict[int, int]) -> None:
    for code, n in counts.items():
        into[code] = into.get(code, 0) + n
