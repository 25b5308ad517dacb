"""A bounded in-memory cache of file contents and their ready-made reply headers, one per thread.

The workload is many small files read again and again, so the cost that matters is per request,
not per byte: a hit costs one `stat` (to notice a file whose mtime, size, ctime or mode changed,
which is then reloaded) and one dictionary lookup. Files larger than `max_file_bytes` keep only
their headers here and are sent from disk with `sendfile`.

Each worker thread keeps its own table (`threading.local`), so a hit touches no lock and no object
another thread uses. A single shared table was the free-threaded build's bottleneck with colors on:
its lock was contended on 21% of requests, and without the lock every `dict.get` still locked the
dictionary, because CPython 3.13t takes that slow path whenever the value found was created by
another thread (`_Py_TryIncrefCompare` fails on an object with no shared references), and two
threads sharing hot objects fight over their reference counts (tools/freethreaded/README.md). The
price is that each worker loads a file once, and the memory bound is per worker. Under the GIL it
changes nothing else. The `stat` on every lookup keeps every table coherent with the disk.

Eviction is CLOCK (second chance): the oldest entry goes unless it was used since the sweep last
passed it, in which case it moves to the back; a hit only sets a flag, instead of reordering a table.
"""
from __future__ import annotations

import errno
import os
import stat
import threading
import time

from . import responses

INDEX = "index.html"

# How an OSError from stat/open/read is answered. A missing name is the client's 404; anything
# else is not: a file we may not read is 403, a shortage of descriptors or memory is ours and
# passes (503, try again), and any other failure is a 500, never a "not found" that a client or
# a cache would believe.
_MISSING = {errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG}
_FORBIDDEN = {errno.EACCES, errno.EPERM}
_SHORTAGE = {errno.EMFILE, errno.ENFILE, errno.ENOMEM}


class Unavailable(Exception):
    """The file exists, or may, but cannot be served now: reply with `status` (and `extra`
    header lines, and `detail` for the body's one line)."""

    def __init__(self, status: int, extra: bytes = b"", detail: str = ""):
        super().__init__(status)
        self.status = status
        self.extra = extra
        self.detail = detail


class NeedsSlash(Exception):
    """The target names a folder with an index.html but does not end with "/": the reply is a
    redirect to the name with the slash, so that the relative links of its index resolve inside
    the folder. A folder without one is a 403 instead, with or without the slash: a redirect
    would only lead to that same refusal."""


NO_LISTING = "this server does not list directories"


def _refusal(exc: OSError) -> Unavailable | None:
    """None when `exc` means the file is not there (a 404), else the error reply to give."""
    if exc.errno in _MISSING:
        return None
    if exc.errno in _FORBIDDEN:
        return Unavailable(403)
    if exc.errno in _SHORTAGE:
        return Unavailable(503, b"Retry-After: 1\r\n")
    return Unavailable(500)


class CachedFile:
    """One file as served: its metadata, its reply headers and (when small enough) its bytes."""

    __slots__ = ("path", "size", "mtime_ns", "mtime_s", "modified_s", "dev", "ino", "ctime_ns", "mode", "etag",
                 "last_modified", "headers", "body", "_ready", "referenced", "stable")

    def __init__(self, path: str, size: int, mtime_ns: int, body: bytes | None,
                 dev: int = 0, ino: int = 0, ctime_ns: int = 0, mode: int = 0,
                 stable: bool = True):
        self.path = path
        self.size = size
        self.mtime_ns = mtime_ns
        self.dev, self.ino = dev, ino    # which file it was: a name can be pointed elsewhere
        self.ctime_ns, self.mode = ctime_ns, mode    # its permissions as they were when read
        self.mtime_s = mtime_ns // 1_000_000_000
        # Not stable: bytes made as they are read (/proc), which the stat does not describe. Such
        # a file is read again at every request and has no validators: its mtime and size do
        # not change with its bytes, so an ETag or Last-Modified built from them could give a
        # client a 304 for bytes it has never seen.
        self.stable = stable
        self.etag = f'"{self.mtime_ns:x}-{self.size:x}"'.encode()
        # RFC 9110 8.8.2.1: never a Last-Modified later than now (a file unpacked with a future
        # mtime). A client would send that date back, and every change made before it would be
        # "not modified" to it. 304s still compare with the real mtime: such a file gets none.
        # If-Unmodified-Since compares with the date we sent: given back, it must pass.
        self.modified_s = _modified_s(self.mtime_s, ctime_ns // 1_000_000_000)
        self.last_modified = responses.http_date(self.modified_s).encode()
        self.body = body
        validators = (b"Last-Modified: ", self.last_modified, b"\r\n",
                      b"ETag: ", self.etag, b"\r\n") if stable else ()
        # Everything after the status line and Date, for a 200 reply.
        self.headers = b"".join((
            b"Server: ", responses.SERVER_NAME, b"\r\n",
            b"Content-Type: ", responses.content_type(path).encode(), b"\r\n",
            b"Content-Length: ", str(self.size).encode(), b"\r\n", *validators))
        self._ready = (b"", b"")
        self.referenced = True       # CLOCK's use bit: a new entry survives one sweep

    def same_file(self, st: os.stat_result) -> bool:
        """Whether the name still leads to this file, unchanged. The inode matters: a symlink
        re-pointed (out of the root, say) at a file of the same size and mtime is another file,
        to be loaded, and so checked, again. So do the ctime and mode: a `chmod 000` (or chown)
        changes neither mtime nor size, and a file whose permissions were revoked must be opened
        again, so that the open's refusal is what the client hears, not the bytes we kept."""
        return (st.st_mtime_ns == self.mtime_ns and st.st_size == self.size
                and st.st_ino == self.ino and st.st_dev == self.dev
                and st.st_ctime_ns == self.ctime_ns and st.st_mode == self.mode)

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
        """After the status line and Date of a 304: the validators a 200 would carry, if any
        (an unstable file gets a 304 only for `If-None-Match: *`, and has none)."""
        if not self.stable:
            return b"Server: " + responses.SERVER_NAME + b"\r\n"
        return b"".join((b"Server: ", responses.SERVER_NAME, b"\r\n",
                         b"Last-Modified: ", self.last_modified, b"\r\n",
                         b"ETag: ", self.etag, b"\r\n"))


def _modified_s(mtime_s: int, ctime_s: int) -> int:
    """The Last-Modified time of a file: its mtime, unless that is in the future; then its ctime
    (every write moves the ctime too, so no change of its bytes is later, and `touch -d` or tar
    set the mtime but leave the ctime at now), or failing that, now. Not just now: each worker
    thread loads a file into its own table, at its own time, and they must send the same date,
    or one worker's date would be a 412 on another (If-Unmodified-Since)."""
    now = int(time.time())
    if mtime_s <= now:
        return mtime_s
    return ctime_s if 0 < ctime_s <= now else now


class FileCache:
    """`lookup(relpath)` for every worker thread; each thread's entries live in its own `_Table`."""

    def __init__(self, root: str, *, max_bytes: int = 64 << 20, max_file_bytes: int = 1 << 20):
        self.root = os.path.realpath(root)
        if not os.path.isdir(self.root):
            raise NotADirectoryError(self.root)
        # What every path inside the root starts with. The root "/" already ends with the
        # separator: adding another would give "//", which no resolved path starts with.
        self._inside = self.root if self.root.endswith(os.sep) else self.root + os.sep
        self.max_bytes = max_bytes                       # per thread
        self.max_file_bytes = min(max_file_bytes, max_bytes)
        self._local = threading.local()
        self._tables: list[_Table] = []                  # every thread's, for the totals
        self._tables_lock = threading.Lock()

    def __len__(self) -> int:
        """Entries over all threads' tables (exact once the workers have stopped)."""
        return sum(len(t.entries) for t in list(self._tables))

    @property
    def cached_bytes(self) -> int:
        return sum(t.bytes for t in list(self._tables))

    @property
    def loads(self) -> int:
        return sum(t.loads for t in list(self._tables))

    def _table(self) -> "_Table":
        table = getattr(self._local, "table", None)
        if table is None:
            table = self._local.table = _Table()
            with self._tables_lock:
                self._tables.append(table)
        return table

    def lookup(self, relpath: str) -> CachedFile | None:
        """The file that `relpath` (from paths.target_to_relpath) names, or None for a 404.

        Raises Unavailable when the file cannot be served for another reason than being absent,
        and NeedsSlash for a folder named without its trailing slash (but not the root, "").
        """
        full = os.path.join(self.root, relpath)
        try:
            st = os.stat(full)
            if stat.S_ISDIR(st.st_mode):
                full = os.path.join(full, INDEX)
                st = self._index_stat(full, relpath)
                if st is None:
                    return None
        except ValueError:
            return None
        except OSError as exc:
            # Only a name inside the root may get an answer other than 404: through a symlink
            # leading out of it, a 301 or 403 would tell which paths exist out there.
            return _missing_or_raise(exc) if self._resolved_inside(full) is not None else None
        if not stat.S_ISREG(st.st_mode):
            return None
        table = self._table()
        entry = table.entries.get(full)
        if entry is not None and entry.same_file(st):
            entry.referenced = True
            return entry
        entry = self._load(full)
        if entry is not None and entry.stable:
            table.insert(full, entry, self.max_bytes)
        return entry

    def _index_stat(self, index: str, relpath: str) -> os.stat_result | None:
        """The stat of a folder's index.html, to serve it (a hit costs this one stat). Without
        one (no such name, or not a file) the folder is a 403, as we list no folders; with one,
        a name without its slash is a 301. None (a 404) when the index, or the folder, leads out
        of the root: a 403 or 301 there would tell which paths exist outside. OSErrors other
        than a missing name pass to the caller, which answers them as for any file."""
        try:
            st = os.stat(index)
        except OSError as exc:
            if exc.errno not in _MISSING:
                raise
            st = None
        has_index = st is not None and stat.S_ISREG(st.st_mode)
        if has_index and (not relpath or relpath.endswith("/")):
            return st                        # served; _load checks where it leads
        if self._resolved_inside(index) is None:
            return None
        if not has_index:
            raise Unavailable(403, detail=NO_LISTING)
        raise NeedsSlash(relpath)

    def _resolved_inside(self, path: str) -> str | None:
        """`path` with its symlinks followed, if that is the root or inside it; else None."""
        real = os.path.realpath(path)
        return real if real == self.root or real.startswith(self._inside) else None

    def _load(self, full: str) -> CachedFile | None:
        real = self._resolved_inside(full)
        if real is None:
            return None                      # a symbolic link that leads out of the root
        try:
            # O_NONBLOCK: if the name became a FIFO since the stat, opening it must not wait
            fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK)
        except OSError as exc:
            return _missing_or_raise(exc)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            body = None
            size = st.st_size
            if size <= self.max_file_bytes:
                # A size of 0 may be procfs saying "made when read": read such a file to its end
                body = _read_all(fd, size) if size else _read_to_end(fd, self.max_file_bytes)
                size = len(body)              # it may have changed while we read: serve what we read
        except OSError as exc:
            return _missing_or_raise(exc)
        finally:
            os.close(fd)
        # Bytes that the stat does not describe (procfs' 0, sysfs' 4096, a file changing as we
        # read) are served as read but not kept, and without validators.
        stable = body is None or (st.st_size > 0 and size == st.st_size)
        return CachedFile(full, size, st.st_mtime_ns, body, st.st_dev, st.st_ino,
                          st.st_ctime_ns, st.st_mode, stable)

    def open_cached(self, entry: CachedFile) -> int:
        """A descriptor for sending `entry`'s bytes from disk (a file too large to cache), or -1
        for a 404; raises Unavailable for other failures. Called before its 200 head goes out,
        so that a file we cannot open gets an error reply, not a head promising a body.

        Its name is resolved and checked again, as the name may lead elsewhere by now (a symlink
        re-pointed out of the root), and the file opened must be the very file whose headers
        were built: same device and inode, still a regular file, and the same size and mtime
        (what its Content-Length and ETag say). One replaced since (a new version renamed over
        it) or rewritten in place (`cp` over it keeps the inode) is a 503: the client's retry
        gets the new one. A pipelined request waits for the replies before it, which may take
        long, so this is not only a narrow race; unchecked, the old version's head went out over
        the new bytes: a 200 a cache would keep under the old ETag, or a body cut short.
        """
        real = self._resolved_inside(entry.path)
        if real is None:
            return -1
        try:
            fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK)
        except OSError as exc:
            _missing_or_raise(exc)
            return -1
        st = os.fstat(fd)
        if (not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (entry.dev, entry.ino)
                or (st.st_size, st.st_mtime_ns) != (entry.size, entry.mtime_ns)):
            os.close(fd)
            raise Unavailable(503, b"Retry-After: 1\r\n")
        return fd


class _Table:
    """One thread's entries, oldest first (insertion order is the CLOCK's hand)."""

    __slots__ = ("entries", "bytes", "loads")

    def __init__(self) -> None:
        self.entries: dict[str, CachedFile] = {}
        self.bytes = 0
        self.loads = 0

    def insert(self, full: str, entry: CachedFile, max_bytes: int) -> None:
        old = self.entries.pop(full, None)
        if old is not None and old.body is not None:
            self.bytes -= len(old.body)
        self.entries[full] = entry
        if entry.body is not None:
            self.bytes += len(entry.body)
        self.loads += 1
        while self.bytes > max_bytes:
            self._evict_one()

    def _evict_one(self) -> None:
        """Drop the oldest entry not used since the sweep last passed it."""
        entries = self.entries
        while True:
            key = next(iter(entries))
            entry = entries.pop(key)
            if entry.referenced:
                entry.referenced = False
                entries[key] = entry          # a second chance, at the back
                continue
            if entry.body is not None:
                self.bytes -= len(entry.body)
            return


def _missing_or_raise(exc: OSError) -> None:
    """None (a 404) for a name that leads nowhere; raises Unavailable for anything else."""
    refusal = _refusal(exc)
    if refusal is None:
        return None
    raise refusal from exc


def _read_to_end(fd: int, limit: int) -> bytes:
    """All of a file whose length the stat does not tell; over `limit` bytes it is a 500: it
    cannot be sent from disk (its length must precede it) and must not be sent cut short."""
    chunks = []
    total = 0
    while chunk := os.read(fd, 64 * 1024):
        total += len(chunk)
        if total > limit:
            raise Unavailable(500)
        chunks.append(chunk)
    return b"".join(chunks)


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
