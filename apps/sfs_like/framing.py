"""Length-prefixed frames: the only way bytes become messages, with a hard size limit.

Every message on the wire is a 4-byte big-endian length followed by that many bytes. A frame
longer than the limit is refused before any of it is buffered, so one client cannot make the
server allocate unbounded memory by announcing a huge length.
"""
from __future__ import annotations

import struct

LENGTH = struct.Struct(">I")
HEADER_SIZE = LENGTH.size

MAX_IO = 256 * 1024                      # largest READ count / WRITE payload
MAX_FRAME = MAX_IO + 1024                # largest frame body: I/O data plus RPC header and MAC
MAX_HANDSHAKE_FRAME = 256                # a hello is ~80 bytes; anything bigger is garbage


class FrameError(Exception):
    """The peer broke the framing rules; the connection cannot continue. `head`: the announced
    length's 4 bytes as received, when that was the fault (b"GET " from an HTTP client)."""

    def __init__(self, message: str, head: bytes = b"") -> None:
        super().__init__(message)
        self.head = head


class FrameReader:
    """Accumulates received bytes and hands out complete frame bodies, in order."""

    __slots__ = ("_buf", "limit", "_first_limit")

    def __init__(self, limit: int = MAX_FRAME, first_limit: int | None = None) -> None:
        self._buf = bytearray()
        self.limit = limit
        self._first_limit = first_limit   # a tighter limit for the first frame (the hello)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return every frame body they complete (possibly none)."""
        buf = self._buf
        buf += data
        frames = []
        while len(buf) >= HEADER_SIZE:
            (length,) = LENGTH.unpack_from(buf, 0)
            limit = self.limit if self._first_limit is None else self._first_limit
            if length > limit:
                raise FrameError(f"frame of {length} bytes announced, the limit is {limit}",
                                 bytes(buf[:HEADER_SIZE]))
            end = HEADER_SIZE + length
            if len(buf) < end:
                break
            frames.append(bytes(buf[HEADER_SIZE:end]))
            del buf[:end]
            self._first_limit = None
        return frames

    @property
    def first_pending(self) -> bool:
        """True until the first frame (the hello) has been cut."""
        return self._first_limit is not None

    @property
    def partial(self) -> bool:
        """True while some bytes of an unfinished frame are buffered."""
        return bool(self._buf)

    @property
    def buffered(self) -> int:
        return len(self._buf)


def frame(body: bytes) -> bytes:
    """One plaintext frame (used only for the handshake; sealed frames come from a channel)."""
    if len(body) > MAX_FRAME:
        raise FrameError(f"refusing to send a {len(body)}-byte frame, the limit is {MAX_FRAME}")
    return LENGTH.pack(len(body)) + body
