"""The client's command line: what a user gets wrong ends in one line of error, never a traceback,
and local files are handled as `cp` would."""
from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import threading

import pytest

from apps.sfs_like import rpc

from .conftest import REPO
from .fakeserver import FakeServer

FP = "a" * 32


def client(*args, cwd=REPO, **kw):
    return subprocess.run([sys.executable, "-m", "apps.sfs_like.client", *args], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=60, **kw)


def one_line_error(proc, says: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert says in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert [line for line in lines if "error" in line] == lines[-1:]   # (argparse's usage before it)


@pytest.mark.parametrize("block, says", [
    ("-5", "--block: must be 1..262144 (the server's READ limit, 256 KiB), not -5"),
    ("0", "--block: must be 1..262144"),
    ("262145", "--block: must be 1..262144"),
    ("x", "--block: 'x' is not a whole number"),
])
def test_a_bad_block_size_is_a_usage_error(block, says):
    proc = client("--block", block, f"127.0.0.1:1:{FP}", "cat", "f")
    one_line_error(proc, says)
    assert proc.returncode == 2


def test_a_port_out_of_range_is_one_line_of_error():
    proc = client(f"127.0.0.1:99999:{FP}", "ls")
    one_line_error(proc, "port 99999 is out of range (1..65535)")
    assert proc.returncode == 1


def test_get_into_a_directory_copies_under_the_remote_base_name(start_server, export, tmp_path):
    srv = start_server(export)
    down = tmp_path / "down"
    down.mkdir()
    proc = client(srv.address, "get", "sub/inner.bin", str(down))
    assert proc.returncode == 0, proc.stderr
    assert (down / "inner.bin").read_bytes() == bytes(range(256)) * 10
    assert sorted(p.name for p in down.iterdir()) == ["inner.bin"]      # no .part left beside it
    proc = client(srv.address, "get", "hello.txt", cwd=down)           # no LOCAL: the cwd
    assert proc.returncode == 0 and (down / "hello.txt").read_bytes() == b"hello, world\n"


def test_put_to_a_name_ending_in_a_slash_is_refused(start_server, export, tmp_path):
    srv = start_server(export)
    local = tmp_path / "up.bin"
    local.write_bytes(b"up")
    for remote in ("x/", "sub/"):
        proc = client(srv.address, "put", str(local), remote)
        one_line_error(proc, f"remote name {remote!r} ends in '/'")
    assert sorted(p.name for p in export.iterdir()) == ["hello.txt", "sub"]     # no file 'x'
    assert sorted(p.name for p in (export / "sub").iterdir()) == ["inner.bin"]


def test_cat_into_a_reader_that_stops_exits_quietly(start_server, export):
    """`cat big | head -c10`: once head has gone, the client stops without an error message."""
    (export / "big").write_bytes(os.urandom(3 << 20))
    srv = start_server(export)
    proc = subprocess.Popen([sys.executable, "-m", "apps.sfs_like.client", srv.address, "cat", "big"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert len(proc.stdout.read(10)) == 10
    proc.stdout.close()                                # the reader goes away, as head does
    _, err = proc.communicate(timeout=60)
    assert err == b""
    assert proc.returncode == 1


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_get_stopped_by_a_signal_leaves_no_part_file(tmp_path, signum):
    with FakeServer() as server:
        server.answers[rpc.LOOKUP] = server.stall      # a get in progress for as long as we like
        proc = subprocess.Popen([sys.executable, "-m", "apps.sfs_like.client", server.address,
                                 "get", "hello.txt", str(tmp_path / "hello.txt")],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert server.stalled.wait(timeout=60)         # the .part file exists before the LOOKUP
        assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum
    assert b"Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_peer_that_does_not_speak_the_protocol_is_named_as_such():
    """Pointed at an HTTP server, the client says so, not 'a 1213486160-byte frame'."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def http_server():
        sock, _ = listener.accept()
        with sock:
            sock.recv(4096)
            sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=http_server, daemon=True)
    thread.start()
    try:
        proc = client(f"127.0.0.1:{port}:{FP}", "ls")
    finally:
        thread.join(timeout=30)
        listener.close()
    one_line_error(proc, f"127.0.0.1:{port} does not speak the SFS-like protocol (an HTTP server?)")
    assert proc.returncode == 1


def test_get_onto_a_symlink_writes_its_target_and_keeps_the_link(start_server, export, tmp_path):
    srv = start_server(export)
    tmp_path = tmp_path / "local"          # (the export is in tmp_path too)
    tmp_path.mkdir()
    target = tmp_path / "real.txt"
    target.write_bytes(b"old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    proc = client(srv.address, "get", "hello.txt", str(link))
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == b"hello, world\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.txt", "real.txt"]


def test_get_onto_a_fifo_streams_into_it_and_keeps_it(start_server, export, tmp_path):
    """A device, FIFO or socket is written into, never replaced (`get FILE /dev/null` as root
    once replaced /dev/null with a regular file)."""
    srv = start_server(export)
    tmp_path = tmp_path / "local"
    tmp_path.mkdir()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    proc = client(srv.address, "get", "sub/inner.bin", str(fifo))
    reader.join(timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert got == [bytes(range(256)) * 10]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["fifo"]            # no .part beside it


def test_get_to_a_missing_directory_is_one_line_of_error_before_downloading(start_server, export,
                                                                           tmp_path):
    srv = start_server(export)
    tmp_path = tmp_path / "local"
    tmp_path.mkdir()
    proc = client(srv.address, "get", "hello.txt", str(tmp_path / "nodir") + "/", cwd=tmp_path)
    one_line_error(proc, "no such directory")
    assert proc.returncode == 1
    assert list(tmp_path.iterdir()) == []


def test_ls_shows_one_line_per_name_even_for_names_with_newlines(start_server, export):
    """A file named "a\\nb" was listed as two lines, "a" and "b" (files that do not exist): a
    name that is not printable, or holds a quote or backslash, is shown as a Python string
    literal; every other name as it is."""
    for name in ("a\nb", "tab\there", "it's", "back\\slash", "plain name"):
        (export / name).write_bytes(b"x")
    srv = start_server(export)
    proc = client(srv.address, "ls")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["'a\\nb'", "'back\\\\slash'", "hello.txt", "\"it's\"",
                                        "plain name", "sub/", "'tab\\there'"], proc.stdout


def test_get_into_a_missing_folder_names_the_destination_not_a_temporary_file(start_server,
                                                                              export, tmp_path):
    """`get hello.txt nodir/x` said "No such file or directory: 'nodir/.x.1234.part'": a file the
    user never named. The error names what they asked to write."""
    srv = start_server(export)
    dest = str(tmp_path / "nodir" / "x")
    proc = client(srv.address, "get", "hello.txt", dest)
    one_line_error(proc, f"error: cannot write {dest!r}: No such file or directory")
    assert ".part" not in proc.stderr


def test_ls_of_a_file_prints_that_one_entry_as_ls_does(start_server, export):
    """`ls FILE` failed with NOTDIR: the client READDIRed whatever the path named. Now a path
    that names no directory is one line, the path as typed and its type's mark, as ls prints
    it; a directory is still listed, and a missing path, or a file named with a trailing '/',
    is still one line of error."""
    os.mkfifo(export / "sub" / "fifo")
    srv = start_server(export)
    for path, lines in [("hello.txt", ["hello.txt"]), ("sub/inner.bin", ["sub/inner.bin"]),
                        ("/sub//inner.bin", ["/sub//inner.bin"]), ("sub/fifo", ["sub/fifo?"]),
                        ("sub", ["fifo?", "inner.bin"]), ("sub/", ["fifo?", "inner.bin"]),
                        ("", ["hello.txt", "sub/"])]:
        proc = client(srv.address, "ls", *([path] if path else []))
        assert proc.returncode == 0, (path, proc.stderr)
        assert proc.stdout.splitlines() == lines, path
    proc = client(srv.address, "ls", "missing")
    one_line_error(proc, "error: NOENT: No such file or directory")
    proc = client(srv.address, "ls", "hello.txt/")
    one_line_error(proc, "error: NOTDIR: 'hello.txt/' is not a directory")
