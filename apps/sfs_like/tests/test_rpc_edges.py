"""Edge cases of the RPCs tried by hand, beside the fuzz pass (test_fuzz_rpc.py): what each gets,
and that it leaves the export, and the handles, as PROTOCOL.md says."""
from __future__ import annotations

import os
import threading

import pytest

from apps.sfs_like import rpc
from apps.sfs_like.client import Client
from apps.sfs_like.filelayer import MAX_FILE_SIZE, FileLayer

from .fakeloop import FakeLoop
from .test_server_units import Session, _pump

A, B = "conn-a", "conn-b"       # owners of uploads


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "export"
    (root / "d" / "sub").mkdir(parents=True)
    (root / "d" / "f").write_bytes(b"0123456789")
    (root / "e").mkdir()
    (root / "self").symlink_to(root)
    return root


@pytest.fixture
def layer(root):
    return FileLayer(str(root), cache_bytes=1 << 20)


def call(layer, request, owner=None) -> tuple[int, bytes]:
    reply = b"".join(bytes(p) for p in layer.finish(layer.handle(request, owner)))
    xid, status = rpc.REP_HEAD.unpack_from(reply)
    assert xid == rpc.U32.unpack_from(request)[0]
    return status, reply[rpc.REP_HEAD.size:]


def ok(layer, request, owner=None) -> bytes:
    status, body = call(layer, request, owner)
    assert status == rpc.OK, (status, body)
    return body


def fh(layer, dir_fh, name) -> int:
    return rpc.FH.unpack_from(ok(layer, rpc.req_lookup(1, dir_fh, name)))[0]


def tree(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, n), root)
                  for d, dirs, files in os.walk(root) for n in dirs + files)


def test_rename_of_a_directory_into_its_own_subdirectory_is_inval_and_moves_nothing(layer, root):
    d = fh(layer, rpc.ROOT_FH, "d")
    sub, f = fh(layer, d, "sub"), fh(layer, d, "f")
    before = tree(root)
    for to_dir, to_name in ((sub, "x"), (d, "x")):              # below itself, into itself
        assert call(layer, rpc.req_rename(2, rpc.ROOT_FH, "d", to_dir, to_name))[0] == rpc.INVAL
    assert tree(root) == before
    assert fh(layer, d, "sub") == sub and fh(layer, d, "f") == f   # handles unchanged
    assert ok(layer, rpc.req_read(3, f, 0, 100)) == b"\x010123456789"


@pytest.mark.parametrize("dir_name, name", [("d", "f"), ("", "d"), ("", "self")])
def test_rename_onto_itself_is_ok_and_changes_nothing(layer, root, dir_name, name):
    dir_fh = fh(layer, rpc.ROOT_FH, dir_name) if dir_name else rpc.ROOT_FH
    target = fh(layer, dir_fh, name)
    before = tree(root)
    ok(layer, rpc.req_rename(2, dir_fh, name, dir_fh, name))
    assert tree(root) == before
    assert fh(layer, dir_fh, name) == target                       # the handle is not stale
    assert call(layer, rpc.req_getattr(3, target))[0] == rpc.OK


def test_the_export_root_cannot_be_renamed_replaced_or_removed(layer, root, tmp_path):
    before = tree(root)
    for name in ("", ".", ".."):
        for request in (rpc.req_rename(1, rpc.ROOT_FH, name, rpc.ROOT_FH, "moved"),
                        rpc.req_rename(1, rpc.ROOT_FH, "e", rpc.ROOT_FH, name),
                        rpc.req_remove(1, rpc.ROOT_FH, name)):
            assert call(layer, request)[0] == rpc.INVAL
    assert tree(root) == before and sorted(os.listdir(tmp_path)) == ["export"]
    # a symlink to the root is a name like any other: moved, replaced, removed itself
    ok(layer, rpc.req_rename(2, rpc.ROOT_FH, "self", fh(layer, rpc.ROOT_FH, "e"), "me"))
    assert os.readlink(root / "e" / "me") == str(root) and root.is_dir()
    e = fh(layer, rpc.ROOT_FH, "e")
    assert fh(layer, e, "me") == rpc.ROOT_FH                        # it still leads to the root
    ok(layer, rpc.req_remove(3, e, "me"))
    assert root.is_dir() and not (root / "e" / "me").is_symlink()
    assert call(layer, rpc.req_getattr(4, rpc.ROOT_FH))[0] == rpc.OK


def test_lookup_of_dot_and_dotdot_at_the_root_is_inval(layer):
    for name in (".", ".."):
        status, body = call(layer, rpc.req_lookup(1, rpc.ROOT_FH, name))
        assert status == rpc.INVAL and b"it would leave the directory" in body


def test_write_near_the_file_size_limit_and_of_no_bytes(layer, root):
    f = fh(layer, fh(layer, rpc.ROOT_FH, "d"), "f")
    for offset, data in ((MAX_FILE_SIZE - 3, b"abcd"), (MAX_FILE_SIZE, b"a"), (2**63, b"a"),
                         (2**64 - 1, b""), (2**64 - 4, b"abcd")):
        status, body = call(layer, rpc.req_write_head(1, f, offset) + data)
        assert status == rpc.FBIG and b"1 TiB" in body, (offset, status, body)
    assert (root / "d" / "f").read_bytes() == b"0123456789"       # nothing written
    for offset in (0, 5, 10, 1000, MAX_FILE_SIZE):                   # WRITE of no bytes: a no-op
        body = ok(layer, rpc.req_write_head(2, f, offset))
        assert rpc.U32.unpack_from(body)[0] == 0
        assert rpc.Attr.unpack(body, 4).size == 10
    assert (root / "d" / "f").read_bytes() == b"0123456789"
    # the last byte below the limit may be written (a sparse file), unless the disk's own limit
    # is lower: then FBIG all the same
    status, body = call(layer, rpc.req_write_head(3, f, MAX_FILE_SIZE - 1) + b"z")
    assert status in (rpc.OK, rpc.FBIG), (status, body)
    if status == rpc.OK:
        assert rpc.Attr.unpack(body, 4).size == MAX_FILE_SIZE
        assert ok(layer, rpc.req_read(4, f, MAX_FILE_SIZE - 1, 10)) == b"\x01z"
        assert ok(layer, rpc.req_read(5, f, 0, 10)) == b"\x000123456789"
        os.truncate(root / "d" / "f", 10)


def test_read_at_the_size_and_reads_of_no_bytes(layer):
    f = fh(layer, fh(layer, rpc.ROOT_FH, "d"), "f")
    assert ok(layer, rpc.req_read(1, f, 10, 5)) == b"\x01"          # at the size: eof, no data
    assert ok(layer, rpc.req_read(2, f, 11, 5)) == b"\x01"
    assert ok(layer, rpc.req_read(3, f, 2**64 - 1, 2**18)) == b"\x01"
    assert ok(layer, rpc.req_read(4, f, 0, 0)) == b"\x00"            # no bytes, not at the end
    assert ok(layer, rpc.req_read(5, f, 9, 1)) == b"\x019"
    assert call(layer, rpc.req_read(6, f, 0, 2**32 - 1))[0] == rpc.INVAL


def test_readdir_cookies_past_the_end_or_from_another_directory(layer):
    def listing(dir_fh, cookie):
        body = ok(layer, rpc.req_readdir(1, dir_fh, cookie))
        entries, eof, next_cookie = rpc.unpack_entries(memoryview(body))
        return entries, eof, next_cookie

    full, eof, end = listing(rpc.ROOT_FH, 0)
    assert eof and [n for n, _ in full] == ["d", "e", "self"] and end == 3
    for cookie in (3, 4, 1000, 2**32 - 1):                          # past the end: eof, nothing
        assert listing(rpc.ROOT_FH, cookie) == ([], True, cookie)
    d = fh(layer, rpc.ROOT_FH, "d")
    _, _, d_end = listing(d, 0)                                     # d has 2 entries: cookie 2
    # a cookie is an index: from another directory it lists from there, never past the end
    assert listing(rpc.ROOT_FH, d_end) == (full[d_end:], True, 3)


def test_an_upload_renamed_onto_a_directory_is_isdir_and_stays_an_unfinished_upload(layer, root):
    body = ok(layer, rpc.req_create_temp(1, rpc.ROOT_FH), owner=A)
    temp_fh = rpc.FH.unpack_from(body)[0]
    temp_name, _ = rpc.unpack_name(body, 8 + rpc.ATTR.size)
    ok(layer, rpc.req_write_head(2, temp_fh, 0) + b"upload", owner=A)
    for to_name in ("e", "d"):                                      # empty and not empty
        status, _ = call(layer, rpc.req_rename(3, rpc.ROOT_FH, temp_name, rpc.ROOT_FH, to_name), A)
        assert status == rpc.ISDIR
    assert (root / "e").is_dir() and os.listdir(root / "e") == []
    assert (root / temp_name).read_bytes() == b"upload"
    assert call(layer, rpc.req_lookup(4, rpc.ROOT_FH, temp_name))[0] == rpc.ACCES   # still hidden
    layer.release(A)                                                # and goes with its connection
    assert not (root / temp_name).exists()


def _upload(loop, s: Session, xid: int, data: bytes) -> tuple[int, str]:
    s.sock.sendall(s.sealed(rpc.req_create_temp(xid, rpc.ROOT_FH)))
    (reply,) = _pump(loop, {s: 1})[s]
    assert rpc.REP_HEAD.unpack_from(reply) == (xid, rpc.OK)
    temp_fh = rpc.FH.unpack_from(reply, 5)[0]
    name, _ = rpc.unpack_name(reply, 5 + 8 + rpc.ATTR.size)
    s.sock.sendall(s.sealed(rpc.req_write_head(xid + 1, temp_fh, 0) + data))
    (reply,) = _pump(loop, {s: 1})[s]
    assert rpc.REP_HEAD.unpack_from(reply) == (xid + 1, rpc.OK)
    return temp_fh, name


def test_two_connections_finishing_uploads_onto_one_name_at_once(tmp_path, root):
    """Both RENAMEs arrive before either is answered: both succeed, the name holds one upload
    whole (the later one), nothing is left behind, and the earlier upload's handle is stale."""
    from apps.sfs_like.server import Server
    loop = FakeLoop()
    server = Server(loop, str(root), str(tmp_path / "key"), clock=loop.clock)
    server.listen("127.0.0.1", 0)
    a, b = Session(loop, server), Session(loop, server)
    data = {a: b"A" * 70_000, b: b"B" * 50_000}
    temps = {s: _upload(loop, s, 10, data[s]) for s in (a, b)}
    for s in (a, b):
        s.sock.sendall(s.sealed(rpc.req_rename(20, rpc.ROOT_FH, temps[s][1], rpc.ROOT_FH, "same")))
    for s in (a, b):                                 # both read before either is answered
        readable, args = loop.readers[s.conn.fd]
        readable(*args)
    replies = _pump(loop, {a: 1, b: 1})
    assert [rpc.REP_HEAD.unpack_from(replies[s][0]) for s in (a, b)] == [(20, rpc.OK)] * 2
    assert (root / "same").read_bytes() == data[b]  # served in the order they were read
    assert not [n for n in os.listdir(root) if n.startswith(".sfs-upload.")]
    for s, status in ((a, rpc.STALE), (b, rpc.OK)):
        s.sock.sendall(s.sealed(rpc.req_getattr(30, temps[s][0])))
        (reply,) = _pump(loop, {s: 1})[s]
        assert rpc.REP_HEAD.unpack_from(reply) == (30, status)
    for s in (a, b):                                 # their ends remove nothing finished
        s.sock.close()
    for _ in range(5):
        loop.poll()
    assert not server.conns and (root / "same").read_bytes() == data[b]


def test_concurrent_puts_onto_one_name_on_the_real_server(start_server, export):
    """Two clients `put` the same name over and over at once (colors on, two workers): every
    put succeeds, a get reads one of them whole (or STALE, when the other put replaced the file
    mid-get), and no upload is left behind."""
    srv = start_server(export, colors="on", workers=2)
    contents = [bytes([65 + i]) * (300_000 + 1000 * i) for i in range(2)]
    errors = []

    def putter(data):
        try:
            with Client(srv.address) as c:
                for _ in range(5):
                    c.put("same.bin", data)
                    try:
                        assert c.get("same.bin") in contents
                    except rpc.RpcError as exc:
                        # the other put replaced the file between two of this get's READs: its
                        # handle went stale (PROTOCOL.md, RENAME), it never read a mixture
                        assert exc.status == rpc.STALE, exc
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=putter, args=(data,)) for data in contents]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert (export / "same.bin").read_bytes() in contents
    assert not [n for n in os.listdir(export) if n.startswith(".sfs-upload.")]
    assert "Traceback" not in srv.log() and " WARNING " not in srv.log()
