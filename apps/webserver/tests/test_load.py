"""wrk against our server (zero errors), N-copy, the file set, and the peers' start-up."""
import http.client
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from apps.webserver import colors, loadgen, peers
from apps.webserver.bench import _add_speedups, summarize
from apps.webserver.make_files import CLASSES, PATHS_FILE, make_files

from .conftest import exchange, start_server

needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk missing: make setup")


@pytest.fixture(scope="module")
def fileset():
    """Under a world-readable folder: Apache's www-data workers must be able to read it."""
    top = Path(tempfile.mkdtemp(prefix="colorloop-test-web-"))
    top.chmod(0o755)
    root = top / "files"
    paths = make_files(root, count=120)
    yield root, paths
    shutil.rmtree(top, ignore_errors=True)


def test_file_set_matches_its_size_classes(fileset):
    root, paths = fileset
    sizes = [(root / p.lstrip("/")).stat().st_size for p in paths if p != "/index.html"]
    allowed = {s for _, sizes_ in CLASSES for s in sizes_}
    assert set(sizes) <= allowed and len(sizes) == 120
    assert (root / PATHS_FILE).read_text().split() == paths
    assert make_files(root / "again", count=120) == paths        # deterministic


def test_colors_off_puts_everything_on_color_zero():
    assert colors.OFF.accept() == 0 and {colors.OFF.connection(i) for i in range(50)} == {0}
    on = {colors.ON.connection(i) for i in range(50)}
    assert len(on) == 50 and colors.ON.accept() not in on and 0 not in on


@needs_wrk
@pytest.mark.parametrize("mode,batch", [(["--colors", "off"], False),
                                        (["--colors", "on", "--workers", "2"], True)])
def test_short_wrk_run_has_no_errors(fileset, mode, batch):
    root, _ = fileset
    server = start_server(root, *mode)
    try:
        result = loadgen.run_wrk(server.url, root / PATHS_FILE, threads=2, connections=16,
                                 duration_s=1, batch=batch)
        result.require_clean("wrk against colorloop")
        assert result.requests > 100 and result.requests_per_s > 0
        # wrk's own CPU time is counted (it ran about a second on up to 2 CPUs, never idle-free)
        assert 0 < result.cpu_s < 2 * (result.duration_s + 1)
    finally:
        assert server.stop() == 0


def test_as_batch_runs_the_command_under_sched_batch():
    """What run_wrk(batch=True) relies on: the command, and what it starts, are batch tasks."""
    from apps.webserver.pinning import as_batch
    probe = "import os; print(os.sched_getscheduler(0) == os.SCHED_BATCH)"
    out = subprocess.run(as_batch([sys.executable, "-c", probe]), capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "True"
    plain = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert plain.stdout.strip() == "False"


@needs_wrk
def test_wrk_errors_are_reported(fileset, tmp_path):
    """Requests for missing files are status errors: the benchmark must see them, not hide them."""
    root, _ = fileset
    (tmp_path / "paths.txt").write_text("/no/such/file\n")
    server = start_server(root)
    try:
        result = loadgen.run_wrk(server.url, tmp_path / "paths.txt", connections=4, duration_s=1)
        assert result.error_kinds.get("status", 0) == result.requests > 0
        with pytest.raises(loadgen.LoadError):
            result.require_clean("missing files")
    finally:
        server.stop()


def test_ncopy_serves_and_stops_its_copies(fileset):
    root, paths = fileset
    server = start_server(root, "--ncopy", "2")
    try:
        children = subprocess.run(["pgrep", "-P", str(server.proc.pid)], capture_output=True,
                                  text=True).stdout.split()
        assert len(children) == 2
        for path in paths[:20]:
            status, _, body = exchange(server, f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            assert status == 200 and body == (root / path.lstrip("/")).read_bytes()
    finally:
        assert server.stop() == 0
    alive = subprocess.run(["ps", "-o", "pid=", "-p", ",".join(children)], capture_output=True,
                           text=True).stdout.split()
    assert alive == []


@pytest.mark.parametrize("name", ["nginx", "apache", "aiohttp"])
def test_peer_starts_serves_the_same_files_and_stops(fileset, name):
    if name == "aiohttp":
        pytest.importorskip("aiohttp")
    else:
        binary = {"nginx": "nginx", "apache": "apache2"}[name]
        if shutil.which(binary) is None and not Path("/usr/sbin", binary).exists():
            pytest.skip(f"{name} is not installed (make setup)")
    root, paths = fileset
    proc = peers.start(name, "", 1, [0], str(root))
    try:
        host_port = proc.url.split("//")[1].rstrip("/")
        host, port = host_port.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        for path in paths[:10]:
            conn.request("GET", path)
            reply = conn.getresponse()
            assert reply.status == 200 and reply.read() == (root / path.lstrip("/")).read_bytes()
        conn.close()
    finally:
        proc.stop()
    assert not proc.alive()


def test_speedup_and_summary_use_the_one_cpu_median():
    rows = [{"python": "3.11", "server": "s", "mode": "m", "cpus": k, "trial": t,
             "requests_per_s": rps, "errors": 0, "client_cpus_disjoint": k == 1}
            for k, t, rps in [(1, 0, 100.0), (1, 1, 300.0), (1, 2, 200.0), (2, 0, 300.0)]]
    _add_speedups(rows)
    assert [r["speedup"] for r in rows] == [0.5, 1.5, 1.0, 1.5]
    table = {r["cpus"]: r for r in summarize(rows)}
    assert table[1]["req_per_s"] == 200.0 and table[2]["speedup"] == 1.5


def test_bench_json_mode_imports_without_optional_packages():
    """The free-threaded driver path must not import aiohttp, pandas or tqdm at import time."""
    code = ("import sys, apps.webserver.bench, apps.webserver.cli, apps.webserver.server;"
            "bad = {'aiohttp', 'pandas', 'matplotlib', 'cryptography', 'tqdm'} & set(sys.modules);"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=peers.REPO)
