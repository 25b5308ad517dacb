"""The load generator's mistakes and failures end in a clear message, on every path into it."""
from __future__ import annotations

import json
import re
import os
import subprocess
import sys

import pytest

from .conftest import REPO

NOBODY = f"127.0.0.1:1:{'a' * 32}"          # nobody listens on port 1: reaching it is an error too

BLOCK_RULE = "must be 1..262144 (the server's READ limit, 256 KiB)"
DEPTH_RULE = "must be 1..64 (the server disconnects a client with more unanswered)"

# Each JSON line the tester sent to `loadgen --serve`, and what its reply must say instead.
BAD_LINES = [
    ('{"duration": -1}', "duration: must be positive and finite, not -1"),
    ('{"duration": NaN}', "duration: must be positive and finite, not nan"),
    ('{"duration": Infinity}', "duration: must be positive and finite, not inf"),
    ('{"warmup": -0.5}', "warmup: must be at least 0 and finite, not -0.5"),
    ('{"clients": 0}', "clients: must be 1..1024 (the server serves at most 1024), not 0"),
    ('{"block": 0}', f"block: {BLOCK_RULE}, not 0"),
    ('{"block": 1000000}', f"block: {BLOCK_RULE}, not 1000000"),
    ('{"depth": 500}', f"depth: {DEPTH_RULE}, not 500"),
    ('{"depth": 0}', f"depth: {DEPTH_RULE}, not 0"),
    # wrong types
    ('{"block": 8192.0}', "block: must be a whole number 1..262144"),
    ('{"block": "8192"}', "block: must be a whole number 1..262144"),
    ('{"clients": true}', "clients: must be a whole number 1..1024"),
    ('{"duration": "2"}', "duration: must be a number of seconds, positive and finite, not '2'"),
    ('{"decrypt": 1}', "decrypt: must be true or false, not 1"),
    ('{"suite": "rot13"}', "suite: must be one of sfs2003, modern, not 'rot13'"),
    ('{"path": 7}', "path: must be a string, not 7"),
    ('{"path": ""}', "path: must name a file in the export, not ''"),
    # unknown keys and lines that are not settings at all
    ('{"blocks": 8192}', "unknown setting 'blocks'; the settings are suite, path, block, clients, "
                         "depth, decrypt, warmup, duration"),
    ('{"address": "10.0.0.1:1:x"}', "unknown setting 'address'"),
    ('[8192]', "expected a JSON object of settings"),
    ('block=8192', "not a line of JSON"),
]


@pytest.mark.parametrize("line, says", BAD_LINES)
def test_serve_refuses_a_bad_setting_before_connecting(line, says):
    """The reply names the setting and what it may be; nothing is run (nobody listens at NOBODY,
    so a line that got as far as connecting would say 'Connection refused' instead)."""
    from apps.sfs_like.loadgen import serve_one
    reply = serve_one(NOBODY, {"duration": 0.1}, line)
    assert set(reply) == {"error"}
    assert says in reply["error"]


@pytest.mark.parametrize("flag, value, setting", [("--block", "0", "block"),
                                                  ("--depth", "500", "depth"),
                                                  ("--duration", "-1", "duration")])
def test_serve_and_the_command_line_say_the_same(flag, value, setting, capsys):
    """One set of rules: the --serve reply is the command line's usage error, word for word."""
    from apps.sfs_like.loadgen import main, serve_one
    with pytest.raises(SystemExit):
        main([NOBODY, flag, value])
    usage = capsys.readouterr().err.strip().splitlines()[-1]
    reply = serve_one(NOBODY, {}, json.dumps({setting: json.loads(value)}))
    assert usage.endswith(f"argument {flag}: " + reply["error"].removeprefix(f"{setting}: "))


def test_serve_answers_each_bad_line_and_goes_on_serving(start_server, export):
    """The tester's lines, through a real `loadgen --serve` process and a real server: each gets
    its error reply at once (none is measured, none waits 30 s), and the next good line is served."""
    (export / "big").write_bytes(os.urandom(1 << 20))
    srv = start_server(export)
    lines = [line for line, _ in BAD_LINES] + ['{"block": 65536, "clients": 2, "duration": 0.1}']
    proc = subprocess.run([sys.executable, "-m", "apps.sfs_like.loadgen", srv.address, "--serve",
                           "--no-decrypt", "--warmup", "0.02"],
                          input="\n".join(lines) + "\n", cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    replies = [json.loads(r) for r in proc.stdout.splitlines()]
    assert len(replies) == len(lines)
    for (line, says), reply in zip(BAD_LINES, replies):
        assert says in reply.get("error", ""), (line, reply)
    assert replies[-1]["block"] == 65536 and replies[-1]["server_reads"] > 0
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("decrypt", [[], ["--no-decrypt"]])
def test_a_server_killed_mid_run_is_one_line_of_error(start_server, export, decrypt):
    """Killed once the load is flowing, the server took the load generator down with a traceback
    (the control connection's STATS saw the closed connection). Now: one line, status 1, saying
    what happened and how many READs had completed."""
    import re

    from apps.sfs_like.client import Client
    (export / "big").write_bytes(os.urandom(1 << 20))
    srv = start_server(export)
    clients, depth = 2, 2
    load = subprocess.Popen([sys.executable, "-m", "apps.sfs_like.loadgen", srv.address, *decrypt,
                             "--clients", str(clients), "--depth", str(depth), "--block", "8192",
                             "--warmup", "0.05", "--duration", "60"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with Client(srv.address, "sfs2003") as probe:
            while probe.stats()["reads"] < 20:     # the load is flowing
                assert load.poll() is None, load.communicate()
        srv.proc.kill()
        srv.proc.wait(timeout=20)
        out, err = load.communicate(timeout=60)
    finally:
        if load.poll() is None:
            load.kill()
            load.communicate()
    assert load.returncode == 1
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    said = re.fullmatch(r"python -m apps\.sfs_like\.loadgen: error: load failed after (\d+) READs "
                        r"had completed: (.+)", err.strip())
    assert said, err
    # A client asks for a READ only when one of its own has been answered, so 20 served means at
    # least 20 - clients * depth answered.
    assert int(said.group(1)) >= 20 - clients * depth
    # However the server's end reached the client (EOF, reset, or a send into the closed socket:
    # that last one read '[Errno 32] Broken pipe', about one run in six), it is said to be the server.
    assert re.match(r"(server closed the connection|the server (reset|closed) the connection)",
                    said.group(2)), said.group(2)
    assert out == ""


@pytest.mark.parametrize("settings, says", [
    ({"block": 0}, "block: must be 1..262144"),
    ({"depth": 65}, "depth: must be 1..64"),
    ({"duration": float("nan")}, "duration: must be positive and finite, not nan"),
    ({"path": ""}, "path: must name a file in the export, not ''"),
])
def test_run_load_called_from_python_checks_its_settings(settings, says):
    """A benchmark script calling run_load() directly gets the command line's rules too (it ran
    whatever it was given: block 0 divided by zero after connecting). Nobody listens at NOBODY,
    so a call that got as far as connecting would say 'Connection refused' instead."""
    from apps.sfs_like.loadgen import run_load
    with pytest.raises(ValueError, match=re.escape(says)):
        run_load(NOBODY, **settings)


@pytest.mark.parametrize("path", ["", "/", "sub"])
def test_a_path_that_is_no_file_is_one_line_of_error(start_server, export, path):
    """`--path ""` named the export root: the run read the folder's size and sent READs for it.
    The root is a usage error now; a folder is refused by name before any load runs."""
    srv = start_server(export)
    proc = subprocess.run([sys.executable, "-m", "apps.sfs_like.loadgen", srv.address,
                           "--path", path, "--block", "1024", "--warmup", "0", "--duration", "0.1"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    if path.strip("/"):
        assert proc.stderr.strip().endswith("sub is not a regular file on the server"), proc.stderr
    else:
        assert f"argument --path: must name a file in the export, not {path!r}" in proc.stderr


def test_a_connection_reset_is_said_to_be_the_server(monkeypatch):
    """'Connection reset by peer' did not say which peer; the load generator has only one."""
    from apps.sfs_like.loadgen import _describe
    assert _describe(ConnectionResetError(104, "Connection reset by peer")) == "the server reset the connection"
    assert _describe(BrokenPipeError(32, "Broken pipe")).startswith("the server closed the connection")
    assert _describe(OSError()) == "OSError"
