"""End to end over loopback: byte-identical round trips in both suites and both modes, many clients,
and data written before a server restart read back after it."""
from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading

import pytest

from apps.sfs_like import rpc
from apps.sfs_like.client import Client

from .conftest import REPO

KIB = 1024
CACHE_MB = 1                     # a 1 MiB cache, so the largest file below does not fit in it
SIZES = [0, 1, 8 * KIB - 1, 64 * KIB, 64 * KIB + 1, 300_001, 3 * 1024 * KIB + 7]


@pytest.mark.parametrize("colors, workers", [("off", 1), ("on", 2)])
def test_round_trip_every_size_suite_and_block(start_server, export, colors, workers):
    srv = start_server(export, colors=colors, workers=workers, extra=("--cache-mb", str(CACHE_MB)))
    blobs = {f"f{size}": os.urandom(size) for size in SIZES}
    for suite in ("sfs2003", "modern"):
        with Client(srv.address, suite) as c:
            for name, data in blobs.items():
                c.put(f"sub/{suite}-{name}", data)
            names = {n for n, _ in c.listdir("sub")}
            assert {f"{suite}-{n}" for n in blobs} <= names
            for name, data in blobs.items():
                path = f"sub/{suite}-{name}"
                assert c.getattr(c.walk(path)).size == len(data)
                for block in (8 * KIB, 64 * KIB, 256 * KIB):
                    assert c.get(path, block) == data, (path, block)
                assert (export / "sub" / f"{suite}-{name}").read_bytes() == data
            # A file written on the server side is seen, and reads past EOF say so.
            assert c.get("sub/inner.bin") == bytes(range(256)) * 10
            fh = c.walk("hello.txt")
            assert c.read(fh, 1000, 10) == (b"", True)
            c.rm(f"sub/{suite}-f1")
            with pytest.raises(rpc.RpcError) as err:
                c.walk(f"sub/{suite}-f1")
            assert err.value.status == rpc.NOENT
    assert "Traceback" not in srv.log()


def test_many_concurrent_clients_get_their_own_bytes(start_server, export):
    files = {f"c{i}": os.urandom(200_000 + i * 4099) for i in range(6)}
    for name, data in files.items():
        (export / name).write_bytes(data)
    srv = start_server(export, colors="on", workers=2)
    errors, done = [], []

    def reader(i: int) -> None:
        name = f"c{i % len(files)}"
        try:
            with Client(srv.address, "sfs2003" if i % 2 else "modern") as c:
                for _ in range(3):
                    assert hashlib.sha256(c.get(name, 16 * KIB * (1 + i % 4))).digest() == \
                        hashlib.sha256(files[name]).digest()
            done.append(i)
        except BaseException as exc:
            errors.append((i, exc))

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=100)
    assert not errors, errors
    assert sorted(done) == list(range(24))
    with Client(srv.address) as c:
        stats = c.stats()
    assert stats["loop_errors"] == 0
    assert stats["reads"] >= 24 * 3


def test_write_survives_restart_with_same_key(start_server, export, tmp_path):
    key = tmp_path / "server.key"
    srv = start_server(export, key=key, colors="on", workers=2)
    data = os.urandom(700_000)
    with Client(srv.address) as c:
        c.put("persist.bin", data)
        fh = c.walk("persist.bin")
        assert c.write(fh, 100, b"PATCH") == 5
    expected = data[:100] + b"PATCH" + data[105:]
    srv.stop(kill=True)
    again = start_server(export, key=key, colors="off")
    assert again.address.rsplit(":", 1)[1] == srv.address.rsplit(":", 1)[1]   # same fingerprint
    with Client(again.address, "modern") as c:
        assert c.get("persist.bin") == expected


def test_cli_commands(start_server, export, tmp_path):
    srv = start_server(export)
    local = tmp_path / "up.bin"
    local.write_bytes(os.urandom(100_000))

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "apps.sfs_like.client", srv.address, *args],
                              cwd=REPO, capture_output=True, timeout=60)

    assert cli("put", str(local), "sub/up.bin").returncode == 0
    listing = cli("ls", "sub").stdout.decode().split()
    assert "up.bin" in listing and "inner.bin" in listing
    assert cli("ls").stdout.decode().split() == ["hello.txt", "sub/"]
    assert cli("cat", "hello.txt").stdout == b"hello, world\n"
    out = tmp_path / "down.bin"
    assert cli("get", "sub/up.bin", str(out)).returncode == 0
    assert out.read_bytes() == local.read_bytes()
    assert cli("rm", "sub/up.bin").returncode == 0
    missing = cli("cat", "sub/up.bin")
    assert missing.returncode == 1 and b"NOENT" in missing.stderr
    bad = cli("cat", "../etc/passwd")
    assert bad.returncode == 1 and b"INVAL" in bad.stderr
    # A failed get leaves the local file as it was (not truncated) and no temporary file behind.
    out.write_bytes(b"keep me")
    failed = cli("get", "sub/up.bin", str(out))
    assert failed.returncode == 1 and b"NOENT" in failed.stderr
    assert out.read_bytes() == b"keep me"
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]
    # The load generator says what went wrong in one line.
    load = subprocess.run([sys.executable, "-m", "apps.sfs_like.loadgen", srv.address, "--path",
                           "no-such-file", "--warmup", "0.1", "--duration", "0.2"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert load.returncode == 1
    assert load.stderr.startswith("python -m apps.sfs_like.loadgen: error: ") and "NOENT" in load.stderr
    assert "Traceback" not in load.stderr


def test_fsync_runs_on_the_connections_color_not_the_file_layers(export, tmp_path, monkeypatch):
    """A WRITE is durable before its reply, but the file layer's color never waits for the disk:
    every fsync runs on the writing connection's crypto color (in-process server, colors on)."""
    import runtime
    from apps.sfs_like.server import Server

    synced_on = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced_on.append(runtime.current_color())
        real_fsync(fd)

    loop = runtime.Loop(workers=2)
    server = Server(loop, str(export), str(tmp_path / "key"), colors="on")   # its key's fsync: before
    monkeypatch.setattr(os, "fsync", recording_fsync)
    server.listen()
    runner = threading.Thread(target=loop.run)
    runner.start()
    try:
        with Client(server.address()) as c:
            c.put("sub/new.bin", b"x" * 100_000)
            assert c.get("sub/new.bin") == b"x" * 100_000
            c.rm("sub/new.bin")
    finally:
        loop.call_soon(loop.stop)
        runner.join(timeout=30)
        loop.close()
    assert synced_on, "no fsync at all"
    assert server.file_color not in synced_on
    assert all(isinstance(color, int) and color >= 2 for color in synced_on), synced_on
    assert not (export / "sub" / "new.bin").exists()


@pytest.mark.parametrize("colors, workers", [("off", 1), ("on", 2)])
def test_client_that_does_not_read_replies_is_throttled(start_server, export, colors, workers):
    """Pipelined 256 KiB READs from a client that reads no replies: the server stops reading its
    requests while its unsent replies are above a bound (they used to grow without bound, 500 MB
    for 2000 READs); another client is served meanwhile; once the client reads, nothing is lost."""
    from apps.sfs_like.server import PAUSE_UNSENT

    big = os.urandom(1 << 20)
    (export / "big.bin").write_bytes(big)
    srv = start_server(export, colors=colors, workers=workers)
    hog = Client(srv.address)
    hog.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KIB)
    fh, _ = hog.lookup(rpc.ROOT_FH, "big.bin")
    count, batch, xid, offsets = 256 * KIB, 16, 0, {}
    with Client(srv.address) as watcher:
        base = watcher.stats()["reads"]
        for _ in range(12):                   # up to 192 READs: 48 MiB of replies
            for _ in range(batch):
                xid += 1
                offsets[xid] = (xid * 7919) % (len(big) - count)
                hog.send_request(rpc.req_read(xid, fh, offsets[xid], count))
            while True:                       # every request answered (sealed), or reading paused
                stats = watcher.stats()
                if stats["reading_paused"] or stats["reads"] - base == xid:
                    break
            if stats["reading_paused"]:
                break
        assert stats["reading_paused"] == 1, stats
        assert stats["max_unsent_bytes"] <= PAUSE_UNSENT + batch * (count + KIB), stats
        assert watcher.get("hello.txt") == b"hello, world\n"     # served meanwhile
        for want in range(1, xid + 1):        # the hog reads: every reply, in order, right bytes
            reply = hog.recv_reply()
            got_xid, status, _eof = rpc.READ_REPLY_HEAD.unpack_from(reply)
            assert (got_xid, status) == (want, rpc.OK)
            assert reply[rpc.READ_REPLY_HEAD.size:] == big[offsets[want]:offsets[want] + count]
        assert hog.read(fh, 5, 10) == (big[5:15], False)        # and is read from again
        stats = watcher.stats()
        assert stats["reading_paused"] == 0 and stats["read_pauses"] >= 1, stats
        assert stats["max_unsent_bytes"] <= PAUSE_UNSENT + batch * (count + KIB), stats
    hog.close()
    assert "Traceback" not in srv.log()


@pytest.mark.parametrize("colors, workers", [("off", 1), ("on", 2)])
def test_requests_then_half_close_get_all_replies(start_server, export, colors, workers):
    """A client may send its requests, shut down its sending side, and read the replies: the
    server answers everything it received before the EOF, in order, then closes."""
    data = os.urandom(2 << 20)
    (export / "half.bin").write_bytes(data)
    srv = start_server(export, colors=colors, workers=workers)
    with Client(srv.address) as c:
        fh, _ = c.lookup(rpc.ROOT_FH, "half.bin")
        for i in range(8):
            c.send_request(rpc.req_read(10 + i, fh, i * 256 * KIB, 256 * KIB))
        c.send_request(rpc.req_getattr(18, fh))
        c.sock.shutdown(socket.SHUT_WR)
        for i in range(8):
            reply = c.recv_reply()
            assert rpc.READ_REPLY_HEAD.unpack_from(reply)[:2] == (10 + i, rpc.OK)
            assert reply[rpc.READ_REPLY_HEAD.size:] == data[i * 256 * KIB:(i + 1) * 256 * KIB]
        assert rpc.Attr.unpack(rpc.parse_reply(c.recv_reply(), 18)).size == len(data)
        assert c.sock.recv(10) == b""
    assert "Traceback" not in srv.log()


@pytest.mark.parametrize("suite", ["sfs2003", "modern"])
def test_a_put_through_a_small_send_buffer_sends_every_frame_whole(start_server, export, suite):
    """With a timeout on the socket, sendmsg may send part of a large WRITE frame: the client sent
    the rest never, the server timed the frame out and the put failed, leaving its .part file."""
    srv = start_server(export, extra=("--frame-timeout", "3"))
    data = os.urandom(2_000_000)
    with Client(srv.address, suite) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        c.put("x.bin", data)
        assert c.get("x.bin") == data
    assert (export / "x.bin").read_bytes() == data
    assert not [p.name for p in export.iterdir() if p.name.endswith(".part")]


@pytest.mark.parametrize("torn", [False, True])
def test_a_put_interrupted_between_a_write_and_its_reply_removes_its_part_file(start_server, export,
                                                                                 torn):
    """A signal (KeyboardInterrupt, or SystemExit from the client's SIGTERM handler) after a WRITE
    was sent and before its reply was read: the cleanup REMOVE read the WRITE's reply, failed on
    the xid, and the .part file stayed. Now the stale reply is read first (or, with a frame read
    half way, a new connection removes it)."""
    srv = start_server(export)
    with Client(srv.address) as c:
        real = c.recv_reply
        calls = []

        def interrupted(*args, **kw):
            calls.append(1)
            if len(calls) == 2:                    # the first WRITE's reply (the CREATE's was 1st)
                if torn:
                    c.sock.recv(3)                 # a signal in the middle of reading the frame
                    c._torn = True
                raise KeyboardInterrupt
            return real(*args, **kw)

        c.recv_reply = interrupted
        with pytest.raises(KeyboardInterrupt):
            c.put("x.bin", os.urandom(600_000))
        assert len(calls) == (2 if torn else 4)    # the stale WRITE reply, then the REMOVE's
        if not torn:
            c.recv_reply = real
            assert [name for name, _ in c.listdir()] == ["hello.txt", "sub"]   # still in step
    assert sorted(p.name for p in export.iterdir()) == ["hello.txt", "sub"]
