"""Reaching a path inside the export so that no symlink, even one swapped in a moment ago, leads out.

The file layer keeps resolved paths: symlinks were followed, and the result checked to be inside
the export, when the name was looked up. Someone who can write in the export directly (not through
the server, which has no SYMLINK) could then replace a directory on such a path with a
symlink to `/etc`; a plain `open(path)` would follow it. Here every component is opened relative
to the one before it with O_NOFOLLOW, starting from a descriptor of the export root taken once at
start-up, so a symlink anywhere on the path makes the call fail (ELOOP, ENOTDIR) instead of leaving
the export. Linux's openat2(RESOLVE_BENEATH) does this in one call, but Python's `os` lacks it.

A file directly in the export costs one system call, as a plain lstat/open would.

Every open is also non-blocking (O_NONBLOCK, which regular files and directories ignore): opening a
FIFO for writing would otherwise wait for a reader, and hold up the whole file layer meanwhile.
Callers check what they opened (the file layer serves only regular files and directories).
"""
from __future__ import annotations

import errno
import os

_WALK = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Beneath:
    def __init__(self, root: str) -> None:
        self.root = root
        # what every path below the root starts with: "/" itself for an export of "/", not "//"
        self.prefix = root if root.endswith(os.sep) else root + os.sep
        self.root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def _parts(self, path: str) -> list[str]:
        if path == self.root:
            return []
        if not path.startswith(self.prefix):
            raise PermissionError(errno.EACCES, "path outside the export", path)
        return path[len(self.prefix):].split(os.sep)

    def _parent(self, parts: list[str]) -> int:
        """A descriptor of the directory holding parts[-1]; the caller closes it unless it is root_fd."""
        fd = self.root_fd
        try:
            for part in parts[:-1]:
                nxt = os.open(part, _WALK, dir_fd=fd)
                self._release(fd)
                fd = nxt
        except BaseException:
            self._release(fd)
            raise
        return fd

    def _release(self, fd: int) -> None:
        if fd != self.root_fd:
            os.close(fd)

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        """os.open(path, flags | O_NOFOLLOW | O_NONBLOCK) with no symlink followed anywhere on the
        path; it never waits (a FIFO with no reader gives ENXIO instead of blocking)."""
        flags |= os.O_NONBLOCK | os.O_CLOEXEC
        parts = self._parts(path)
        if not parts:
            return os.open(".", flags, dir_fd=self.root_fd)
        parent = self._parent(parts)
        try:
            return os.open(parts[-1], flags | os.O_NOFOLLOW, mode, dir_fd=parent)
        finally:
            self._release(parent)

    def lstat(self, path: str) -> os.stat_result:
        """os.lstat(path), with no symlink followed on the way to its last component."""
        parts = self._parts(path)
        if not parts:
            return os.stat(self.root_fd)
        parent = self._parent(parts)
        try:
            return os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        finally:
            self._release(parent)

    def rename(self, src: str, dst: str) -> None:
        """os.rename(src, dst) with no symlink followed on the way to either parent: atomic, and
        it replaces an existing `dst` (a symlink at either end is renamed or replaced, not followed)."""
        src_parts, dst_parts = self._parts(src), self._parts(dst)
        if not src_parts or not dst_parts:
            raise PermissionError(errno.EACCES, "the export root cannot be renamed or replaced", src)
        src_parent = self._parent(src_parts)
        try:
            dst_parent = self._parent(dst_parts)
            try:
                os.rename(src_parts[-1], dst_parts[-1], src_dir_fd=src_parent, dst_dir_fd=dst_parent)
            finally:
                self._release(dst_parent)
        finally:
            self._release(src_parent)

    def unlink(self, path: str) -> None:
        parts = self._parts(path)
        if not parts:
            raise IsADirectoryError(errno.EISDIR, "the export root", path)
        parent = self._parent(parts)
        try:
            os.unlink(parts[-1], dir_fd=parent)
        finally:
            self._release(parent)
