"""The load generator, the color-diff count and the free-threaded guard do what they claim."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

from apps.sfs_like import colors, rpc
from apps.sfs_like.client import Client
from apps.sfs_like.count_color_diff import count
from apps.sfs_like.loadgen import run_load

from .conftest import REPO


def test_loadgen_reads_and_reports_server_counters(start_server, export):
    (export / "big").write_bytes(os.urandom(1 << 20))
    srv = start_server(export, colors="on", workers=2)
    for decrypt in (True, False):
        r = run_load(srv.address, path="big", block=64 * 1024, clients=3, depth=2, decrypt=decrypt,
                     warmup=0.05, duration=0.3)
        assert r["mb_per_s"] > 0 and r["server_reads"] > 0
        assert r["crypto_s_per_read"] > 0
        assert r["server_colors"] == "on" and r["server_workers"] == 2
        assert r["server_loop_errors"] == 0
    assert "Traceback" not in srv.log()


def test_loadgen_at_the_largest_depth_it_accepts_is_served(start_server, export):
    """`--depth` goes up to rpc.MAX_OUTSTANDING, documented as the server's pipelining limit, and
    the server must serve that many: at 64 the server cut every client off (it counted the
    hello as a request), so only --depth 63 worked."""
    (export / "big").write_bytes(os.urandom(1 << 20))
    srv = start_server(export, colors="on", workers=2)
    for decrypt in (True, False):
        r = run_load(srv.address, path="big", block=8 * 1024, clients=1, depth=rpc.MAX_OUTSTANDING,
                     decrypt=decrypt, warmup=0.05, duration=0.2)
        assert r["server_reads"] > 0
    assert "requests outstanding" not in srv.log()


def test_loadgen_cli_runs_as_a_batch_task_when_asked(start_server, export):
    """The benchmark's load generator must not preempt the server it shares CPUs with: --batch
    puts the whole process (and the skimming thread it starts) under SCHED_BATCH."""
    (export / "big").write_bytes(os.urandom(1 << 20))
    srv = start_server(export, colors="on", workers=2)
    for flag, sched in ((["--batch"], "batch"), ([], "normal")):
        out = subprocess.run([sys.executable, "-m", "apps.sfs_like.loadgen", srv.address, "--no-decrypt",
                              "--clients", "2", "--block", "65536", "--warmup", "0.05",
                              "--duration", "0.2", *flag],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        r = json.loads(out.stdout.splitlines()[0])
        assert r["client_sched"] == sched and r["server_reads"] > 0


def test_skimmer_reports_an_error_reply_at_once(start_server, export):
    """A skimming client waits for whole READ replies (SO_RCVLOWAT); an error reply is shorter.
    It must still be seen and reported as such, well before the 30 s no-reply limit."""
    (export / "big").write_bytes(os.urandom(1 << 20))
    srv = start_server(export, colors="on", workers=2)
    outcome = {}

    def load():
        try:
            run_load(srv.address, path="big", block=64 * 1024, clients=2, depth=2, decrypt=False,
                     warmup=0.05, duration=20.0)
        except RuntimeError as exc:
            outcome["error"] = exc
        outcome["at"] = time.monotonic()

    worker = threading.Thread(target=load)
    worker.start()
    with Client(srv.address, "sfs2003") as probe:
        while probe.stats()["reads"] < 20:          # the skimmer is reading: now take its file away
            assert worker.is_alive()
        (export / "big").unlink()
    removed = time.monotonic()
    worker.join(timeout=60)
    assert "READ reply frame of" in str(outcome["error"])
    assert outcome["at"] - removed < 10


def test_color_policies_differ_only_when_on():
    off, on = colors.policy("off"), colors.policy("on")
    assert {off.crypto(i) for i in range(10)} | {off.file()} == {colors.NET}
    crypto = [on.crypto(i) for i in range(10)]
    assert len(set(crypto)) == 10 and colors.NET not in crypto and on.file() not in crypto


def test_color_diff_count_covers_every_color_call_site():
    result = count()
    assert 0 < result["changed_lines"] < result["total_lines"]
    server = result["modules"]["server.py"]
    text = (REPO / "apps" / "sfs_like" / "server.py").read_text()
    assert server["changed"] >= text.count("color=")          # every color= call site is counted
    assert result["modules"]["colors.py"]["changed"] == result["modules"]["colors.py"]["total"]
    assert result["modules"]["filelayer.py"]["changed"] == 0
    assert result["policy_switch_lines"] >= 2


def test_free_threaded_interpreter_without_cryptography_gets_a_clear_message():
    probe = ("import sys, sysconfig; real = sysconfig.get_config_var; "
             "sysconfig.get_config_var = lambda n: 1 if n == 'Py_GIL_DISABLED' else real(n); "
             "sys.modules['cryptography'] = None; import apps.sfs_like.server")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True)
    assert out.returncode != 0
    assert "free-threaded" in out.stderr and "3.11" in out.stderr
