"""A bounded LRU cache of file blocks, so serving a hot file costs no disk I/O, only crypto.

Blocks are keyed by the file's identity *and version* (device, inode, mtime, ctime, size), so a
file changed behind the server's back is re-read once its stat changes; writes made through the
server also drop the file's blocks explicitly, because mtime granularity can hide two quick writes.
The ctime is there because mtime and size can be put back (`touch -r`, os.utime) after the contents
changed, and because it alone changes on chmod/chown: a file whose permissions were revoked is
opened afresh at its next READ, which then gets the error the open gets, instead of cached bytes.
Nothing is held open between misses: each miss opens the file and closes it again. Not thread-safe
on purpose: it belongs to the file layer, whose callbacks all run on one color.
"""
from __future__ import annotations

import os
from collections import OrderedDict

DEFAULT_BLOCK = 256 * 1024     # the largest READ, so an aligned READ is one zero-copy slice


class FileChanged(Exception):
    """The file at the path is not (or no longer) the one the caller's stat describes: it was
    replaced, truncated or written between that stat and the read. Nothing was cached."""


def _version(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


class BlockCache:
    def __init__(self, capacity_bytes: int, block_size: int = DEFAULT_BLOCK, open_file=None) -> None:
        if capacity_bytes < block_size:
            raise ValueError(f"cache of {capacity_bytes} bytes cannot hold one {block_size}-byte block")
        self.capacity = capacity_bytes
        self.block_size = block_size
        # how a block's file is opened for reading (the file layer passes its symlink-safe opener)
        self._open = open_file or (lambda path: os.open(path, os.O_RDONLY | os.O_NOFOLLOW))
        self._blocks: OrderedDict[tuple, bytes] = OrderedDict()
        self._by_file: dict[tuple, set] = {}
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def read(self, path: str, st: os.stat_result, start: int, end: int):
        """Bytes [start, end) of the file (end <= size): a memoryview when one block holds them."""
        bs = self.block_size
        first, last = start // bs, (end - 1) // bs
        if first == last:
            base = first * bs
            return memoryview(self._block(path, st, first))[start - base:end - base]
        pieces = []
        for idx in range(first, last + 1):
            block = self._block(path, st, idx)
            base = idx * bs
            pieces.append(memoryview(block)[max(start, base) - base:min(end, base + bs) - base])
        return b"".join(pieces)

    def _block(self, path: str, st: os.stat_result, idx: int) -> bytes:
        file_id = (st.st_dev, st.st_ino)
        key = (file_id, st.st_mtime_ns, st.st_ctime_ns, st.st_size, idx)
        block = self._blocks.get(key)
        if block is not None:
            self._blocks.move_to_end(key)
            self.hits += 1
            return block
        self.misses += 1
        # The file opened must be the one `st` describes, before and after the pread: one
        # swapped in or truncated since the caller's stat had its bytes cached (and served)
        # under the old file's key (a hard link to the server's key, a file cut short: a READ
        # with neither data nor EOF). FileChanged instead; the caller stats again.
        version = _version(st)
        fd = self._open(path)
        try:
            if _version(os.fstat(fd)) != version:
                raise FileChanged(path)
            block = os.pread(fd, self.block_size, idx * self.block_size)
            if (_version(os.fstat(fd)) != version
                    or len(block) != min(self.block_size, st.st_size - idx * self.block_size)):
                raise FileChanged(path)
        finally:
            os.close(fd)
        self._blocks[key] = block
        self._by_file.setdefault(file_id, set()).add(key)
        self.bytes += len(block)
        while self.bytes > self.capacity:
            old_key, old = self._blocks.popitem(last=False)
            self.bytes -= len(old)
            keys = self._by_file.get(old_key[0])
            if keys is not None:
                keys.discard(old_key)
                if not keys:
                    del self._by_file[old_key[0]]
        return block

    def invalidate(self, st: os.stat_result) -> None:
        """Forget every cached block of the file `st` describes (after a write or remove)."""
        for key in self._by_file.pop((st.st_dev, st.st_ino), ()):
            block = self._blocks.pop(key, None)
            if block is not None:
                self.bytes -= len(block)
