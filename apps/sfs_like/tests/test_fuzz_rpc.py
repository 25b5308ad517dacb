"""A protocol-level fuzz pass behind a valid session: the handshake is done and every request is
correctly sealed, so what is tested is the RPC layer and the file layer. For every procedure (and
unknown ones) the arguments are drawn well-formed, cut short, followed by more bytes, or replaced
by junk, with extreme values in every field: offsets near 2**63 and 2**64-1, counts of 0 and of
2**32-1, handles never issued or issued to another connection, names that are empty, '.', '..',
with '/' or NUL, of 255+ bytes, not UTF-8, reserved for uploads.

The invariants (PROTOCOL.md):
* every request gets exactly one reply, carrying its xid (a request too short to have one: xid 0);
* the status is one PROTOCOL.md defines; arguments that do not fit the procedure's layout get
  INVAL `malformed <PROC> arguments: ...`, and arguments that fit never do (the file layer's
  catch-all `except Exception` answers every surprise as `malformed`, which would hide a bug);
* an OK reply's results fit the table's layout exactly; a READ's bytes are the file's;
* the connection is never dropped and nothing is logged as a warning or error (no traceback: on
  the fake loop an exception in a callback fails the test, on the real server it is counted in
  STATS `loop_errors` and logged);
* nothing outside the export is read (no reply carries the secret's bytes) or written (the tree
  beside the export, the key included, is unchanged);
* afterwards the same session still serves a normal READ correctly, and so does another one.

The first test runs the server in-process on the fake loop (`fakeloop.py`), a fresh export and
server per example, so each example is independent and reproducible (`derandomize`: the same
examples on every run, as CI needs). The second runs the real server (colors on, two workers)
for fewer examples, one server for all of them, so state accumulates as on a long-lived server.
"""
from __future__ import annotations

import json
import logging
import os
import select
import shutil
import stat
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.sfs_like import rpc
from apps.sfs_like.client import Client
from apps.sfs_like.filelayer import MAX_FILE_SIZE, UPLOAD_NAME
from apps.sfs_like.framing import MAX_IO

from .fakeloop import FakeLoop
from .test_server_units import Session, _pump

SECRET = b"TOPSECRET-outside-the-export"
CONTROL = bytes(range(256)) * 3         # ctl/known: what the READ after the fuzzing must return
# the same examples on every run: a failure in CI is one anyone can reproduce
FUZZ = dict(derandomize=True, database=None, deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

PROCS = [rpc.LOOKUP, rpc.GETATTR, rpc.READDIR, rpc.READ, rpc.WRITE, rpc.CREATE, rpc.REMOVE,
         rpc.STATS, rpc.RENAME, rpc.CREATE_TEMP]
NAME_PROCS = (rpc.LOOKUP, rpc.CREATE, rpc.REMOVE)

NAMES = [b"", b".", b"..", b"/", b"a/b", b"/etc/passwd", b"../outside", b"a\0b", b"\0",
         b"x" * 255, b"y" * 256, b"z" * 1000, b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf",
         "\u00e9t\u00e9".encode(), b"hello.txt", b"d", b"f", b"sub", b"new", b"new2",
         b"out_file", b"out_dir", b"self", b"loop", b"fifo", b"dangling",
         b".sfs-upload.0123456789abcdef", b".sfs-upload.", b" ", b"-"]
OFFSETS = [0, 1, 5, 12, 13, 4095, 4096, 65536, 2**31 - 1, 2**32, MAX_FILE_SIZE - 1,
           MAX_FILE_SIZE, MAX_FILE_SIZE + 1, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1]
COUNTS = [0, 1, 13, 4096, MAX_IO - 1, MAX_IO, MAX_IO + 1, 2**31, 2**32 - 1]
COOKIES = [0, 1, 2, 3, 5, 100, 2**31, 2**32 - 1]
SPECIAL_FHS = [0, 2, 3, 2**32, 2**63, 2**64 - 1]

offsets = st.one_of(st.sampled_from(OFFSETS), st.integers(0, 2**64 - 1))
counts = st.one_of(st.sampled_from(COUNTS), st.integers(0, 2**32 - 1))
cookies = st.one_of(st.sampled_from(COOKIES), st.integers(0, 2**32 - 1))
# no name may be "ctl": the control file's directory stays as it is
names = st.one_of(st.sampled_from(NAMES), st.binary(max_size=300)).filter(lambda n: n != b"ctl")
write_sizes = st.one_of(st.integers(0, 64), st.sampled_from([0, 4096, MAX_IO, MAX_IO + 1]))


# ---- the tree the server exports, and what lies beside it

def make_tree(base) -> tuple[str, str]:
    """base/export (served) and base/outside (never to be read or written through the server)."""
    export, outside = base / "export", base / "outside"
    (export / "d" / "sub").mkdir(parents=True)
    (export / "ctl").mkdir()
    (outside / "inner").mkdir(parents=True)
    (outside / "secret").write_bytes(SECRET)
    (outside / "inner" / "secret2").write_bytes(SECRET * 2)
    (export / "hello.txt").write_bytes(b"hello, world\n")
    (export / "d" / "f").write_bytes(b"0123456789" * 10)
    (export / "ctl" / "known").write_bytes(CONTROL)
    (export / "out_file").symlink_to(outside / "secret")
    (export / "out_dir").symlink_to(outside)
    (export / "d" / "up").symlink_to("../../outside/inner")
    (export / "self").symlink_to(export)
    (export / "loop").symlink_to("loop")
    (export / "dangling").symlink_to(export / "nowhere")
    os.mkfifo(export / "fifo")
    return str(export), str(outside)


def snapshot(top: str) -> dict:
    """Everything about the tree at `top` that a write through the server could change."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st_ = os.lstat(path)
            content = None
            if stat.S_ISREG(st_.st_mode):
                with open(path, "rb") as f:
                    content = f.read()
            elif stat.S_ISLNK(st_.st_mode):
                content = os.readlink(path)
            out[os.path.relpath(path, top)] = (st_.st_mode, st_.st_size, st_.st_mtime_ns, content)
    return out


# ---- what a request is, by the table in PROTOCOL.md

def _name_end(args: bytes, offset: int) -> int | None:
    """Where a length-prefixed UTF-8 name at `offset` ends; None if it does not fit."""
    if len(args) < offset + 2:
        return None
    end = offset + 2 + int.from_bytes(args[offset:offset + 2], "big")
    if len(args) < end:
        return None
    try:
        args[offset + 2:end].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return end


def malformed(proc: int, args: bytes) -> bool:
    """Whether `args` do not fit `proc`'s layout: cut short, followed by more bytes, or a name
    that is not UTF-8."""
    if proc in NAME_PROCS:
        end = _name_end(args, 8) if len(args) >= 8 else None
        return end != len(args)
    if proc in (rpc.GETATTR, rpc.CREATE_TEMP):
        return len(args) != 8
    if proc == rpc.READDIR:
        return len(args) != 12
    if proc == rpc.READ:
        return len(args) != 20
    if proc == rpc.WRITE:
        return len(args) < 16
    if proc == rpc.STATS:
        return len(args) != 0
    if proc == rpc.RENAME:
        end = _name_end(args, 8) if len(args) >= 8 else None
        if end is None or len(args) < end + 8:
            return True
        return _name_end(args, end + 8) != len(args)
    raise AssertionError(proc)


def names_in(proc: int, args: bytes) -> list[bytes]:
    """The names of well-formed arguments (`to` name last)."""
    if proc in NAME_PROCS:
        return [args[10:]]
    if proc == rpc.RENAME:
        end = _name_end(args, 8)
        return [args[10:end], args[end + 10:]]
    return []


def bad_name(name: bytes) -> bool:
    """A name PROTOCOL.md refuses whatever the directory: INVAL, or NAMETOOLONG."""
    return name in (b"", b".", b"..") or b"/" in name or b"\0" in name or len(name) > 255


def check_ok_results(proc: int, args: bytes, body: bytes) -> None:
    """An OK reply's results fit the table in PROTOCOL.md exactly."""
    def attr_at(offset):
        ftype, _, _, _ = rpc.ATTR.unpack_from(body, offset)
        assert ftype in (rpc.FT_FILE, rpc.FT_DIR, rpc.FT_SYMLINK, rpc.FT_OTHER)

    if proc in (rpc.LOOKUP, rpc.CREATE):
        assert len(body) == 8 + rpc.ATTR.size
        assert rpc.FH.unpack_from(body)[0] != 0
        attr_at(8)
    elif proc == rpc.GETATTR:
        assert len(body) == rpc.ATTR.size
        attr_at(0)
    elif proc == rpc.READDIR:
        (cookie,) = struct.unpack_from(">I", args, 8)
        next_cookie, eof, n = struct.unpack_from(">IBI", body)
        assert eof in (0, 1)
        assert eof or next_cookie > cookie       # a listing cannot go round in circles
        offset = 9
        for _ in range(n):
            assert body[offset] in (rpc.FT_FILE, rpc.FT_DIR, rpc.FT_SYMLINK, rpc.FT_OTHER)
            name, offset = rpc.unpack_name(body, offset + 1)
            assert name and "/" not in name and not UPLOAD_NAME.fullmatch(name)
        assert offset == len(body)
    elif proc == rpc.READ:
        _, _, count = rpc.READ_ARGS.unpack(args)
        assert body[0] in (0, 1) and len(body) - 1 <= count
    elif proc == rpc.WRITE:
        assert len(body) == 4 + rpc.ATTR.size
        assert rpc.U32.unpack_from(body)[0] == len(args) - rpc.WRITE_HEAD.size
        attr_at(4)
    elif proc in (rpc.REMOVE, rpc.RENAME):
        assert body == b""
    elif proc == rpc.STATS:
        assert isinstance(json.loads(body), dict)
    elif proc == rpc.CREATE_TEMP:
        attr_at(8)
        name, end = rpc.unpack_name(body, 8 + rpc.ATTR.size)
        assert UPLOAD_NAME.fullmatch(name) and end == len(body)


def check_reply(request: bytes, reply: bytes) -> tuple[int, bytes]:
    """Every invariant one reply must meet by the protocol alone; (status, results)."""
    xid = rpc.U32.unpack_from(request)[0] if len(request) >= 4 else 0
    assert len(reply) >= rpc.REP_HEAD.size
    got_xid, status = rpc.REP_HEAD.unpack_from(reply)
    body = reply[rpc.REP_HEAD.size:]
    assert got_xid == xid, (got_xid, xid)
    assert status in rpc.STATUS_NAMES, status
    assert SECRET not in reply
    if len(request) < rpc.REQ_HEAD.size:
        assert status == rpc.INVAL
        return status, body
    proc, args = request[4], request[5:]
    if proc not in rpc.PROC_NAMES:
        assert status == rpc.BADPROC, (proc, status, body)
        return status, body
    message = f"malformed {rpc.PROC_NAMES[proc]} arguments: ".encode()
    if malformed(proc, args):
        assert (status, body[:len(message)]) == (rpc.INVAL, message), (proc, status, body)
        return status, body
    assert status == rpc.OK or not body.startswith(b"malformed"), (proc, status, body)
    request_names = names_in(proc, args)
    if any(bad_name(n) for n in request_names):
        assert status in (rpc.INVAL, rpc.NAMETOOLONG), (proc, request_names, status, body)
    reserved = request_names[-1:] if proc in (rpc.LOOKUP, rpc.CREATE, rpc.RENAME) else []
    if any(UPLOAD_NAME.fullmatch(n.decode()) for n in reserved):
        assert status != rpc.OK, (proc, request_names)
    if proc == rpc.READ and rpc.READ_ARGS.unpack(args)[2] > MAX_IO:
        assert status == rpc.INVAL and b"the limit is" in body, body
    if proc == rpc.WRITE:
        _, offset = rpc.WRITE_HEAD.unpack_from(args)
        size = len(args) - rpc.WRITE_HEAD.size
        if size > MAX_IO:
            assert status == rpc.INVAL and b"the limit is" in body, body
        elif offset + size > MAX_FILE_SIZE:
            assert status == rpc.FBIG, (status, body)
    if status == rpc.OK:
        check_ok_results(proc, args, body)
    return status, body


# ---- drawing requests

class Pool:
    """The handles a request may name: the root and those set up, another connection's, ones
    never issued, and those this session was given by earlier replies in the same example."""

    def __init__(self, known: dict[str, int], others: list[int]) -> None:
        self.known = known
        self.others = others
        self.learned: list[int] = []
        self.other_temp_name = b""

    def draw(self, data) -> int:
        kind = data.draw(st.sampled_from(["known", "known", "other", "special", "random", "learned"]))
        if kind == "known":
            return self.known[data.draw(st.sampled_from(sorted(self.known)))]   # by name:
            # handles are random, and the same draw must name the same file on every run
        if kind == "other" and self.others:
            return data.draw(st.sampled_from(self.others))
        if kind == "special":
            return data.draw(st.sampled_from(SPECIAL_FHS))
        if kind == "learned" and self.learned:
            return data.draw(st.sampled_from(self.learned))
        return data.draw(st.integers(0, 2**64 - 1))

    def learn(self, proc: int, status: int, body: bytes) -> None:
        if status == rpc.OK and proc in (rpc.LOOKUP, rpc.CREATE, rpc.CREATE_TEMP):
            self.learned.append(rpc.FH.unpack_from(body)[0])


def _name_field(data, pool: Pool) -> bytes:
    if pool.other_temp_name and data.draw(st.integers(0, 15)) == 0:
        name = pool.other_temp_name           # another connection's unfinished upload
    else:
        name = data.draw(names)
    length = len(name)
    if data.draw(st.integers(0, 9)) == 0:     # a length that lies
        length = data.draw(st.integers(0, 0xFFFF))
    return struct.pack(">H", length) + name


def draw_request(data, pool: Pool, xid: int) -> bytes:
    choice = data.draw(st.integers(0, 19))
    if choice == 0:                            # shorter than the header, or junk from the start
        return data.draw(st.binary(max_size=5))
    proc = data.draw(st.sampled_from(PROCS)) if choice > 1 else data.draw(st.integers(0, 255))
    fh = pool.draw
    if proc in NAME_PROCS:
        args = struct.pack(">Q", fh(data)) + _name_field(data, pool)
    elif proc in (rpc.GETATTR, rpc.CREATE_TEMP):
        args = struct.pack(">Q", fh(data))
    elif proc == rpc.READDIR:
        args = rpc.READDIR_ARGS.pack(fh(data), data.draw(cookies))
    elif proc == rpc.READ:
        args = rpc.READ_ARGS.pack(fh(data), data.draw(offsets), data.draw(counts))
    elif proc == rpc.WRITE:
        size = data.draw(write_sizes)
        args = rpc.WRITE_HEAD.pack(fh(data), data.draw(offsets)) + bytes([0x5A]) * size
    elif proc == rpc.RENAME:
        args = (struct.pack(">Q", fh(data)) + _name_field(data, pool)
                + struct.pack(">Q", fh(data)) + _name_field(data, pool))
    else:                                      # STATS, and procedures that do not exist
        args = b""
    mutation = data.draw(st.sampled_from(["none", "none", "none", "cut", "more", "junk"]))
    if mutation == "cut" and args:
        args = args[:data.draw(st.integers(0, len(args) - 1))]
    elif mutation == "more":
        args += data.draw(st.binary(min_size=1, max_size=24))
    elif mutation == "junk":
        args = data.draw(st.binary(max_size=48))
    return rpc.REQ_HEAD.pack(xid, proc) + args


# ---- in-process: the server on the fake loop

class Warnings(logging.Handler):
    """Records of WARNING and above from the server's loggers."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record) -> None:
        self.records.append(record.getMessage())


class InProcess:
    """An export, a server on a fake loop, the fuzzed session and another connection's."""

    def __init__(self, base, key) -> None:
        from apps.sfs_like.server import Server
        self.export, self.outside = make_tree(base)
        self.base = str(base)
        self.loop = FakeLoop()
        self.server = Server(self.loop, self.export, str(key), clock=self.loop.clock)
        self.server.listen("127.0.0.1", 0)
        self.other = Session(self.loop, self.server)
        self.fuzz = Session(self.loop, self.server)
        self.xid = 0
        known = {"root": rpc.ROOT_FH}
        for path in ("hello.txt", "d", "d/f", "d/sub", "loop", "fifo", "self"):
            fh = rpc.ROOT_FH
            for part in path.split("/"):
                fh = self.ok(self.fuzz, rpc.req_lookup(self.next_xid(), fh, part))[:8]
                fh = rpc.FH.unpack(fh)[0]
            known[path] = fh
        body = self.ok(self.other, rpc.req_create_temp(self.next_xid(), rpc.ROOT_FH))
        temp_fh = rpc.FH.unpack_from(body)[0]
        temp_name, _ = rpc.unpack_name(body, 8 + rpc.ATTR.size)
        new = rpc.FH.unpack_from(self.ok(self.other, rpc.req_create(self.next_xid(), known["d"],
                                                                    "others")))[0]
        self.pool = Pool(known, [temp_fh, new])
        self.pool.other_temp_name = temp_name.encode()
        self.before = snapshot(self.outside)
        self.beside = sorted(os.listdir(self.base))
        self.key_bytes = open(key, "rb").read()
        self.key = str(key)

    def next_xid(self) -> int:
        self.xid += 1
        return self.xid

    def exchange(self, session: Session, request: bytes) -> bytes:
        wire = memoryview(session.sealed(request))
        while wire:             # a 256 KiB WRITE is more than a socketpair holds: let it read
            _, writable, _ = select.select([], [session.sock], [], 0)
            if writable:
                wire = wire[session.sock.send(wire):]
            self.loop.poll()
        replies = _pump(self.loop, {session: 1})[session]
        assert len(replies) == 1, replies           # exactly one reply per request
        return replies[0]

    def ok(self, session: Session, request: bytes) -> bytes:
        reply = self.exchange(session, request)
        assert rpc.REP_HEAD.unpack_from(reply)[1] == rpc.OK, reply
        return reply[rpc.REP_HEAD.size:]

    def check_read(self, request: bytes, body: bytes) -> None:
        """An OK READ returned the bytes of a file inside the export, those at its offset."""
        fh, offset, count = rpc.READ_ARGS.unpack(request[5:])
        path = self.server.files._paths[fh]
        assert os.path.realpath(path).startswith(self.export + os.sep), path
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            expected = os.pread(f.fileno(), min(count, MAX_IO), offset) if offset < size else b""
        assert body[1:] == expected
        assert body[0] == (offset >= size or (count > 0 and offset + count >= size))

    def finish(self) -> None:
        # nothing more was sent: one reply per request
        self.loop.poll()
        assert select.select([self.fuzz.sock], [], [], 0)[0] == []
        assert not self.fuzz.conn.closing and not self.other.conn.closing
        # nothing outside the export read or written
        assert snapshot(self.outside) == self.before
        assert sorted(os.listdir(self.base)) == self.beside
        assert open(self.key, "rb").read() == self.key_bytes
        # the same session still serves a normal READ, and so does the other one
        for session in (self.fuzz, self.other):
            ctl = rpc.FH.unpack_from(self.ok(session, rpc.req_lookup(self.next_xid(), rpc.ROOT_FH,
                                                                     "ctl")))[0]
            known = rpc.FH.unpack_from(self.ok(session, rpc.req_lookup(self.next_xid(), ctl,
                                                                       "known")))[0]
            body = self.ok(session, rpc.req_read(self.next_xid(), known, 0, MAX_IO))
            assert body == b"\x01" + CONTROL

    def close(self) -> None:
        for session in (self.fuzz, self.other):
            session.sock.close()
        for conn in list(self.server.conns.values()):
            conn.sock.close()
        self.server._listener.close()
        os.close(self.server.files.fs.root_fd)
        os.close(self.server.files._export_lock)


def test_fuzzed_requests_in_a_valid_session_get_one_defined_reply_each(tmp_path):
    log = logging.getLogger("sfs_like")
    warnings = Warnings()
    log.addHandler(warnings)
    counter = iter(range(10**9))

    @settings(max_examples=400, **FUZZ)
    @given(st.data())
    def run(data):
        base = tmp_path / f"ex{next(counter)}"
        base.mkdir()
        world = InProcess(base, tmp_path / "key")
        warnings.records.clear()
        try:
            for _ in range(data.draw(st.integers(1, 10))):
                request = draw_request(data, world.pool, world.next_xid())
                reply = world.exchange(world.fuzz, request)
                status, body = check_reply(request, reply)
                if len(request) >= rpc.REQ_HEAD.size:
                    world.pool.learn(request[4], status, body)
                    if status == rpc.OK and request[4] == rpc.READ:
                        world.check_read(request, body)
                assert not warnings.records, warnings.records
            world.finish()
            assert not warnings.records, warnings.records
        finally:
            world.close()
            shutil.rmtree(base)

    try:
        run()
    finally:
        log.removeHandler(warnings)


# ---- the real server: colors on, two workers, one server for every example

def test_fuzzed_requests_leave_the_real_server_serving_and_its_log_clean(start_server, tmp_path):
    export, outside = make_tree(tmp_path)
    srv = start_server(tmp_path / "export", colors="on", workers=2)
    before = snapshot(outside)
    with Client(srv.address) as fuzz, Client(srv.address) as other:
        known = {"root": rpc.ROOT_FH}
        for path in ("hello.txt", "d", "d/f", "d/sub", "loop", "fifo"):
            known[path] = fuzz.walk(path)
        temp_fh, temp_name = other.create_temp(rpc.ROOT_FH)
        others = [temp_fh, other.create(known["d"], "others")]

        @settings(max_examples=100, **FUZZ)
        @given(st.data())
        def run(data):
            pool = Pool(known, others)
            pool.other_temp_name = temp_name.encode()
            for _ in range(data.draw(st.integers(1, 8))):
                request = draw_request(data, pool, fuzz.next_xid())
                fuzz.send_request(request)
                status, body = check_reply(request, fuzz.recv_reply())
                if len(request) >= rpc.REQ_HEAD.size:
                    pool.learn(request[4], status, body)

        try:
            run()
        except BaseException:
            print(srv.log())        # why the server closed, if it did
            raise
        assert fuzz.get("ctl/known") == CONTROL and other.get("ctl/known") == CONTROL
        assert fuzz.stats()["loop_errors"] == 0
    assert snapshot(outside) == before
    assert srv.alive()
    text = srv.log()
    assert "Traceback" not in text and " WARNING " not in text and " ERROR " not in text, text
