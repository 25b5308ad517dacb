"""Wrong arguments and a port in use end with one clear line and exit status 2 or 1, no traceback."""
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
