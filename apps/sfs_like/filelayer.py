"""The file layer: file handles, path safety, the block cache, and the meaning of each RPC.

Everything here runs on one color (the file layer's own in colors-on mode), so the handle table and
the cache need no locks. It never touches sockets or keys: it turns a decrypted request into the
pieces of a plaintext reply, and the connection's crypto callback seals them.

Path safety: a LOOKUP/CREATE/REMOVE/RENAME name is one component. Empty names, names with '/' or NUL
(absolute or multi-component paths), '.' and '..' are refused, and every resolved path must stay
inside the export after symlinks are followed, so no name or symlink reaches outside it. A handle
stands for such a resolved path, and every later use of it goes through `beneath.py`, which
follows no symlink at all: one swapped into the path since the lookup makes the RPC fail.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import secrets
import stat

from . import rpc
from .beneath import Beneath
from .blockcache import BlockCache, FileChanged
from .framing import MAX_IO

_ERRNO_STATUS = {errno.ENOENT: rpc.NOENT, errno.EACCES: rpc.ACCES, errno.EPERM: rpc.ACCES,
                 errno.EEXIST: rpc.EXIST, errno.ENOTDIR: rpc.NOTDIR, errno.EISDIR: rpc.ISDIR,
                 errno.EINVAL: rpc.INVAL, errno.EFBIG: rpc.FBIG, errno.ENAMETOOLONG: rpc.NAMETOOLONG,
                 errno.ELOOP: rpc.ACCES, errno.ENXIO: rpc.INVAL,     # ENXIO: a FIFO with no reader
                 errno.ENOTEMPTY: rpc.EXIST,                       # RENAME over a non-empty directory
                 errno.EDQUOT: rpc.DQUOT}                          # Linux's 122 is the protocol's 69
MAX_FILE_SIZE = 1 << 40
READDIR_BUDGET = 32 * 1024      # name bytes per READDIR reply, far below the frame limit
READ_TRIES = 3                  # a READ whose file changes between its stat and its read stats again
# CREATE_TEMP's names. They are reserved (no client may create, look up, list or rename onto one),
# so every regular file so named is an upload, and those a killed server left can be removed.
UPLOAD_PREFIX = ".sfs-upload."
UPLOAD_NAME = re.compile(re.escape(UPLOAD_PREFIX) + "[0-9a-f]{16}")
_SUBDIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

log = logging.getLogger("sfs_like.filelayer")


def _ftype(mode: int) -> int:
    if stat.S_ISREG(mode):
        return rpc.FT_FILE
    if stat.S_ISDIR(mode):
        return rpc.FT_DIR
    if stat.S_ISLNK(mode):
        return rpc.FT_SYMLINK
    return rpc.FT_OTHER


_KIND = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
         (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symlink"))


def _require_regular(st: os.stat_result, what: str) -> None:
    """RpcError unless `st` is a regular file: ISDIR for a directory, INVAL for anything else
    (FIFO, socket, device, symlink): the server reads and writes regular files only."""
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise rpc.RpcError(rpc.ISDIR, f"{what} of a directory: not a regular file")
    kind = next((name for test, name in _KIND if test(mode)), "a special file")
    raise rpc.RpcError(rpc.INVAL, f"{what} of {kind}: not a regular file")


def _attr(st: os.stat_result) -> bytes:
    return rpc.ATTR.pack(_ftype(st.st_mode), stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns)


def _remove_uploads(dir_fd: int, where: str) -> int:
    """Remove the regular files with an upload's name in the directory `dir_fd` and below it;
    how many. Subdirectories are opened relative to their parent with O_NOFOLLOW | O_DIRECTORY,
    so no symlink is followed, not even one swapped in for a directory meanwhile, and no open
    blocks (a FIFO swapped in is not a directory). An entry that cannot be read or removed is
    skipped with a warning: the server can serve the rest."""
    with os.scandir(dir_fd) as listing:
        entries = list(listing)         # all read before any is removed
    removed = 0
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                fd = os.open(entry.name, _SUBDIR, dir_fd=dir_fd)
                try:
                    removed += _remove_uploads(fd, os.path.join(where, entry.name))
                finally:
                    os.close(fd)
            elif UPLOAD_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                os.unlink(entry.name, dir_fd=dir_fd)
                removed += 1
        except OSError as exc:
            log.warning("looking for stale uploads: skipped %s: %s",
                        os.path.join(where, entry.name), exc.strerror or exc)
    return removed


class Durable(list):
    """Reply pieces that may be sent only once `fds` are on disk: see FileLayer.finish()."""

    def __init__(self, parts: list, xid: int, fds: list[int]) -> None:
        super().__init__(parts)
        self.xid = xid
        self.fds = fds


class FileLayer:
    """`handle(request)` -> reply pieces. With `sync_later`, the fsyncs that make a WRITE, CREATE,
    REMOVE or RENAME durable are not done here but handed back in a `Durable` reply, for `finish()` to do
    on another color: the file layer's own color never waits for the disk, so one client's WRITE
    does not hold up everybody's cached READs. Without it (the default), they are done at once."""

    def __init__(self, export: str, cache_bytes: int = 64 << 20, *, sync_later: bool = False,
                 hidden: tuple = (), hidden_ids: tuple = ()) -> None:
        self.root = os.path.realpath(export)
        self.hidden = frozenset(hidden)     # resolved paths never served (the server's key)
        self.hidden_ids = frozenset(hidden_ids)     # (st_dev, st_ino) never served: a hard link
        if not os.path.isdir(self.root):
            raise NotADirectoryError(f"export {export!r} is not a directory")
        self.fs = Beneath(self.root)
        self.cache = BlockCache(cache_bytes, open_file=lambda path: self.fs.open(path, os.O_RDONLY))
        self._paths: dict[int, str] = {rpc.ROOT_FH: self.root}
        self._handles: dict[str, int] = {self.root: rpc.ROOT_FH}
        # unfinished uploads (CREATE_TEMP): path -> owner, the connection whose end removes them
        self._temps: dict[str, object] = {}
        self._owned: dict[object, set[str]] = {}    # owner -> the paths of its `_temps`
        self._owner = None                  # the owner of the request being handled
        self.sync_later = sync_later
        self._unsynced: list[int] = []      # fds the current request must fsync before replying
        self._procs = {rpc.LOOKUP: self._lookup, rpc.GETATTR: self._getattr,
                       rpc.READDIR: self._readdir, rpc.READ: self._read, rpc.WRITE: self._write,
                       rpc.CREATE: self._create, rpc.REMOVE: self._remove,
                       rpc.RENAME: self._rename, rpc.CREATE_TEMP: self._create_temp}

    # ---- entry point

    def handle(self, request: bytes, owner=None) -> list:
        """Reply pieces for one decrypted request; errors become error replies, never exceptions.
        `owner` (the server passes its connection) owns the temporary files CREATE_TEMP makes."""
        self._owner = owner
        parts = self._handle(request)
        unsynced, self._unsynced = self._unsynced, []
        if not unsynced:
            return parts
        xid = rpc.U32.unpack_from(request, 0)[0]
        durable = Durable(parts, xid, unsynced)
        return durable if self.sync_later else self.finish(durable)

    @staticmethod
    def finish(reply: list) -> list:
        """What to send for `reply`: after its fsyncs, if it has any; an I/O error if one failed.
        It touches no state of the layer, so it may run on any color (the connection's)."""
        if type(reply) is not Durable:
            return reply
        failed = None
        for fd in reply.fds:
            try:
                os.fsync(fd)
            except OSError as exc:
                failed = failed or exc
            finally:
                os.close(fd)
        if failed is not None:
            return [rpc.rep_error(reply.xid, rpc.IO, f"not on disk: fsync failed: {failed.strerror}")]
        return list(reply)

    def release(self, owner) -> None:
        """`owner` is gone (its connection closed): remove its unfinished uploads. A client killed
        mid-put left its temporary file in the export for good, listed and readable."""
        for path in list(self._owned.get(owner, ())):
            self._untrack(path)
            self._forget(path)
            try:
                self.fs.unlink(path)
            except OSError:         # removed or moved behind the server's back: nothing to do
                pass

    def remove_stale_uploads(self) -> int | None:
        """Remove the uploads (CREATE_TEMP files) anywhere in the export, and return how many: at
        start-up, the ones a server killed mid-put left, which no connection owns any more and
        which would stay for good. No client can give a file an upload's name (`_child`), so all
        are uploads, but another server serving the same export (the benchmark runs several) may
        have some in progress. So every server holds a shared lock on the export for as long as it
        runs (flock: it goes with the process, however that ends), and sweeps only if it can take
        the lock alone first: None when another server holds it (or the file system has no
        flock), and the stale uploads wait for a server that starts alone."""
        lock = os.open(".", _SUBDIR, dir_fd=self.fs.root_fd)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            removed = None
        else:
            removed = _remove_uploads(lock, self.root)
        try:
            fcntl.flock(lock, fcntl.LOCK_SH)
        except OSError:
            pass            # no flock here: then no server sweeps, as above
        self._export_lock = lock        # held, never closed: the lock lasts as long as we run
        return removed

    def _untrack(self, path: str) -> None:
        """`path` is no longer an unfinished upload (RENAMEd into place, REMOVEd, or its owner
        gone): it stops counting towards its owner's MAX_TEMPS."""
        if path in self._temps:
            owner = self._temps.pop(path)
            self._owned[owner].discard(path)
            if not self._owned[owner]:
                del self._owned[owner]

    def _durable(self, fd: int) -> None:
        """Take over `fd`: it is fsynced (and closed) before this request's reply goes out."""
        self._unsynced.append(fd)

    def _handle(self, request: bytes) -> list:
        if len(request) < rpc.REQ_HEAD.size:
            # its xid if it has one (a request of 4 bytes was answered as xid 0): the client
            # matches replies by xid
            xid = rpc.U32.unpack_from(request, 0)[0] if len(request) >= rpc.U32.size else 0
            return [rpc.rep_error(xid, rpc.INVAL, "request shorter than its header")]
        xid, proc = rpc.REQ_HEAD.unpack_from(request, 0)
        fn = self._procs.get(proc)
        if fn is None:
            return [rpc.rep_error(xid, rpc.BADPROC, f"unknown procedure {proc}")]
        try:
            return fn(xid, memoryview(request)[rpc.REQ_HEAD.size:])
        except rpc.MalformedRequest as exc:
            return [rpc.rep_malformed(xid, proc, exc.message)]
        except rpc.RpcError as exc:
            return [rpc.rep_error(xid, exc.status, exc.message)]
        except OSError as exc:
            status = _ERRNO_STATUS.get(exc.errno, rpc.IO)
            return [rpc.rep_error(xid, status, os.strerror(exc.errno) if exc.errno else str(exc))]
        except Exception as exc:  # malformed arguments (struct.error, ...) must not kill the server
            return [rpc.rep_malformed(xid, proc, str(exc))]

    # ---- handles and names

    def _path(self, fh: int) -> str:
        path = self._paths.get(fh)
        if path is None:
            raise rpc.RpcError(rpc.STALE, f"unknown or stale file handle {fh}")
        return path

    def _handle_for(self, path: str) -> int:
        fh = self._handles.get(path)
        if fh is None:
            fh = self._new_handle()
            self._handles[path] = fh
            self._paths[fh] = path
        return fh

    def _new_handle(self) -> int:
        """A handle no client can guess from those it holds: random over the handle's whole wire
        width, not in use, never 0 or the root's. Handles were sequential, so a client could
        count its way to the hidden upload (CREATE_TEMP) of another client and READ or WRITE it."""
        while True:
            fh = secrets.randbits(rpc.FH.size * 8)
            if fh not in (0, rpc.ROOT_FH) and fh not in self._paths:
                return fh

    def _forget(self, path: str) -> None:
        fh = self._handles.pop(path, None)
        if fh is not None:
            del self._paths[fh]

    def _under(self, top: str) -> list[str]:
        """The paths with handles at or below `top`."""
        below = top + os.sep
        return [path for path in self._handles if path == top or path.startswith(below)]

    def _moved(self, src: str, dst: str) -> None:
        """After a RENAME of `src` to `dst`: handles of `src` (and, for a directory, of everything
        under it) now name the new path, as NFS handles survive a rename; handles of what `dst`
        replaced go stale."""
        if src == dst:
            return
        for path in self._under(dst):
            self._forget(path)
        for path in self._under(src):
            fh = self._handles.pop(path)
            new = dst + path[len(src):]
            self._handles[new] = fh
            self._paths[fh] = new
            if path == src:                 # finished, if an upload: RENAME of itself
                self._untrack(path)
            elif path in self._temps:       # an upload in a moved directory: still one
                owner = self._temps[new] = self._temps.pop(path)
                self._owned[owner].discard(path)
                self._owned[owner].add(new)

    def _inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self.fs.prefix)

    @staticmethod
    def _dir_and_name(args, offset: int = 0) -> tuple[int, str, int]:
        """(dir fh, name, offset after them) of the pair at `offset`; MalformedRequest if it
        does not fit. Nothing is checked but the layout: see _check_name()."""
        if len(args) < offset + rpc.FH.size:
            raise rpc.MalformedRequest(f"{len(args) - offset} bytes where a file handle and a "
                                       "name should be")
        (dir_fh,) = rpc.FH.unpack_from(args, offset)
        name, end = rpc.unpack_name(args, offset + rpc.FH.size)
        return dir_fh, name, end

    def _names(self, args, pairs: int) -> list[tuple[int, str]]:
        """The `pairs` (dir fh, name) pairs that make up all of `args`. The whole layout is
        parsed, and every name checked, before anything else: a RENAME whose arguments were cut
        short got `empty name` or STALE (its first pair checked before its second was parsed),
        not the INVAL `malformed` PROTOCOL.md promises, and an invalid to-name got NOTDIR or
        STALE from the from-pair's handle, where a LOOKUP's gets INVAL whatever its handle."""
        out, end = [], 0
        for _ in range(pairs):
            dir_fh, name, end = self._dir_and_name(args, end)
            out.append((dir_fh, name))
        rpc.check_end(args, end)
        for _, name in out:
            self._check_name(name)
        return out

    @staticmethod
    def _check_name(name: str) -> None:
        """RpcError unless `name` is one path component (PROTOCOL.md), whatever the directory."""
        if not name:
            raise rpc.RpcError(rpc.INVAL, "empty name")
        if "/" in name or "\0" in name:
            raise rpc.RpcError(rpc.INVAL, f"name {name!r} is not one path component "
                                          "(absolute and multi-component paths are refused)")
        if name in (".", ".."):
            raise rpc.RpcError(rpc.INVAL, f"name {name!r} is refused: it would leave the directory")
        if len(name.encode()) > 255:
            raise rpc.RpcError(rpc.NAMETOOLONG, "name longer than 255 bytes")

    def _child(self, dir_fh: int, name: str, *, resolve: bool = True,
               temp: bool = False) -> tuple[str, str]:
        """(candidate path, resolved path) for `dir_fh, name` (a name _names() checked), after
        every safety check. An unfinished upload, or any upload's name, is named only with
        `temp` (REMOVE it, RENAME it into place)."""
        dir_path = self._path(dir_fh)
        if not stat.S_ISDIR(self.fs.lstat(dir_path).st_mode):
            raise rpc.RpcError(rpc.NOTDIR, "file handle is not a directory")
        candidate = os.path.join(dir_path, name)
        real = os.path.realpath(candidate) if resolve else candidate
        if not self._inside(real):
            raise rpc.RpcError(rpc.ACCES, f"{name!r} is a symlink leading out of the export")
        if real in self.hidden or candidate in self.hidden or self._is_hidden_file(real):
            raise rpc.RpcError(rpc.ACCES, f"{name!r} is not served (the server's private key)")
        if not temp and (real in self._temps or candidate in self._temps):
            raise rpc.RpcError(rpc.ACCES, f"{name!r} is an unfinished upload (CREATE_TEMP)")
        if not temp and UPLOAD_NAME.fullmatch(name):
            raise rpc.RpcError(rpc.ACCES, f"{name!r} is reserved for unfinished uploads (CREATE_TEMP)")
        return candidate, real

    def _refuse_hidden(self, st: os.stat_result) -> None:
        """ACCES if `st` is a hidden file (the key) by identity. RPCs by handle check what they
        stat or open: the file at a handle's path may have been replaced since its LOOKUP (a
        hard link to the key renamed over it), and READ served, WRITE overwrote, the key."""
        if self.hidden_ids and (st.st_dev, st.st_ino) in self.hidden_ids:
            raise rpc.RpcError(rpc.ACCES, "this file is not served (the server's private key)")

    def _is_hidden_file(self, path: str) -> bool:
        """Whether `path` (not followed if a symlink) is a hidden file by identity: a hard link
        to the key has another path but the same (st_dev, st_ino). Only names pay this lstat
        (LOOKUP, CREATE, REMOVE, RENAME); a READ goes by a handle that passed it."""
        if not self.hidden_ids:
            return False
        try:
            st = os.lstat(path)
        except OSError:             # no such file (a CREATE): the RPC itself reports the rest
            return False
        return (st.st_dev, st.st_ino) in self.hidden_ids

    # ---- procedures

    def _lookup(self, xid: int, args) -> list:
        ((dir_fh, name),) = self._names(args, 1)
        _, real = self._child(dir_fh, name)
        st = self.fs.lstat(real)
        return [rpc.REP_HEAD.pack(xid, rpc.OK) + rpc.FH.pack(self._handle_for(real)) + _attr(st)]

    def _getattr(self, xid: int, args) -> list:
        (fh,) = rpc.unpack_args(rpc.FH, args)
        st = self.fs.lstat(self._path(fh))
        self._refuse_hidden(st)
        return [rpc.REP_HEAD.pack(xid, rpc.OK) + _attr(st)]

    def _readdir(self, xid: int, args) -> list:
        fh, cookie = rpc.unpack_args(rpc.READDIR_ARGS, args)
        dir_path = self._path(fh)
        dir_fd = self.fs.open(dir_path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            names = sorted(os.listdir(dir_fd))
            entries, used, i = [], 0, cookie
            while i < len(names) and used < READDIR_BUDGET:
                name = names[i]
                try:
                    name.encode("utf-8")    # names are UTF-8 on the wire; one that is not cannot
                    ftype = _ftype(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
                except UnicodeEncodeError:  # be named in a request either: it is not listed
                    ftype = None
                except FileNotFoundError:
                    ftype = None
                if ftype is not None and not UPLOAD_NAME.fullmatch(name):
                    entries.append((name, ftype))
                    used += len(name.encode("utf-8")) + 3
                i += 1
        finally:
            os.close(dir_fd)
        body = rpc.pack_entries(entries, i >= len(names), i)
        return [rpc.REP_HEAD.pack(xid, rpc.OK) + body]

    def _read(self, xid: int, args) -> list:
        fh, offset, count = rpc.unpack_args(rpc.READ_ARGS, args)
        if count > MAX_IO:
            raise rpc.RpcError(rpc.INVAL, f"READ of {count} bytes, the limit is {MAX_IO}")
        path = self._path(fh)
        for _ in range(READ_TRIES):
            st = self.fs.lstat(path)    # handles name resolved paths: a symlink here was swapped in since
            self._refuse_hidden(st)
            _require_regular(st, "READ")
            size = st.st_size
            end = min(size, offset + count)
            if count == 0 or offset >= size:
                return [rpc.READ_REPLY_HEAD.pack(xid, rpc.OK, 1 if offset >= size else 0)]
            try:
                data = self.cache.read(path, st, offset, end)
            except FileChanged:         # replaced or cut short since the lstat: look again
                continue
            return [rpc.READ_REPLY_HEAD.pack(xid, rpc.OK, 1 if end >= size else 0), data]
        raise rpc.RpcError(rpc.IO, f"READ: the file changed under every one of {READ_TRIES} tries "
                                   "(written to or replaced meanwhile): try again")

    def _write(self, xid: int, args) -> list:
        """Write the rest of the request at `offset`. The data is bounded like a READ's count
        (PROTOCOL.md: <= MAX_IO): the frame limit alone leaves room for 1 KiB more."""
        fh, offset = rpc.WRITE_HEAD.unpack_from(args, 0)
        data = args[rpc.WRITE_HEAD.size:]
        if len(data) > MAX_IO:
            raise rpc.RpcError(rpc.INVAL, f"WRITE of {len(data)} bytes, the limit is {MAX_IO}")
        if offset + len(data) > MAX_FILE_SIZE:
            raise rpc.RpcError(rpc.FBIG, "write beyond the 1 TiB file size limit")
        path = self._path(fh)
        fd = self._open_regular(path, os.O_WRONLY, "WRITE")
        try:
            st = os.fstat(fd)
            self.cache.invalidate(st)
            done = 0
            while done < len(data):
                done += os.pwrite(fd, data[done:], offset + done)
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        self._durable(fd)       # on disk before we say so
        return [rpc.REP_HEAD.pack(xid, rpc.OK) + rpc.U32.pack(done) + _attr(st)]

    def _create(self, xid: int, args) -> list:
        ((dir_fh, name),) = self._names(args, 1)
        candidate, real = self._child(dir_fh, name)
        fd = self._open_regular(real, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "CREATE", 0o644)
        try:
            st = os.fstat(fd)
            self.cache.invalidate(st)
        except BaseException:
            os.close(fd)
            raise
        self._durable(fd)
        self._fsync_dir(os.path.dirname(real))
        return [rpc.REP_HEAD.pack(xid, rpc.OK) + rpc.FH.pack(self._handle_for(real)) + _attr(st)]

    def _create_temp(self, xid: int, args) -> list:
        """A new empty file under a name the server picks, for an upload: hidden from READDIR
        and LOOKUP, and removed when its owner's connection ends, unless RENAMEd into place
        first (then it is an ordinary file). Reply: fh, attr, name. A connection may have
        MAX_TEMPS of them at once: beyond, DQUOT (it could fill the export with them)."""
        (dir_fh,) = rpc.unpack_args(rpc.FH, args)
        if len(self._owned.get(self._owner, ())) >= rpc.MAX_TEMPS:
            raise rpc.RpcError(rpc.DQUOT, f"{rpc.MAX_TEMPS} unfinished uploads (CREATE_TEMP) on this "
                                          "connection already: RENAME or REMOVE one first")
        dir_path = self._path(dir_fh)
        if not stat.S_ISDIR(self.fs.lstat(dir_path).st_mode):
            raise rpc.RpcError(rpc.NOTDIR, "file handle is not a directory")
        name = UPLOAD_PREFIX + secrets.token_hex(8)
        path = os.path.join(dir_path, name)
        fd = self._open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, "CREATE_TEMP", 0o644)
        self._temps[path] = self._owner
        self._owned.setdefault(self._owner, set()).add(path)
        st = os.fstat(fd)
        self._durable(fd)
        self._fsync_dir(dir_path)
        return [rpc.REP_HEAD.pack(xid, rpc.OK) + rpc.FH.pack(self._handle_for(path)) + _attr(st)
                + rpc.pack_name(name)]

    def _remove(self, xid: int, args) -> list:
        ((dir_fh, name),) = self._names(args, 1)
        candidate, _ = self._child(dir_fh, name, resolve=False, temp=True)
        st = self.fs.lstat(candidate)
        if stat.S_ISDIR(st.st_mode):
            raise rpc.RpcError(rpc.ISDIR, "REMOVE removes files; this is a directory")
        if stat.S_ISREG(st.st_mode):
            self.cache.invalidate(st)
        self.fs.unlink(candidate)
        self._forget(candidate)
        self._untrack(candidate)
        self._fsync_dir(os.path.dirname(candidate))
        return [rpc.REP_HEAD.pack(xid, rpc.OK)]

    def _rename(self, xid: int, args) -> list:
        """Atomically move one name to another, replacing what the second named: lets a client
        write a file under a temporary name and only then put it in place (an interrupted upload
        leaves the old file whole). Both names get every check a LOOKUP name gets; the names
        themselves are renamed (a symlink is moved, not followed). An upload (CREATE_TEMP) put
        over a regular file takes that file's permission bits, set-id bits aside, as cp and scp
        keep a replaced file's: `put` over a 0600 file must not make it world-readable."""
        (from_fh, from_name), (to_fh, to_name) = self._names(args, 2)
        src, _ = self._child(from_fh, from_name, temp=True)
        dst, _ = self._child(to_fh, to_name)
        st = self.fs.lstat(src)
        try:
            old = self.fs.lstat(dst)
        except FileNotFoundError:
            old = None
        if old is not None and stat.S_ISREG(old.st_mode) and not os.path.samestat(st, old):
            self.cache.invalidate(old)
            if src in self._temps and stat.S_ISREG(st.st_mode):
                fd = self.fs.open(src, os.O_RDONLY)
                try:
                    os.fchmod(fd, stat.S_IMODE(old.st_mode) & 0o777)
                except BaseException:
                    os.close(fd)
                    raise
                self._durable(fd)
        self.fs.rename(src, dst)
        self._moved(src, dst)
        self._fsync_dir(os.path.dirname(src))
        if os.path.dirname(dst) != os.path.dirname(src):
            self._fsync_dir(os.path.dirname(dst))
        return [rpc.REP_HEAD.pack(xid, rpc.OK)]

    def _open_regular(self, path: str, flags: int, what: str, mode: int = 0o644) -> int:
        """A descriptor of the regular file at `path` (created if `flags` say so), or RpcError.
        A FIFO, socket or device there is refused before it is opened (opening one can block, or
        do something), and what was opened is checked again, in case it was swapped in meanwhile.
        A symlink is not refused here: the open fails on it (ELOOP -> ACCES), as it always has."""
        try:
            st = self.fs.lstat(path)
        except FileNotFoundError:
            if not flags & os.O_CREAT:
                raise
        else:
            if not stat.S_ISLNK(st.st_mode):
                _require_regular(st, what)
        # O_TRUNC waits until what was opened is checked: the file there may have been
        # replaced since the checks on its name (by a hard link to the key, which it emptied)
        fd = self.fs.open(path, flags & ~os.O_TRUNC, mode)
        try:
            st = os.fstat(fd)
            _require_regular(st, what)
            self._refuse_hidden(st)
            if flags & os.O_TRUNC:
                os.ftruncate(fd, 0)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _fsync_dir(self, path: str) -> None:
        """The directory entry made or removed must be durable too."""
        self._durable(self.fs.open(path, os.O_RDONLY | os.O_DIRECTORY))
