"""A bounded, shared, in-memory cache of file contents and their ready-made reply headers.

The workload is many small files read again and again, so the cost that matters is per request,
not per byte: a hit costs one `stat` (to notice a file whose mtime or size changed, which is then
reloaded) and one lock round trip. Files larger than `max_file_bytes` keep only their headers here
and are sent from disk with `sendfile`. The least recently used entries go first when the
contents exceed `max_bytes`.

One lock guards the table because, with colors on, callbacks of different connections look files
up at the same time; loading a file happens outside the lock.
"""
from __future__ import annotations

import os
import stat
import threading
from collections import OrderedDict

from . import responses

INDEX = "index.html"


class CachedFile:
    """One file as served: its metadata, its reply headers and (when small enough) its bytes."""

    __slots__ = ("path", "size", "mtime_ns", "mtime_s", "etag", "last_modified", "headers",
                 "body", "_ready")

    def __init__(self, path: str, size: int, mtime_ns: int, body: bytes | None):
        self.path = path
        self.size = size
        self.mtime_ns = mtime_ns
        self.mtime_s = mtime_ns // 1_000_000_000
        self.etag = f'"{self.mtime_ns:x}-{self.size:x}"'.encode()
        self.last_modified = responses.http_date(self.mtime_s).encode()
        self.body = body
        # Everything after the status line and Date, for a 200 reply.
        self.headers = b"".join((
            b"Server: ", responses.SERVER_NAME, b"\r\n",
            b"Content-Type: ", responses.content_type(path).encode(), b"\r\n",
            b"Content-Length: ", str(self.size).encode(), b"\r\n",
            b"Last-Modified: ", self.last_modified, b"\r\n",
            b"ETag: ", self.etag, b"\r\n"))
        self._ready = (b"", b"")

    def same_file(self, st: os.stat_result) -> bool:
        return st.st_mtime_ns == self.mtime_ns and st.st_size == self.size

    def keepalive_reply(self, date_line: bytes) -> bytes:
        """The whole HTTP/1.1 keep-alive 200 reply, rebuilt once a second (when Date changes)."""
        ready = self._ready
        if ready[0] is date_line:
            return ready[1]
        reply = b"".join((responses.STATUS_LINES[200], date_line, self.headers, b"\r\n",
                          self.body or b""))
        self._ready = (date_line, reply)
        return reply

    def not_modified_headers(self) -> bytes:
        return b"".join((b"Server: ", responses.SERVER_NAME, b"\r\n",
                         b"Last-Modified: ", self.last_modified, b"\r\n",
                         b"ETag: ", self.etag, b"\r\n"))


class FileCache:
    def __init__(self, root: str, *, max_bytes: int = 64 << 20, max_file_bytes: int = 1 << 20):
        self.root = os.path.realpath(root)
        if not os.path.isdir(self.root):
            raise NotADirectoryError(self.root)
        self.max_bytes = max_bytes
        self.max_file_bytes = min(max_file_bytes, max_bytes)
        self._entries: OrderedDict[str, CachedFile] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.loads = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def cached_bytes(self) -> int:
        return self._bytes

    def lookup(self, relpath: str) -> CachedFile | None:
        """The file that `relpath` (from paths.target_to_relpath) names, or None for a 404."""
        full = os.path.join(self.root, relpath)
        try:
            st = os.stat(full)
            if stat.S_ISDIR(st.st_mode):
                full = os.path.join(full, INDEX)
                st = os.stat(full)
        except (OSError, ValueError):
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        with self._lock:
            entry = self._entries.get(full)
            if entry is not None and entry.same_file(st):
                self._entries.move_to_end(full)
                self.hits += 1
                return entry
        return self._load(full)

    def _load(self, full: str) -> CachedFile | None:
        real = os.path.realpath(full)
        if not real.startswith(self.root + os.sep):
            return None                      # a symbolic link that leads out of the root
        try:
            fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            body = None
            size = st.st_size
            if size <= self.max_file_bytes:
                body = _read_all(fd, size)
                size = len(body)              # it may have changed while we read: serve what we read
        finally:
            os.close(fd)
        entry = CachedFile(full, size, st.st_mtime_ns, body)
        with self._lock:
            old = self._entries.pop(full, None)
            if old is not None and old.body is not None:
                self._bytes -= len(old.body)
            self._entries[full] = entry
            if body is not None:
                self._bytes += len(body)
            while self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                if evicted.body is not None:
                    self._bytes -= len(evicted.body)
            self.loads += 1
        return entry


def _read_all(fd: int, size: int) -> bytes:
    chunks = []
    remaining = size
    while remaining > 0:
        chunk = os.read(fd, remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
