"""Wrong arguments and a port in use end with one clear line and exit status 2 or 1, no traceback."""
import os
import socket
import subprocess
import sys

import pytest

from apps.webserver.cli import parse_args, parse_cpus


@pytest.mark.parametrize("argv, says", [
    (["--root", "/nonexistent-colorloop"], "--root '/nonexistent-colorloop' is not a folder"),
    (["--root", __file__], "is not a folder"),
    (["--root", ".", "--port", "99999"], "--port must be 0..65535"),
    (["--root", ".", "--cpus", "a,b"], "expected CPU numbers and ranges"),
    (["--root", ".", "--cpus", "3-1"], "expected CPU numbers and ranges"),
    (["--root", ".", "--cpus", "4096"], "this process may only use CPUs"),
    (["--root", ".", "--ncopy", "0"], "--ncopy must be at least 1"),
    (["--root", ".", "--workers", "0"], "--workers must be at least 1"),
    (["--root", ".", "--max-connections", "0"], "--max-connections must be at least 1"),
    (["--root", ".", "--header-timeout", "0"], "--header-timeout must be positive"),
    (["--root", ".", "--cache-mb", "-1"], "--cache-mb must be positive"),
    (["--root", ".", "--ncopy", "2", "--colors", "on"], "do not combine it with --colors on"),
    (["--root", ".", "--stats-file", "/nonexistent-colorloop/s.json"],
     "--stats-file '/nonexistent-colorloop/s.json': folder '/nonexistent-colorloop' does not exist"),
    (["--root", ".", "--ncopy", "2", "--stats-file", "/nonexistent-colorloop/s.json"],
     "folder '/nonexistent-colorloop' does not exist"),
    (["--root", ".", "--stats-file", "."], "--stats-file '.': is a folder"),
    (["--root", ".", "--stats-file", "/tmp/colorloop-no-such-folder/"], "is a folder"),
    (["--root", ".", "--stats-file", "/proc/colorloop-stats.json"], "cannot create it in '/proc'"),
    (["--root", ".", "--stats-file", "/dev/full"], "is not a regular file"),
])
def test_bad_arguments_are_refused_with_a_message(argv, says, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    assert says in capsys.readouterr().err


def test_cpu_lists_and_ranges():
    assert parse_cpus("0,2-3") == [0, 2, 3]
    assert parse_cpus("") == []


@pytest.mark.parametrize("extra", [[], ["--ncopy", "2"]])
def test_a_port_in_use_is_one_line_of_error(tmp_path, extra):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        proc = subprocess.run([sys.executable, "-m", "apps.webserver", "--root", str(tmp_path),
                               "--port", str(port), *extra],
                              capture_output=True, text=True, timeout=30)
    finally:
        taken.close()
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"python -m apps.webserver: error: cannot listen on "
                                   f"127.0.0.1:{port}: Address already in use")


def test_ncopy_does_not_join_a_reuse_port_server_already_on_the_port(tmp_path):
    """Its copies bind with SO_REUSEPORT, as a server of ours started with --reuse-port does:
    without a check they would share that server's port, each serving its own root."""
    taken = socket.socket()
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        proc = subprocess.Popen([sys.executable, "-m", "apps.webserver", "--root", str(tmp_path),
                                 "--port", str(port), "--ncopy", "2"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started = proc.stdout.readline()          # "serving ..." if it joined, "" if it exited
        if started:
            proc.terminate()
        returncode, stderr = proc.wait(timeout=30), proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    finally:
        taken.close()
    assert started == "" and returncode == 1
    assert stderr.strip() == (f"python -m apps.webserver: error: cannot listen on "
                              f"127.0.0.1:{port}: Address already in use")


def _run_module(module: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("make_path, says", [
    (lambda tmp: tmp / "a-file", "'{}' exists and is not a folder"),
    (lambda tmp: tmp / "a-file" / "below", "cannot write the files in '{}': Not a directory"),
])
def test_make_files_on_a_file_is_one_line_of_error(tmp_path, make_path, says):
    (tmp_path / "a-file").write_text("x")
    target = make_path(tmp_path)
    proc = _run_module("apps.webserver.make_files", str(target))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().endswith("error: " + says.format(target))
    assert (tmp_path / "a-file").read_text() == "x"


@pytest.mark.parametrize("argv, says", [
    (["--servers", "bogus"], "--servers: unknown bogus; choose from colorloop,nginx,apache,aiohttp"),
    (["--servers", "colorloop,ngnix"], "--servers: unknown ngnix;"),
    (["--cpus", str(len(os.sched_getaffinity(0)) + 7)], "this process may use 1 to"),
    (["--cpus", "0"], "this process may use 1 to"),
    (["--cpus", "one"], "--cpus 'one': expected CPU counts"),
])
def test_bench_refuses_unknown_servers_and_cpu_counts_before_starting(argv, says):
    proc = _run_module("apps.webserver.bench", *argv)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert says in proc.stderr and proc.stdout == ""


def test_a_stats_file_that_cannot_be_written_is_refused_and_a_new_one_leaves_nothing(tmp_path, capsys):
    read_only = tmp_path / "old.json"
    read_only.write_text("{}")
    read_only.chmod(0o444)
    if os.access(read_only, os.W_OK):          # root may write any file: make it immutable instead
        pytest.skip("cannot make a file unwritable for this user")
    with pytest.raises(SystemExit):
        parse_args(["--root", ".", "--stats-file", str(read_only)])
    assert "cannot write it" in capsys.readouterr().err


def test_a_good_new_stats_file_is_probed_without_being_left_behind(tmp_path):
    target = tmp_path / "new.json"
    parse_args(["--root", ".", "--stats-file", str(target)])
    assert not target.exists()
