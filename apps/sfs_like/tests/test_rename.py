"""RENAME, and the atomic `put` built on it: an interrupted upload never destroys the old file."""
from __future__ import annotations

import os
import secrets
import time

import pytest

from apps.sfs_like import rpc
from apps.sfs_like.client import Client
from apps.sfs_like.filelayer import FileLayer


@pytest.fixture
def layer(tmp_path):
    root = tmp_path / "export"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_bytes(b"old contents")
    (tmp_path / "secret").write_bytes(b"secret")
    (root / "escape").symlink_to(tmp_path / "secret")
    (root / "escdir").symlink_to(tmp_path)
    return FileLayer(str(root), cache_bytes=1 << 20)


def _ok(layer, request) -> memoryview:
    reply = layer.handle(request)[0]
    status = rpc.REP_HEAD.unpack_from(reply)[1]
    assert status == rpc.OK, (status, bytes(reply[5:]))
    return memoryview(reply)[5:]


def _status(layer, request) -> tuple[int, bytes]:
    reply = layer.handle(request)[0]
    return rpc.REP_HEAD.unpack_from(reply)[1], bytes(reply[5:])


def _read(layer, fh) -> bytes:
    parts = layer.handle(rpc.req_read(99, fh, 0, 1 << 16))
    assert rpc.REP_HEAD.unpack_from(parts[0])[1] == rpc.OK
    return b"".join(bytes(p) for p in parts[1:])


def test_rename_replaces_an_existing_file_and_moves_the_handle(layer, tmp_path):
    d = rpc.FH.unpack_from(_ok(layer, rpc.req_lookup(1, rpc.ROOT_FH, "d")))[0]
    old = rpc.FH.unpack_from(_ok(layer, rpc.req_lookup(2, d, "f")))[0]
    assert _read(layer, old) == b"old contents"                  # now in the block cache
    tmp = rpc.FH.unpack_from(_ok(layer, rpc.req_create(3, d, ".f.1.part")))[0]
    _ok(layer, rpc.req_write_head(4, tmp, 0) + b"new")
    _ok(layer, rpc.req_rename(5, d, ".f.1.part", d, "f"))
    assert (tmp_path / "export" / "d" / "f").read_bytes() == b"new"
    assert not (tmp_path / "export" / "d" / ".f.1.part").exists()
    assert _read(layer, tmp) == b"new"                           # the handle followed its file
    again = rpc.FH.unpack_from(_ok(layer, rpc.req_lookup(6, d, "f")))[0]
    assert again == tmp and _read(layer, again) == b"new"
    assert _status(layer, rpc.req_read(7, old, 0, 10))[0] == rpc.STALE   # the replaced file's
    assert _status(layer, rpc.req_rename(8, d, "missing", d, "f"))[0] == rpc.NOENT


def test_rename_moves_a_directory_with_the_handles_below_it(layer, tmp_path):
    d = rpc.FH.unpack_from(_ok(layer, rpc.req_lookup(1, rpc.ROOT_FH, "d")))[0]
    f = rpc.FH.unpack_from(_ok(layer, rpc.req_lookup(2, d, "f")))[0]
    _ok(layer, rpc.req_rename(3, rpc.ROOT_FH, "d", rpc.ROOT_FH, "e"))
    assert _read(layer, f) == b"old contents"
    assert (tmp_path / "export" / "e" / "f").read_bytes() == b"old contents"
    assert _status(layer, rpc.req_rename(4, rpc.ROOT_FH, "e", d, "inside"))[0] == rpc.INVAL


@pytest.mark.parametrize("src, dst, status, text", [
    ("..", "x", rpc.INVAL, b"'..' is refused"),
    ("x", "..", rpc.INVAL, b"'..' is refused"),
    (".", "x", rpc.INVAL, b"'.' is refused"),
    ("/etc/passwd", "x", rpc.INVAL, b"not one path component"),
    ("d", "/tmp/x", rpc.INVAL, b"not one path component"),
    ("d", "a/b", rpc.INVAL, b"not one path component"),
    ("d", "a\0b", rpc.INVAL, b"not one path component"),
    ("d", "", rpc.INVAL, b"empty name"),
    ("escape", "x", rpc.ACCES, b"symlink leading out of the export"),
    ("d", "escape", rpc.ACCES, b"symlink leading out of the export"),
    ("d", "escdir", rpc.ACCES, b"symlink leading out of the export"),
])
def test_rename_refuses_names_that_leave_the_directory_or_export(layer, tmp_path, src, dst, status, text):
    before = sorted(os.listdir(tmp_path / "export")), sorted(os.listdir(tmp_path))
    got, message = _status(layer, rpc.req_rename(1, rpc.ROOT_FH, src, rpc.ROOT_FH, dst))
    assert got == status and text in message, (got, message)
    assert (sorted(os.listdir(tmp_path / "export")), sorted(os.listdir(tmp_path))) == before
    assert (tmp_path / "secret").read_bytes() == b"secret"
    assert (tmp_path / "export" / "d" / "f").read_bytes() == b"old contents"


def test_a_put_whose_connection_dies_leaves_the_old_file_whole(start_server, export):
    srv = start_server(export, colors="on", workers=2)
    original = os.urandom(300_000)
    (export / "doc").write_bytes(original)
    dying = Client(srv.address)
    real_write = dying.write

    def write_then_die(fh, offset, data):
        real_write(fh, offset, data)          # one block arrives, then the client is gone
        dying.sock.close()
        raise ConnectionResetError("client killed mid-put")

    dying.write = write_then_die
    with pytest.raises(OSError):
        dying.put("doc", os.urandom(600_000), block=64 * 1024)
    assert (export / "doc").read_bytes() == original
    with Client(srv.address) as c:                   # the server goes on serving
        assert c.get("doc") == original
        c.put("doc", b"replaced")
        assert c.get("doc") == b"replaced"
    assert (export / "doc").read_bytes() == b"replaced"


def test_a_library_client_that_disconnects_mid_upload_leaves_the_old_file(start_server, export):
    srv = start_server(export)
    with Client(srv.address) as c:
        fh = c.create(rpc.ROOT_FH, ".hello.txt.abc.part")
        c.write(fh, 0, b"partial")
    with Client(srv.address) as c:
        assert c.get("hello.txt") == b"hello, world\n"


def test_a_put_that_fails_locally_removes_its_temporary_file(start_server, export):
    srv = start_server(export)
    with Client(srv.address) as c:
        real_write = c.write
        calls = []

        def write_then_fail(fh, offset, data):
            calls.append(offset)
            if len(calls) == 2:
                raise OSError("local read failed")
            return real_write(fh, offset, data)

        c.write = write_then_fail
        with pytest.raises(OSError, match="local read failed"):
            c.put("hello.txt", os.urandom(200_000), block=64 * 1024)
        assert sorted(name for name, _ in c.listdir()) == ["hello.txt", "sub"]
        assert c.get("hello.txt") == b"hello, world\n"


def _create_temp(layer, dir_fh, owner) -> tuple[int, str]:
    reply = layer.handle(rpc.req_create_temp(7, dir_fh), owner)[0]
    assert rpc.REP_HEAD.unpack_from(reply)[1] == rpc.OK, bytes(reply[5:])
    body = memoryview(reply)[5:]
    fh = rpc.FH.unpack_from(body)[0]
    name, _ = rpc.unpack_name(body, rpc.FH.size + rpc.ATTR.size)
    return fh, name


def test_an_unfinished_upload_is_not_listed_nor_looked_up_and_goes_with_its_connection(layer,
                                                                                      tmp_path):
    """A put's temporary file was a plain `.NAME.<hex>.part`: listed by `ls`, readable by `get`,
    and left for ever by a client killed mid-put. CREATE_TEMP's file belongs to its connection:
    hidden from READDIR and LOOKUP, removed when that connection goes."""
    d = rpc.FH.unpack_from(_ok(layer, rpc.req_lookup(1, rpc.ROOT_FH, "d")))[0]
    fh, name = _create_temp(layer, d, owner="conn 1")
    _ok(layer, rpc.req_write_head(2, fh, 0) + b"half an upload")
    assert (tmp_path / "export" / "d" / name).read_bytes() == b"half an upload"
    assert rpc.unpack_entries(_ok(layer, rpc.req_readdir(3, d, 0)))[0] == [("f", rpc.FT_FILE)]
    for request in (rpc.req_lookup(4, d, name), rpc.req_create(5, d, name),
                    rpc.req_rename(6, d, "f", d, name)):
        status, text = _status(layer, request)
        assert status == rpc.ACCES and b"unfinished upload" in text, (status, text)
    layer.release("conn 2")                                  # another connection's end: no effect
    assert (tmp_path / "export" / "d" / name).exists()
    layer.release("conn 1")
    assert sorted(os.listdir(tmp_path / "export" / "d")) == ["f"]
    assert _status(layer, rpc.req_getattr(8, fh))[0] == rpc.STALE


def test_an_upload_in_a_moved_directory_still_goes_with_its_connection(layer, tmp_path):
    """RENAME of the directory moves the upload's path; its connection's end must remove it
    there, and the connection's count of uploads must not keep the old path."""
    d = rpc.FH.unpack_from(_ok(layer, rpc.req_lookup(1, rpc.ROOT_FH, "d")))[0]
    fh, name = _create_temp(layer, d, owner="conn 1")
    _ok(layer, rpc.req_rename(2, rpc.ROOT_FH, "d", rpc.ROOT_FH, "moved"))
    assert (tmp_path / "export" / "moved" / name).exists()
    layer.release("conn 1")
    assert sorted(os.listdir(tmp_path / "export" / "moved")) == ["f"]
    assert _status(layer, rpc.req_getattr(3, fh))[0] == rpc.STALE


def test_another_clients_upload_cannot_be_reached_by_counting_handles(layer):
    """Handles were sequential: the upload one client made got the handle after the last one
    issued, so another client could count from its own handles to it and READ or WRITE it."""
    d = rpc.FH.unpack_from(_ok(layer, rpc.req_lookup(1, rpc.ROOT_FH, "d")))[0]
    theirs, _ = _create_temp(layer, d, owner="conn 1")
    _ok(layer, rpc.req_write_head(2, theirs, 0) + b"their upload")
    mine = rpc.FH.unpack_from(_ok(layer, rpc.req_lookup(3, d, "f")))[0]
    guesses = set(range(1000)) | {fh + i for fh in (d, mine) for i in range(-1000, 1000)}
    for guess in guesses - {rpc.ROOT_FH, d, mine}:
        if 0 <= guess < 1 << 64:
            assert _status(layer, rpc.req_read(4, guess, 0, 100))[0] == rpc.STALE, guess
    assert _read(layer, theirs) == b"their upload"


def test_a_new_handle_is_random_and_never_zero_the_root_or_one_in_use(layer, monkeypatch):
    d = rpc.FH.unpack_from(_ok(layer, rpc.req_lookup(1, rpc.ROOT_FH, "d")))[0]
    draws = iter([0, rpc.ROOT_FH, d, (1 << 64) - 1])

    def randbits(bits):
        assert bits == 64                   # the handle's whole wire width
        return next(draws)

    monkeypatch.setattr(secrets, "randbits", randbits)
    f = rpc.FH.unpack_from(_ok(layer, rpc.req_lookup(2, d, "f")))[0]
    assert f == (1 << 64) - 1 and _read(layer, f) == b"old contents"
    assert rpc.FH.unpack_from(_ok(layer, rpc.req_lookup(3, rpc.ROOT_FH, "d")))[0] == d


def test_upload_names_are_reserved(layer, tmp_path):
    """Start-up removes every regular file with an upload's name, so no client may give a file
    one (it would be removed at the next start), and one made behind the server's back is not
    served either: LOOKUP, CREATE and RENAME onto it get ACCES, READDIR leaves it out."""
    name = ".sfs-upload.0123456789abcdef"
    d = rpc.FH.unpack_from(_ok(layer, rpc.req_lookup(1, rpc.ROOT_FH, "d")))[0]
    (tmp_path / "export" / "d" / "g").write_bytes(b"a user's file")
    for request in (rpc.req_lookup(2, d, name), rpc.req_create(3, d, name),
                    rpc.req_rename(4, d, "g", d, name)):
        status, text = _status(layer, request)
        assert status == rpc.ACCES and b"reserved for unfinished uploads" in text, (status, text)
    assert sorted(os.listdir(tmp_path / "export" / "d")) == ["f", "g"]
    (tmp_path / "export" / "d" / name).write_bytes(b"made behind the server's back")
    listed = rpc.unpack_entries(_ok(layer, rpc.req_readdir(5, d, 0)))[0]
    assert listed == [("f", rpc.FT_FILE), ("g", rpc.FT_FILE)]


def test_a_finished_upload_is_an_ordinary_file_with_the_replaced_files_permissions(layer, tmp_path):
    """`put` over a 0600 file made it 0644 (readable by every local user), over a 0755 script
    not executable: RENAME of a temporary over a regular file gives it that file's permission
    bits (never set-id bits). Its connection's end then removes nothing."""
    f = tmp_path / "export" / "d" / "f"
    for mode in (0o600, 0o755, 0o4755):
        f.chmod(mode)
        d = rpc.FH.unpack_from(_ok(layer, rpc.req_lookup(1, rpc.ROOT_FH, "d")))[0]
        fh, name = _create_temp(layer, d, owner="conn 1")
        _ok(layer, rpc.req_write_head(2, fh, 0) + b"new %o" % mode)
        _ok(layer, rpc.req_rename(3, d, name, d, "f"))
        layer.release("conn 1")
        assert f.read_bytes() == b"new %o" % mode
        assert f.stat().st_mode & 0o7777 == mode & 0o777
        assert rpc.unpack_entries(_ok(layer, rpc.req_readdir(4, d, 0)))[0] == [("f", rpc.FT_FILE)]


def test_a_connection_may_have_max_temps_unfinished_uploads_at_once(layer, tmp_path):
    """CREATE_TEMP had no limit: one connection could make temporaries until the export (and the
    server's table of them) was full. Beyond MAX_TEMPS it gets DQUOT; finishing (RENAME) or
    removing one makes room again, and other connections are not affected."""
    d = rpc.FH.unpack_from(_ok(layer, rpc.req_lookup(1, rpc.ROOT_FH, "d")))[0]
    names = [_create_temp(layer, d, owner="conn 1")[1] for _ in range(rpc.MAX_TEMPS)]

    def refused() -> bool:
        reply = layer.handle(rpc.req_create_temp(2, d), "conn 1")[0]
        status = rpc.REP_HEAD.unpack_from(reply)[1]
        assert status in (rpc.OK, rpc.DQUOT), (status, bytes(reply[5:]))
        return status == rpc.DQUOT and b"64 unfinished uploads" in reply

    assert refused()
    _create_temp(layer, d, owner="conn 2")
    _ok(layer, rpc.req_rename(3, d, names[0], d, "done"))
    assert not refused() and refused()
    _ok(layer, rpc.req_remove(4, d, names[1]))
    assert not refused() and refused()
    layer.release("conn 1")
    assert len(os.listdir(tmp_path / "export" / "d")) == 3          # f, done, conn 2's upload
    assert not refused()


def test_a_connection_refused_an_upload_goes_on_working(start_server, export):
    srv = start_server(export)
    with Client(srv.address) as c, Client(srv.address) as other:
        for _ in range(rpc.MAX_TEMPS):
            c.create_temp(rpc.ROOT_FH)
        with pytest.raises(rpc.RpcError, match="DQUOT: 64 unfinished uploads") as refused:
            c.create_temp(rpc.ROOT_FH)
        assert refused.value.status == rpc.DQUOT
        assert c.get("hello.txt") == b"hello, world\n"
        other.put("hello.txt", b"replaced")
        assert c.get("hello.txt") == b"replaced"


def test_a_put_killed_mid_transfer_leaves_no_temporary_file(start_server, export):
    srv = start_server(export, colors="on", workers=2)
    (export / "doc").write_bytes(b"old")
    (export / "doc").chmod(0o600)
    dying = Client(srv.address)
    real_write = dying.write

    def write_then_die(fh, offset, data):
        real_write(fh, offset, data)
        with Client(srv.address) as other:              # mid-upload: nothing to see or read
            assert sorted(name for name, _ in other.listdir()) == ["doc", "hello.txt", "sub"]
        dying.sock.close()                              # as kill -9 closes it
        raise ConnectionResetError("client killed mid-put")

    dying.write = write_then_die
    with pytest.raises(OSError):
        dying.put("doc", os.urandom(300_000), block=64 * 1024)
    with Client(srv.address) as c:
        c.put("doc", b"replaced")
        assert c.get("doc") == b"replaced"
    assert (export / "doc").stat().st_mode & 0o777 == 0o600
    # the dead connection's temporary goes once the server has seen it close
    deadline = time.monotonic() + 30
    while sorted(p.name for p in export.iterdir()) != ["doc", "hello.txt", "sub"]:
        assert time.monotonic() < deadline, sorted(p.name for p in export.iterdir())
        time.sleep(0.05)


def test_a_server_killed_mid_put_removes_the_upload_when_it_starts_again(start_server, export):
    srv = start_server(export)
    with Client(srv.address) as c:
        fh, name = c.create_temp(rpc.ROOT_FH)
        c.write(fh, 0, b"half an upload")
        srv.stop(kill=True)
    assert (export / name).read_bytes() == b"half an upload"        # left, an ordinary file
    again = start_server(export, key=srv.key)
    assert sorted(p.name for p in export.iterdir()) == ["hello.txt", "sub"]
    assert "killed mid-put) removed from the export: 1\n" in again.log()
    with Client(again.address) as c:
        assert sorted(name for name, _ in c.listdir()) == ["hello.txt", "sub"]
