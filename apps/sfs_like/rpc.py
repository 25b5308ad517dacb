"""The RPC messages carried inside sealed frames, in the spirit of NFSv3.

Request: u32 xid | u8 procedure | arguments.   Reply: u32 xid | u8 status | results, or on an error
status a UTF-8 message. File handles are opaque u64s issued by the server, random (PROTOCOL.md);
the export root is 1.
Only the layout lives here: the file layer decides what the calls mean.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

# procedures
LOOKUP, GETATTR, READDIR, READ, WRITE, CREATE, REMOVE, STATS, RENAME, CREATE_TEMP = range(1, 11)
PROC_NAMES = {LOOKUP: "LOOKUP", GETATTR: "GETATTR", READDIR: "READDIR", READ: "READ",
              WRITE: "WRITE", CREATE: "CREATE", REMOVE: "REMOVE", STATS: "STATS", RENAME: "RENAME",
              CREATE_TEMP: "CREATE_TEMP"}

# statuses (errno values, as NFSv3 does)
OK, NOENT, IO, ACCES, EXIST, NOTDIR, ISDIR, INVAL, FBIG, NAMETOOLONG, DQUOT, STALE, BADPROC = (
    0, 2, 5, 13, 17, 20, 21, 22, 27, 63, 69, 70, 99)
STATUS_NAMES = {OK: "OK", NOENT: "NOENT", IO: "IO", ACCES: "ACCES", EXIST: "EXIST",
                NOTDIR: "NOTDIR", ISDIR: "ISDIR", INVAL: "INVAL", FBIG: "FBIG",
                NAMETOOLONG: "NAMETOOLONG", DQUOT: "DQUOT", STALE: "STALE", BADPROC: "BADPROC"}

ROOT_FH = 1
MAX_OUTSTANDING = 64      # requests a client may have unanswered; the server disconnects beyond it
# unfinished uploads (CREATE_TEMP files) one connection may have at once; beyond it CREATE_TEMP
# gets DQUOT, so one client cannot fill the export and the server's memory with them
MAX_TEMPS = 64
FT_FILE, FT_DIR, FT_SYMLINK, FT_OTHER = 1, 2, 3, 4

REQ_HEAD = struct.Struct(">IB")          # xid, proc
REP_HEAD = struct.Struct(">IB")          # xid, status
FH = struct.Struct(">Q")
READ_ARGS = struct.Struct(">QQI")        # fh, offset, count
WRITE_HEAD = struct.Struct(">QQ")        # fh, offset (data follows)
READDIR_ARGS = struct.Struct(">QI")      # fh, cookie
ATTR = struct.Struct(">BIQQ")            # type, mode, size, mtime_ns
NAME_LEN = struct.Struct(">H")
U32 = struct.Struct(">I")
READ_REPLY_HEAD = struct.Struct(">IBB")  # xid, status, eof (data follows)


class RpcError(Exception):
    """A request the server answers with an error status (the connection stays open)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{STATUS_NAMES.get(status, f'status {status}')}: {message}")
        self.status = status
        self.message = message


class MalformedRequest(RpcError):
    def __init__(self, message: str) -> None:
        super().__init__(INVAL, message)


class ProtocolError(Exception):
    """The server broke the protocol (a bad frame or MAC, a reply to another request, results
    that do not fit their layout, a close mid-reply): the connection cannot be trusted further."""


@dataclass(frozen=True)
class Attr:
    type: int
    mode: int
    size: int
    mtime_ns: int

    def pack(self) -> bytes:
        return ATTR.pack(self.type, self.mode, self.size, self.mtime_ns)

    @classmethod
    def unpack(cls, data, offset: int = 0) -> "Attr":
        return cls(*ATTR.unpack_from(data, offset))


def pack_name(name: str) -> bytes:
    raw = name.encode("utf-8", "surrogateescape")
    return NAME_LEN.pack(len(raw)) + raw


def unpack_name(data, offset: int) -> tuple[str, int]:
    """A length-prefixed name and the offset after it; MalformedRequest if it does not fit."""
    if len(data) < offset + 2:
        raise MalformedRequest("name length missing")
    (n,) = NAME_LEN.unpack_from(data, offset)
    end = offset + 2 + n
    if len(data) < end:
        raise MalformedRequest("name runs past the end of the request")
    try:
        return bytes(data[offset + 2:end]).decode("utf-8"), end
    except UnicodeDecodeError:
        raise MalformedRequest("name is not UTF-8") from None


def unpack_args(layout: struct.Struct, data) -> tuple:
    """Arguments of fixed size that must be all of `data`: MalformedRequest if they are cut short
    or followed by more bytes, which a server must not half understand."""
    if len(data) < layout.size:
        raise MalformedRequest(f"{len(data)} bytes of arguments, expected {layout.size}")
    check_end(data, layout.size)
    return layout.unpack(data)


def check_end(data, offset: int) -> None:
    """MalformedRequest if `data` goes on past `offset`, where its arguments end."""
    if len(data) > offset:
        raise MalformedRequest(f"{len(data) - offset} trailing bytes")


# ---- requests (client side builds them, server side parses them in the file layer)

def req_lookup(xid: int, dir_fh: int, name: str) -> bytes:
    return REQ_HEAD.pack(xid, LOOKUP) + FH.pack(dir_fh) + pack_name(name)


def req_getattr(xid: int, fh: int) -> bytes:
    return REQ_HEAD.pack(xid, GETATTR) + FH.pack(fh)


def req_readdir(xid: int, fh: int, cookie: int) -> bytes:
    return REQ_HEAD.pack(xid, READDIR) + READDIR_ARGS.pack(fh, cookie)


def req_read(xid: int, fh: int, offset: int, count: int) -> bytes:
    return REQ_HEAD.pack(xid, READ) + READ_ARGS.pack(fh, offset, count)


def req_write_head(xid: int, fh: int, offset: int) -> bytes:
    return REQ_HEAD.pack(xid, WRITE) + WRITE_HEAD.pack(fh, offset)


def req_create(xid: int, dir_fh: int, name: str) -> bytes:
    return REQ_HEAD.pack(xid, CREATE) + FH.pack(dir_fh) + pack_name(name)


def req_create_temp(xid: int, dir_fh: int) -> bytes:
    return REQ_HEAD.pack(xid, CREATE_TEMP) + FH.pack(dir_fh)


def req_remove(xid: int, dir_fh: int, name: str) -> bytes:
    return REQ_HEAD.pack(xid, REMOVE) + FH.pack(dir_fh) + pack_name(name)


def req_rename(xid: int, from_dir_fh: int, from_name: str, to_dir_fh: int, to_name: str) -> bytes:
    return (REQ_HEAD.pack(xid, RENAME) + FH.pack(from_dir_fh) + pack_name(from_name)
            + FH.pack(to_dir_fh) + pack_name(to_name))


def req_stats(xid: int) -> bytes:
    return REQ_HEAD.pack(xid, STATS)


# ---- replies

def rep_error(xid: int, status: int, message: str) -> bytes:
    return REP_HEAD.pack(xid, status) + message.encode("utf-8", "replace")[:1024]


def rep_malformed(xid: int, proc: int, message: str) -> bytes:
    """The INVAL reply to a request whose arguments do not fit `proc`'s layout (PROTOCOL.md)."""
    return rep_error(xid, INVAL, f"malformed {PROC_NAMES[proc]} arguments: {message}")


def parse_reply(data: bytes, xid: int) -> memoryview:
    """The result bytes of a reply to `xid`; RpcError if the server answered with an error,
    ProtocolError if this is no reply to `xid` (not a status the server gave: the stream is out
    of step, and the next reply read would be another request's too)."""
    if len(data) < REP_HEAD.size:
        raise ProtocolError(f"reply of {len(data)} bytes is shorter than its header")
    got_xid, status = REP_HEAD.unpack_from(data, 0)
    if got_xid != xid:
        raise ProtocolError(f"reply for xid {got_xid}, expected {xid}")
    body = memoryview(data)[REP_HEAD.size:]
    if status != OK:
        raise RpcError(status, bytes(body).decode("utf-8", "replace"))
    return body


def pack_entries(entries: list[tuple[str, int]], eof: bool, next_cookie: int) -> bytes:
    out = [U32.pack(next_cookie), bytes([1 if eof else 0]), U32.pack(len(entries))]
    for name, ftype in entries:
        out.append(bytes([ftype]))
        out.append(pack_name(name))
    return b"".join(out)


def unpack_entries(body) -> tuple[list[tuple[str, int]], bool, int]:
    (next_cookie,) = U32.unpack_from(body, 0)
    eof = body[4] == 1
    (n,) = U32.unpack_from(body, 5)
    offset, entries = 9, []
    for _ in range(n):
        ftype = body[offset]
        name, offset = unpack_name(body, offset + 1)
        entries.append((name, ftype))
    return entries, eof, next_cookie
