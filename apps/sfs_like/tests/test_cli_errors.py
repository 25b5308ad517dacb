"""What a user gets wrong when starting the server ends in one clear line, never a traceback."""
import os
import signal
import socket
import subprocess
import sys

import pytest

from apps.sfs_like.server import parse_args
from apps.sfs_like.tests.conftest import REPO


@pytest.fixture
def folders(tmp_path):
    (tmp_path / "export").mkdir()
    return tmp_path


@pytest.mark.parametrize("extra, says", [
    (["--export", "/nonexistent-colorloop"], "--export '/nonexistent-colorloop' is not a directory"),
    (["--key", "/nonexistent-colorloop/k"], "the folder '/nonexistent-colorloop' does not exist"),
    (["--port", "70000"], "--port must be 0..65535"),
    (["--workers", "0"], "--workers must be at least 1"),
    (["--max-connections", "0"], "--max-connections must be at least 1"),
    (["--frame-timeout", "0"], "--frame-timeout and --switch-interval must be positive"),
    (["--cpus", "x"], "expected comma-separated CPU numbers"),
    (["--cpus", "4096"], "this process may only use CPUs"),
    (["--log-level", "loud"], "use DEBUG, INFO, WARNING or ERROR"),
])
def test_bad_arguments_are_refused_with_a_message(folders, extra, says, capsys):
    base = ["--export", str(folders / "export"), "--key", str(folders / "key")]
    with pytest.raises(SystemExit) as exit_:
        parse_args(base + extra)
    assert exit_.value.code == 2
    assert says in capsys.readouterr().err


def _server(folders, *extra):
    return subprocess.run([sys.executable, "-m", "apps.sfs_like.server", "--export",
                           str(folders / "export"), *extra], cwd=REPO, capture_output=True,
                          text=True, timeout=60)


def test_a_malformed_key_file_is_one_line_of_error(folders):
    (folders / "bad.key").write_bytes(b"0123456789")
    proc = _server(folders, "--key", str(folders / "bad.key"))
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"python -m apps.sfs_like.server: error: cannot start: "
                                   f"{folders / 'bad.key'}: expected a 32-byte raw X25519 private "
                                   f"key, found 10 bytes")


def test_a_port_in_use_is_one_line_of_error(folders):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        proc = _server(folders, "--key", str(folders / "key"), "--port", str(port))
    finally:
        taken.close()
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith(f"python -m apps.sfs_like.server: error: cannot listen on "
                                        f"127.0.0.1:{port}: Address already in use")


@pytest.mark.parametrize("export, key", [(".", "server.key"), (".", "sub/server.key"),
                                         ("sub", "sub/server.key")])
def test_a_key_inside_the_export_is_refused(folders, export, key, monkeypatch, capsys):
    """Any client could `cat` or `put` over a key inside the export: the server does not start."""
    (folders / "sub").mkdir()
    monkeypatch.chdir(folders)
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--export", export, "--key", key])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"--key {key!r} is inside --export {export!r}" in err
    assert not (folders / key).exists()                    # nothing was created either


def test_a_key_beside_the_export_is_accepted(folders):
    args = parse_args(["--export", str(folders / "export"), "--key", str(folders / "export.key")])
    assert args.key == str(folders / "export.key")


@pytest.mark.parametrize("extra, says", [
    (["--cpus", "4096"], "--cpus 4096: this process may only use CPUs"),
    (["--cpus", "a,b"], "expected comma-separated CPU numbers"),
    (["--clients", "0"], "--clients: must be 1..1024"),
    (["--block", "0"], "--block: must be 1..262144 (the server's READ limit, 256 KiB), not 0"),
    (["--block", "-1"], "--block: must be 1..262144"),
    (["--block", "1000000"], "--block: must be 1..262144 (the server's READ limit, 256 KiB)"),
    (["--depth", "0"], "--depth: must be 1..64"),
    (["--depth", "65"], "--depth: must be 1..64 (the server disconnects a client with more"),
    (["--duration", "-1"], "--duration: must be positive and finite, not -1"),
    (["--duration", "0"], "--duration: must be positive"),
    (["--warmup", "-1"], "--warmup: must be at least 0"),
    (["--duration", "nan"], "--duration: must be positive and finite"),
])
def test_bad_loadgen_arguments_are_refused_with_a_message(extra, says, capsys):
    """Refused before any connection is made (the address below has nobody listening)."""
    from apps.sfs_like import loadgen
    with pytest.raises(SystemExit) as exit_:
        loadgen.main([f"127.0.0.1:1:{'a' * 32}", *extra])
    assert exit_.value.code == 2
    assert says in capsys.readouterr().err


def test_a_key_that_is_not_a_regular_file_is_one_line_of_error(folders):
    """/dev/zero was read whole (a MemoryError traceback); now only a regular file is read."""
    for key in ("/dev/zero", str(folders)):
        proc = _server(folders, "--key", key)
        assert proc.returncode == 1
        assert proc.stderr.strip() == (f"python -m apps.sfs_like.server: error: cannot start: "
                                       f"{key}: not a regular file; the key file holds a 32-byte "
                                       f"raw X25519 private key")


def test_a_huge_key_file_is_refused_without_reading_it(folders):
    with open(folders / "huge.key", "wb") as f:
        f.truncate(1 << 40)                               # sparse: a terabyte, read it and die
    proc = _server(folders, "--key", str(folders / "huge.key"))
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith(f"expected a 32-byte raw X25519 private key, found "
                                        f"{1 << 40} bytes")


def test_a_key_file_others_may_read_gets_a_warning(folders, start_server):
    key = folders / "open.key"
    first = start_server(folders / "export", key=key)     # made here, 0600: no warning
    first.stop()
    assert "has mode" not in first.log()
    os.chmod(key, 0o644)
    srv = start_server(folders / "export", key=key)
    assert f"key file {key} has mode 0644: group or others may read or replace" in srv.log()
    assert srv.alive()


def test_a_key_file_with_other_hard_links_is_refused(folders, start_server):
    """A hard link to the key may sit inside the export, where clients could read and replace it."""
    key = folders / "hard.key"
    start_server(folders / "export", key=key).stop()          # made here, one link
    os.link(key, folders / "export" / "k")
    proc = _server(folders, "--key", str(key))
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("python -m apps.sfs_like.server: error: cannot start: ")
    assert "other hard link" in proc.stderr and "make a private copy" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_server_stops_cleanly_on_sigterm_as_on_ctrl_c(folders, signum):
    proc = subprocess.Popen([sys.executable, "-m", "apps.sfs_like.server", "--export",
                             str(folders / "export"), "--key", str(folders / "key")],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline()                       # listening, handlers installed
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err


@pytest.mark.parametrize("export", ["/", "//", "/.."])
def test_exporting_the_root_is_refused_with_the_reason(folders, export, capsys):
    """`--export /` was refused as "--key ... is inside --export '/'", which suggested moving the
    key; no key can be outside '/', and every client could read and replace every file the
    server may. The message says that, whatever --key is."""
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--export", export, "--key", str(folders / "key")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"--export {export!r} is the whole file system" in err, err
    assert "export a folder" in err
    assert not (folders / "key").exists()
