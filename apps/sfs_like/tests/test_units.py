"""Units that need no server: framing, the two suites, fingerprints, the block cache, path safety."""
from __future__ import annotations

import errno
import os

import pytest

from apps.sfs_like import rpc
from apps.sfs_like.blockcache import BlockCache
from apps.sfs_like.filelayer import FileLayer
from apps.sfs_like.framing import MAX_FRAME, FrameError, FrameReader, LENGTH
from apps.sfs_like.handshake import ClientHandshake, FingerprintMismatch, HandshakeError, server_respond
from apps.sfs_like.keys import ServerAddress, fingerprint
from apps.sfs_like.suites import AuthError, make_channel, SUITES
from apps.sfs_like._crypto_import import X25519PrivateKey


def test_frame_reader_splits_and_joins_frames():
    r = FrameReader()
    wire = LENGTH.pack(3) + b"abc" + LENGTH.pack(0) + LENGTH.pack(5) + b"hel"
    assert r.feed(wire[:2]) == []
    assert r.feed(wire[2:]) == [b"abc", b""]
    assert r.partial
    assert r.feed(b"lo") == [b"hello"]
    assert not r.partial


def test_frame_reader_refuses_oversized_announcement_before_buffering():
    r = FrameReader()
    with pytest.raises(FrameError, match="limit"):
        r.feed(LENGTH.pack(MAX_FRAME + 1))
    first = FrameReader(first_limit=16)
    with pytest.raises(FrameError, match="limit is 16"):
        first.feed(LENGTH.pack(17))


def _pair(suite):
    k1, k2 = os.urandom(SUITES[suite].key_bytes), os.urandom(SUITES[suite].key_bytes)
    return make_channel(suite, k1, k2), make_channel(suite, k2, k1)


def _body(wire):
    joined = b"".join(bytes(p) for p in wire)
    assert LENGTH.unpack_from(joined)[0] == len(joined) - 4
    return joined[4:]


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_suite_round_trip_and_sequence(suite):
    a, b = _pair(suite)
    msgs = [b"", b"x", os.urandom(70000)]
    for m in msgs:
        body = _body(a.send.seal([m[:10], m[10:]]))
        if len(m) > 16:
            assert m[:16] not in body          # encrypted (a short plaintext may match by chance)
        assert b.recv.open(body) == m


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_suite_rejects_forged_replayed_and_reordered(suite):
    a, b = _pair(suite)
    f1, f2 = _body(a.send.seal([b"first"])), _body(a.send.seal([b"second"]))
    forged = bytearray(f1)
    forged[-1] ^= 1
    with pytest.raises(AuthError):
        b.recv.open(bytes(forged))
    a, b = _pair(suite)
    f1, f2 = _body(a.send.seal([b"first"])), _body(a.send.seal([b"second"]))
    with pytest.raises(AuthError):
        b.recv.open(f2)                       # reordered: frame 1 arrives as frame 0
    a, b = _pair(suite)
    f1 = _body(a.send.seal([b"first"]))
    assert b.recv.open(f1) == b"first"
    with pytest.raises(AuthError):
        b.recv.open(f1)                       # replayed
    with pytest.raises(AuthError):
        b.recv.open(b"short")


def test_handshake_pins_fingerprint_and_agrees_on_keys():
    server_key = X25519PrivateKey.generate()
    pub = server_key.public_key().public_bytes_raw()
    fp = fingerprint(pub)
    for suite in SUITES:
        hs = ClientHandshake.start(suite)
        reply, server_ch, transcript = server_respond(server_key, pub, hs.hello, set(SUITES))
        client_ch, client_transcript = hs.finish(reply, fp)
        assert client_transcript == transcript
        assert server_ch.recv.open(_body(client_ch.send.seal([b"ping"]))) == b"ping"
        assert client_ch.recv.open(_body(server_ch.send.seal([b"pong"]))) == b"pong"
    hs = ClientHandshake.start("sfs2003")
    reply, _, _ = server_respond(server_key, pub, hs.hello, set(SUITES))
    with pytest.raises(FingerprintMismatch):
        hs.finish(reply, fingerprint(os.urandom(32)))
    # A man in the middle who knows the (public) long-term key sends an all-zero ephemeral key:
    # cryptography's 'Error computing shared key.' reached the user as it was.
    with pytest.raises(HandshakeError, match="ephemeral key is not a usable X25519 key"):
        hs.finish(reply[:-32] + bytes(32), fp)
    with pytest.raises(HandshakeError, match="bad magic"):
        server_respond(server_key, pub, b"GET / HTTP/1.1\r\n", set(SUITES))
    with pytest.raises(HandshakeError, match="not offered"):
        server_respond(server_key, pub, ClientHandshake.start("modern").hello, {"sfs2003"})


def test_server_address_parsing():
    fp = fingerprint(b"\0" * 32)
    a = ServerAddress.parse(f"127.0.0.1:4000:{fp}")
    assert (a.host, a.port, a.fingerprint) == ("127.0.0.1", 4000, fp)
    assert ServerAddress.parse(f"[::1]:4000:{fp}").host == "::1"
    for bad in ("127.0.0.1:4000", f"h:x:{fp}", "h:1:" + "A" * 32, "h:1:abc"):
        with pytest.raises(ValueError):
            ServerAddress.parse(bad)


def test_block_cache_is_bounded_serves_spanning_reads_and_invalidates(tmp_path):
    path = tmp_path / "f"
    data = os.urandom(10 * 1024 + 17)
    path.write_bytes(data)
    cache = BlockCache(capacity_bytes=4096, block_size=1024)
    st = os.stat(path)
    assert bytes(cache.read(str(path), st, 0, len(data))) == data
    assert cache.bytes <= 4096
    assert bytes(cache.read(str(path), st, 1000, 3100)) == data[1000:3100]
    hits = cache.hits
    cache.read(str(path), st, 2048, 2100)
    assert cache.hits == hits + 1
    cache.invalidate(st)
    assert cache.bytes == 0


@pytest.fixture
def layer(tmp_path):
    root = tmp_path / "export"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_bytes(b"data")
    outside = tmp_path / "secret"
    outside.write_bytes(b"secret")
    (root / "escape").symlink_to(outside)
    (root / "inner").symlink_to(root / "d" / "f")
    return FileLayer(str(root), cache_bytes=1 << 20)


def _status(layer, request):
    reply = layer.handle(request)[0]
    return rpc.REP_HEAD.unpack_from(reply)[1], reply[5:]


@pytest.mark.parametrize("name, status", [
    ("..", rpc.INVAL), (".", rpc.INVAL), ("/etc/passwd", rpc.INVAL), ("d/f", rpc.INVAL), ("", rpc.INVAL),
    ("escape", rpc.ACCES), ("missing", rpc.NOENT), ("x" * 300, rpc.NAMETOOLONG), ("inner", rpc.OK)])
def test_file_layer_name_safety(layer, name, status):
    assert _status(layer, rpc.req_lookup(7, rpc.ROOT_FH, name))[0] == status
    if status not in (rpc.OK, rpc.NOENT):
        assert _status(layer, rpc.req_create(8, rpc.ROOT_FH, name))[0] == status


def test_file_layer_rejects_malformed_and_stale(layer):
    assert _status(layer, rpc.req_getattr(1, 999))[0] == rpc.STALE
    assert _status(layer, b"\0\0\0\1\x04\0")[0] == rpc.INVAL          # READ with truncated args
    assert _status(layer, b"\0\0\0\1\x63")[0] == rpc.BADPROC
    assert _status(layer, rpc.req_read(1, rpc.ROOT_FH, 0, 10))[0] == rpc.ISDIR


_EVERY_REQUEST_BUT_WRITE = [
    ("LOOKUP", rpc.req_lookup(1, rpc.ROOT_FH, "d")),
    ("GETATTR", rpc.req_getattr(1, rpc.ROOT_FH)),
    ("READDIR", rpc.req_readdir(1, rpc.ROOT_FH, 0)),
    ("READ", rpc.req_read(1, rpc.ROOT_FH, 0, 4)),
    ("CREATE", rpc.req_create(1, rpc.ROOT_FH, "new")),
    ("REMOVE", rpc.req_remove(1, rpc.ROOT_FH, "inner")),
    ("RENAME", rpc.req_rename(1, rpc.ROOT_FH, "inner", rpc.ROOT_FH, "moved")),
]


@pytest.mark.parametrize("proc, request_", _EVERY_REQUEST_BUT_WRITE,
                         ids=[proc for proc, _ in _EVERY_REQUEST_BUT_WRITE])
def test_arguments_followed_by_trailing_bytes_are_malformed(layer, tmp_path, proc, request_):
    """Arguments must end where their layout ends: a LOOKUP with bytes after the name succeeded,
    and so did every procedure but WRITE (whose data is the rest of the request). Now all of
    them get INVAL naming the procedure, and do nothing."""
    root = tmp_path / "export"
    before = sorted(p.name for p in root.iterdir())
    assert _status(layer, request_ + b"xyz") == (
        rpc.INVAL, f"malformed {proc} arguments: 3 trailing bytes".encode())
    assert sorted(p.name for p in root.iterdir()) == before      # nothing created, removed, moved
    short = _status(layer, request_[:-1])
    assert short[0] == rpc.INVAL and short[1].startswith(f"malformed {proc} arguments: ".encode())


def test_file_swapped_for_a_symlink_after_lookup_is_not_followed(layer, tmp_path):
    reply = layer.handle(rpc.req_lookup(1, rpc.ROOT_FH, "d"))[0]
    dir_fh = rpc.FH.unpack_from(reply, 5)[0]
    reply = layer.handle(rpc.req_lookup(2, dir_fh, "f"))[0]
    fh = rpc.FH.unpack_from(reply, 5)[0]
    target = tmp_path / "export" / "d" / "f"
    target.unlink()
    target.symlink_to(tmp_path / "secret")
    status, message = _status(layer, rpc.req_read(3, fh, 0, 100))
    assert status == rpc.INVAL and b"READ of a symlink: not a regular file" in message
    assert _status(layer, rpc.req_write_head(4, fh, 0) + b"x")[0] == rpc.ACCES
    assert (tmp_path / "secret").read_bytes() == b"secret"


def test_directory_swapped_for_a_symlink_after_lookup_leads_nowhere(layer, tmp_path):
    """A handle names a resolved path. Someone with write access to the export replaces a
    directory on it with a symlink to the outside: no RPC through an old handle may follow it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f").write_bytes(b"outside secret")
    reply = layer.handle(rpc.req_lookup(1, rpc.ROOT_FH, "d"))[0]
    dir_fh = rpc.FH.unpack_from(reply, 5)[0]
    reply = layer.handle(rpc.req_lookup(2, dir_fh, "f"))[0]
    fh = rpc.FH.unpack_from(reply, 5)[0]
    export_d = tmp_path / "export" / "d"
    (export_d / "f").unlink()
    export_d.rmdir()
    export_d.symlink_to(outside)                      # d -> outside, which has an "f" too

    requests = {
        "READ": rpc.req_read(3, fh, 0, 100),
        "GETATTR": rpc.req_getattr(4, fh),
        "WRITE": rpc.req_write_head(5, fh, 0) + b"overwritten",
        "LOOKUP": rpc.req_lookup(6, dir_fh, "f"),
        "READDIR": rpc.req_readdir(7, dir_fh, 0),
        "CREATE": rpc.req_create(8, dir_fh, "planted"),
        "REMOVE": rpc.req_remove(9, dir_fh, "f"),
        "RENAME": rpc.req_rename(10, dir_fh, "f", rpc.ROOT_FH, "taken"),
        "RENAME into": rpc.req_rename(11, rpc.ROOT_FH, "inner", dir_fh, "planted"),
    }
    for proc, request in requests.items():
        parts = layer.handle(request)
        status = rpc.REP_HEAD.unpack_from(parts[0])[1]
        assert status in (rpc.NOTDIR, rpc.ACCES), (proc, status, bytes(parts[0][5:]))
        assert b"outside secret" not in b"".join(bytes(p) for p in parts), proc
    assert (outside / "f").read_bytes() == b"outside secret"        # not written, not removed
    assert sorted(p.name for p in outside.iterdir()) == ["f"]        # nothing planted
    assert not (tmp_path / "export" / "taken").exists()


def test_deferred_fsync_is_done_by_finish_and_a_failed_one_is_an_io_error(tmp_path, monkeypatch):
    root = tmp_path / "export"
    root.mkdir()
    (root / "f").write_bytes(b"old")
    layer = FileLayer(str(root), cache_bytes=1 << 20, sync_later=True)
    fh = rpc.FH.unpack_from(layer.handle(rpc.req_lookup(1, rpc.ROOT_FH, "f"))[0], 5)[0]
    reply = layer.handle(rpc.req_write_head(2, fh, 0) + b"new")
    assert reply.fds and (root / "f").read_bytes() == b"new"      # written, not yet synced
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    fds = list(reply.fds)
    sent = FileLayer.finish(reply)
    assert synced == fds and rpc.REP_HEAD.unpack_from(sent[0])[1] == rpc.OK
    for fd in fds:                                                 # finish closed them
        with pytest.raises(OSError):
            os.fstat(fd)

    def broken_disk(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_disk)
    reply = layer.handle(rpc.req_create(3, rpc.ROOT_FH, "g"))
    sent = FileLayer.finish(reply)
    status = rpc.REP_HEAD.unpack_from(sent[0])[1]
    assert status == rpc.IO and b"fsync failed" in bytes(sent[0])
    # A layer that syncs at once (the default) never hands fds back, and its error says so.
    now = FileLayer(str(root))
    fh = rpc.FH.unpack_from(now.handle(rpc.req_lookup(4, rpc.ROOT_FH, "f"))[0], 5)[0]
    sent = now.handle(rpc.req_write_head(5, fh, 0) + b"n")
    assert not hasattr(sent, "fds") and rpc.REP_HEAD.unpack_from(sent[0])[1] == rpc.IO
    monkeypatch.setattr(os, "fsync", real_fsync)
    sent = now.handle(rpc.req_write_head(6, fh, 0) + b"N")
    assert rpc.REP_HEAD.unpack_from(sent[0])[1] == rpc.OK and (root / "f").read_bytes() == b"New"


def _handle_or_unblock(layer, request, fifo):
    """layer.handle(request) on a thread: if it blocks (opening the FIFO waits for a reader), open
    the FIFO's read end to set it free and fail, instead of hanging the test run."""
    import threading
    out = []
    t = threading.Thread(target=lambda: out.append(layer.handle(request)), daemon=True)
    t.start()
    t.join(timeout=30)
    if t.is_alive():
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        t.join(timeout=30)
        os.close(fd)
        raise AssertionError(f"the file layer blocked on {request[4]} of {fifo}")
    return out[0]


def test_fifos_sockets_and_other_special_files_are_refused_without_blocking(tmp_path):
    """A FIFO in the export hung the file layer (and so every client): WRITE or CREATE opened it
    O_WRONLY, which waits for a reader. Special files are listed and stat-ed, never opened."""
    import socket
    root = tmp_path / "export"
    root.mkdir()
    os.mkfifo(root / "fifo")
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(root / "sock"))
    layer = FileLayer(str(root), cache_bytes=1 << 20, sync_later=True)
    for name, kind in (("fifo", b"a FIFO"), ("sock", b"a socket")):
        path = str(root / name)
        reply = layer.handle(rpc.req_lookup(1, rpc.ROOT_FH, name))[0]
        assert rpc.REP_HEAD.unpack_from(reply)[1] == rpc.OK
        fh = rpc.FH.unpack_from(reply, 5)[0]
        assert rpc.Attr.unpack(reply, 13).type == rpc.FT_OTHER
        assert rpc.Attr.unpack(layer.handle(rpc.req_getattr(2, fh))[0], 5).type == rpc.FT_OTHER
        for what, request in (("WRITE", rpc.req_write_head(3, fh, 0) + b"x"),
                              ("CREATE", rpc.req_create(4, rpc.ROOT_FH, name)),
                              ("READ", rpc.req_read(5, fh, 0, 100))):
            parts = _handle_or_unblock(layer, request, path)
            assert not getattr(parts, "fds", None)        # nothing opened is left to fsync
            status, message = rpc.REP_HEAD.unpack_from(parts[0])[1], bytes(parts[0][5:])
            assert (status, message) == (rpc.INVAL, what.encode() + b" of " + kind + b": not a regular file")
        assert _status(layer, rpc.req_readdir(6, fh, 0))[0] == rpc.NOTDIR
    # With a reader on the FIFO, opening it would not block: still refused, and nothing written.
    reader = os.open(root / "fifo", os.O_RDONLY | os.O_NONBLOCK)
    try:
        fh = rpc.FH.unpack_from(layer.handle(rpc.req_lookup(7, rpc.ROOT_FH, "fifo"))[0], 5)[0]
        for request in (rpc.req_write_head(8, fh, 0) + b"leak", rpc.req_create(9, rpc.ROOT_FH, "fifo")):
            assert _status(layer, request)[0] == rpc.INVAL
        assert os.read(reader, 100) == b""                # no writer ever got in
    finally:
        os.close(reader)
    assert _status(layer, rpc.req_remove(10, rpc.ROOT_FH, "fifo"))[0] == rpc.OK
    assert not (root / "fifo").exists()
    unix.close()


def test_readdir_lists_only_names_that_are_utf8(tmp_path):
    """A name that is not UTF-8 went out raw although names are UTF-8 on the wire, so the client
    could not parse the listing at all. It is left out now (no request could name it anyway)."""
    root = tmp_path / "export"
    root.mkdir()
    (root / "ok.txt").write_bytes(b"x")
    (root / "café").write_bytes(b"y")
    os.close(os.open(os.fsencode(root) + b"/caf\xe9-latin1", os.O_CREAT | os.O_WRONLY, 0o644))
    layer = FileLayer(str(root), cache_bytes=1 << 20)
    reply = layer.handle(rpc.req_readdir(1, rpc.ROOT_FH, 0))[0]
    entries, eof, _ = rpc.unpack_entries(memoryview(reply)[rpc.REP_HEAD.size:])
    assert eof and entries == [("café", rpc.FT_FILE), ("ok.txt", rpc.FT_FILE)]


def test_servers_creating_the_same_new_key_at_once_all_get_one_complete_key(tmp_path):
    # Each process creates its key file concurrently; none may fail or read a half-written key,
    # and all must end up with the key that is on disk.
    import subprocess
    import sys
    path = tmp_path / "server.key"
    import time
    code = ("import sys, time; from apps.sfs_like.keys import load_or_create, fingerprint\n"
            "while time.time() < float(sys.argv[2]): pass\n"          # all start at one instant
            "k = load_or_create(sys.argv[1]); print(fingerprint(k.public_key().public_bytes_raw()))")
    start = str(time.time() + 3.0)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), start], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(8)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    from apps.sfs_like.keys import load_or_create
    on_disk = fingerprint(load_or_create(path).public_key().public_bytes_raw())
    assert {out.strip() for out, _ in outs} == {on_disk}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["server.key"]      # no temporary left
    assert (path.stat().st_mode & 0o777) == 0o600


def test_the_file_layer_never_serves_a_hidden_path(tmp_path):
    """Defence in depth behind the start-up check: the key file is not reachable by any name RPC."""
    root = tmp_path / "export"
    root.mkdir()
    key = root / "server.key"
    key.write_bytes(b"k" * 32)
    (root / "alias").symlink_to(key)
    layer = FileLayer(str(root), cache_bytes=1 << 20, hidden=(str(key),))
    for name in ("server.key", "alias"):
        for request in (rpc.req_lookup(1, rpc.ROOT_FH, name), rpc.req_create(2, rpc.ROOT_FH, name)):
            status, message = _status(layer, request)
            assert status == rpc.ACCES and b"not served" in message, (name, request[4])
    assert _status(layer, rpc.req_remove(3, rpc.ROOT_FH, "server.key"))[0] == rpc.ACCES
    assert key.read_bytes() == b"k" * 32


def test_the_file_layer_never_serves_a_hard_link_to_a_hidden_file(tmp_path):
    """A hard link to the key inside the export has another path: it is refused by identity."""
    root = tmp_path / "export"
    root.mkdir()
    key = tmp_path / "server.key"
    key.write_bytes(b"k" * 32)
    os.link(key, root / "copy")
    (root / "alias").symlink_to(root / "copy")
    st = os.stat(key)
    layer = FileLayer(str(root), cache_bytes=1 << 20, hidden=(str(key),),
                      hidden_ids=((st.st_dev, st.st_ino),))
    for name in ("copy", "alias"):
        for request in (rpc.req_lookup(1, rpc.ROOT_FH, name), rpc.req_create(2, rpc.ROOT_FH, name),
                        rpc.req_rename(3, rpc.ROOT_FH, name, rpc.ROOT_FH, "moved"),
                        rpc.req_rename(4, rpc.ROOT_FH, "new", rpc.ROOT_FH, name)):
            status, message = _status(layer, request)
            assert status == rpc.ACCES and b"not served" in message, (name, request[4])
    assert _status(layer, rpc.req_remove(5, rpc.ROOT_FH, "copy"))[0] == rpc.ACCES
    assert key.read_bytes() == b"k" * 32 and (root / "copy").exists()


def _read_all(layer, fh, size, block=64 * 1024):
    out = b""
    for offset in range(0, size, block):
        parts = layer.handle(rpc.req_read(1, fh, offset, block))
        assert rpc.REP_HEAD.unpack_from(parts[0])[1] == rpc.OK
        out += bytes(parts[1])
    return out


def test_cached_blocks_are_dropped_when_contents_change_behind_a_restored_mtime(tmp_path):
    """Contents replaced in place with size and mtime put back (os.utime): the ctime moved, so the
    server serves the new bytes, not its cached ones."""
    root = tmp_path / "export"
    root.mkdir()
    path = root / "f"
    old, new = os.urandom(300_000), os.urandom(300_000)
    path.write_bytes(old)
    st = os.stat(path)
    layer = FileLayer(str(root), cache_bytes=1 << 20)
    fh = rpc.FH.unpack_from(layer.handle(rpc.req_lookup(1, rpc.ROOT_FH, "f"))[0], 5)[0]
    assert _read_all(layer, fh, len(old)) == old
    with open(path, "r+b") as f:
        f.write(new)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (os.stat(path).st_mtime_ns, os.stat(path).st_size) == (st.st_mtime_ns, st.st_size)
    assert _read_all(layer, fh, len(new)) == new


def test_a_chmod_makes_the_next_read_reopen_the_file(tmp_path):
    """After chmod (say, 000) cached blocks are not served: the next READ opens the file again,
    so a server not running as root answers ACCES (root, running the tests, may still open it)."""
    root = tmp_path / "export"
    root.mkdir()
    (root / "f").write_bytes(b"x" * 1000)
    layer = FileLayer(str(root), cache_bytes=1 << 20)
    fh = rpc.FH.unpack_from(layer.handle(rpc.req_lookup(1, rpc.ROOT_FH, "f"))[0], 5)[0]
    _read_all(layer, fh, 1000)
    _read_all(layer, fh, 1000)
    misses = layer.cache.misses
    os.chmod(root / "f", 0o000)
    opened = []
    real_open = layer.fs.open
    layer.fs.open = lambda *a: opened.append(a[0]) or real_open(*a)
    assert _read_all(layer, fh, 1000) == b"x" * 1000
    assert layer.cache.misses == misses + 1 and opened == [str(root / "f")]


def test_an_export_of_the_root_directory_serves_files_by_their_path(tmp_path):
    """With export "/", the containment prefix is "/", not "//" (which refused every name)."""
    real = os.path.realpath(tmp_path)
    (tmp_path / "known").write_bytes(b"known bytes")
    layer = FileLayer("/", cache_bytes=1 << 20)
    fh = rpc.ROOT_FH
    for name in real.strip("/").split("/") + ["known"]:
        reply = layer.handle(rpc.req_lookup(1, fh, name))[0]
        assert rpc.REP_HEAD.unpack_from(reply)[1] == rpc.OK, (name, bytes(reply[5:]))
        dir_fh, fh = fh, rpc.FH.unpack_from(reply, 5)[0]
    assert _read_all(layer, fh, 11) == b"known bytes"
    assert _status(layer, rpc.req_create(2, dir_fh, "made"))[0] == rpc.OK
    assert _status(layer, rpc.req_rename(3, dir_fh, "made", dir_fh, "moved"))[0] == rpc.OK
    assert _status(layer, rpc.req_remove(4, dir_fh, "moved"))[0] == rpc.OK
    assert sorted(os.listdir(tmp_path)) == ["known"]
    assert _status(layer, rpc.req_lookup(5, rpc.ROOT_FH, ".."))[0] == rpc.INVAL


def _fh(layer, name, dir_fh=rpc.ROOT_FH):
    reply = layer.handle(rpc.req_lookup(1, dir_fh, name))[0]
    assert rpc.REP_HEAD.unpack_from(reply)[1] == rpc.OK, bytes(reply)
    return rpc.FH.unpack_from(reply, rpc.REP_HEAD.size)[0]


def _keyed_layer(tmp_path):
    """An export with a file `f`, and the key outside it with a hard link `k` inside."""
    root = tmp_path / "export"
    root.mkdir()
    (root / "f").write_bytes(b"public")
    key = tmp_path / "server.key"
    key.write_bytes(b"k" * 32)
    os.link(key, root / "k")
    st = os.stat(key)
    return root, key, FileLayer(str(root), cache_bytes=1 << 20, hidden=(str(key),),
                                hidden_ids=((st.st_dev, st.st_ino),))


def test_a_hard_link_to_the_key_renamed_over_a_looked_up_file_is_neither_read_nor_written(tmp_path):
    """The key's identity was checked for names only (LOOKUP...). A handle LOOKed UP while its
    path was an ordinary file then reached whatever was renamed there later: with a hard link
    to the key, READ served the key, GETATTR described it, and WRITE overwrote it."""
    root, key, layer = _keyed_layer(tmp_path)
    fh = _fh(layer, "f")
    os.rename(root / "k", root / "f")                # a local user swaps it in behind the server
    for request in (rpc.req_read(2, fh, 0, 100), rpc.req_getattr(3, fh),
                    rpc.req_write_head(4, fh, 0) + b"overwritten"):
        parts = layer.handle(request)
        status, message = rpc.REP_HEAD.unpack_from(parts[0])[1], bytes(parts[0][5:])
        assert status == rpc.ACCES and b"not served" in message, (request[4], status, message)
        assert b"k" * 8 not in b"".join(bytes(p) for p in parts)
    assert key.read_bytes() == b"k" * 32


@pytest.mark.parametrize("request_", ["write", "create"])
def test_a_hard_link_to_the_key_swapped_in_just_before_the_open_is_not_written(tmp_path, request_):
    """Between the checks on a name (or a handle's path) and the open, the key's hard link may be
    renamed over the file: CREATE opened it with O_TRUNC and emptied the key before anything was
    checked, WRITE wrote into it. What is opened is checked before it is truncated or written."""
    root, key, layer = _keyed_layer(tmp_path)
    fh = _fh(layer, "f")
    real_open = layer.fs.open

    def swapped_open(path, flags, mode=0o644):
        if path.endswith(os.sep + "f") and (root / "k").exists():
            os.rename(root / "k", root / "f")
        return real_open(path, flags, mode)

    layer.fs.open = swapped_open
    request = (rpc.req_write_head(2, fh, 0) + b"overwritten" if request_ == "write"
               else rpc.req_create(2, rpc.ROOT_FH, "f"))
    status, message = _status(layer, request)
    assert status == rpc.ACCES and b"not served" in message, message
    assert key.read_bytes() == b"k" * 32


@pytest.mark.parametrize("change", ["truncated", "replaced"])
def test_a_file_changed_between_the_stat_and_the_read_is_read_again(tmp_path, change):
    """A READ stats the file, then the cache opens it by path and reads. A file cut short in
    between gave a reply with neither data nor EOF (the client calls that a broken server); a
    file replaced in between had its bytes served, and cached, as the old file's, with the old
    file's size deciding EOF. Now the file opened must be the one stated, or the READ looks
    again."""
    root = tmp_path / "export"
    root.mkdir()
    (root / "f").write_bytes(b"A" * 100)
    (root / "g").write_bytes(b"B" * 10)
    layer = FileLayer(str(root), cache_bytes=1 << 20)
    fh = _fh(layer, "f")
    real_lstat = layer.fs.lstat
    done = []

    def lstat_then_change(path):
        st = real_lstat(path)
        if path.endswith(os.sep + "f") and not done:
            done.append(st)
            if change == "truncated":
                os.truncate(path, 0)
            else:
                os.rename(root / "g", path)
        return st

    layer.fs.lstat = lstat_then_change
    parts = layer.handle(rpc.req_read(2, fh, 0, 50))
    xid, status, eof = rpc.READ_REPLY_HEAD.unpack_from(parts[0])
    data = b"".join(bytes(p) for p in parts[1:])
    assert status == rpc.OK
    assert (data, eof) == ((b"", 1) if change == "truncated" else (b"B" * 10, 1))
    old = done[0]
    assert not layer.cache._by_file.get((old.st_dev, old.st_ino))   # nothing cached as the old file


@pytest.mark.parametrize("err, status, says", [
    (errno.ENOSPC, rpc.IO, b"No space left on device"), (errno.EDQUOT, rpc.DQUOT, b"Disk quota exceeded"),
    (errno.EACCES, rpc.ACCES, b"Permission denied"), (errno.EROFS, rpc.IO, b"Read-only file system")])
def test_a_write_the_disk_refuses_gets_its_reason_and_the_layer_goes_on(layer, monkeypatch, err,
                                                                         status, says):
    """A full disk, a quota, a read-only folder during an upload: the reply names the reason
    (EDQUOT came back as IO: Linux's errno 122 is not the protocol's DQUOT, 69), nothing is half
    made, and the next requests are served."""
    dir_fh = _fh(layer, "d")
    fh = _fh(layer, "f", dir_fh)

    def refused(*args, **kw):
        raise OSError(err, os.strerror(err))

    with monkeypatch.context() as m:
        m.setattr(os, "pwrite", refused)
        assert _status(layer, rpc.req_write_head(2, fh, 0) + b"x" * 1000) == (status, says)
    with monkeypatch.context() as m:
        m.setattr(layer.fs, "open", refused)
        assert _status(layer, rpc.req_create_temp(3, dir_fh)) == (status, says)
    assert not [name for name in os.listdir(layer.root + "/d") if name != "f"]
    parts = layer.handle(rpc.req_read(4, fh, 0, 100))
    assert bytes(parts[1]) == b"data"


@pytest.mark.parametrize("request_", [
    rpc.req_rename(1, rpc.ROOT_FH, "", rpc.ROOT_FH, "x")[:-1],              # was: empty name
    rpc.req_rename(1, 12345, "d", rpc.ROOT_FH, "x") + b"xy",               # was: STALE
    rpc.req_rename(1, rpc.ROOT_FH, "n" * 300, rpc.ROOT_FH, "x") + b"xy",   # was: NAMETOOLONG
    rpc.req_rename(1, rpc.ROOT_FH, "d", rpc.ROOT_FH, "x")[:14],            # cut in the to-handle
], ids=["empty-from-name-cut", "stale-from-handle-trailing", "long-from-name-trailing",
        "cut-in-to-handle"])
def test_a_rename_cut_short_or_too_long_is_malformed_whatever_its_first_pair(layer, tmp_path,
                                                                             request_):
    """PROTOCOL.md: arguments cut short or followed by more bytes get INVAL `malformed <PROC>
    arguments` and do nothing. RENAME checked its from-pair before it parsed its to-pair, so a
    bad from-name or handle answered first (found by test_fuzz_rpc)."""
    before = sorted(p.name for p in (tmp_path / "export").iterdir())
    status, message = _status(layer, request_)
    assert status == rpc.INVAL and bytes(message).startswith(b"malformed RENAME arguments: "), \
        bytes(message)
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == before


@pytest.mark.parametrize("to_name, status", [("", rpc.INVAL), ("..", rpc.INVAL), ("a/b", rpc.INVAL),
                                             ("n" * 256, rpc.NAMETOOLONG)])
def test_a_renames_bad_to_name_is_refused_as_such_whatever_its_from_pair(layer, to_name, status):
    """Both names of a RENAME are checked before either handle is used, as a LOOKUP's name is:
    an invalid to-name got NOTDIR or STALE from the from-pair instead (found by test_fuzz_rpc)."""
    f = rpc.FH.unpack_from(layer.handle(rpc.req_lookup(1, rpc.ROOT_FH, "inner"))[0], 5)[0]
    for from_fh in (f, 12345):                       # a file's handle, a handle never issued
        got, message = _status(layer, rpc.req_rename(2, from_fh, "x", rpc.ROOT_FH, to_name))
        assert got == status, bytes(message)


def test_a_request_shorter_than_its_header_is_answered_with_its_xid_if_it_has_one(layer):
    """A request of just an xid was answered as xid 0: a client matching replies by xid could
    not tell which request it answered (found by test_fuzz_rpc). Under 4 bytes there is none."""
    assert layer.handle(b"\0\0\1\7")[0] == rpc.rep_error(0x107, rpc.INVAL,
                                                          "request shorter than its header")
    for short in (b"", b"\1", b"\0\0\1"):
        assert rpc.REP_HEAD.unpack_from(layer.handle(short)[0]) == (0, rpc.INVAL)
