"""The benchmark driver against a server that answers wrongly or not at all: a failed
measurement, never a rate."""
from __future__ import annotations

import contextlib
import http.server
import shutil
import socket
import threading

import pytest

from apps.webserver import bench, loadgen, peers

from .conftest import start_server

needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk missing: make setup")


@contextlib.contextmanager
def _silent_server():
    """Accepts connections and reads requests, never answers: the URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    held = []

    def accept():
        with contextlib.suppress(OSError):
            while True:
                held.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        for sock in held:
            sock.close()


@needs_wrk
def test_a_wrk_run_in_which_no_request_was_answered_is_a_fault(tmp_path):
    """wrk reports no error for it (within a run shorter than its --timeout): 0 requests/s
    passed for a measurement."""
    (tmp_path / "paths.txt").write_text("/index.html\n")
    with _silent_server() as url:
        result = loadgen.run_wrk(url, tmp_path / "paths.txt", threads=1, connections=2,
                                 duration_s=1)
    assert result.requests == 0 and result.errors == 0
    assert result.fault == "no request was answered"
    with pytest.raises(loadgen.LoadError, match="0 requests, no request was answered"):
        result.require_clean("silent server")


class _Running:
    """What peers.start gives the benchmark: a server at `url`, alive."""

    def __init__(self, url: str) -> None:
        self.url = url

    def alive(self) -> bool:
        return True


def test_the_benchmark_fails_a_trial_in_which_no_request_was_answered(monkeypatch):
    """The trials checked wrk's errors only: such a trial was a row of 0 requests/s and the run
    passed."""
    monkeypatch.setattr(bench.peers, "start", lambda *args: contextlib.nullcontext(_Running("")))
    monkeypatch.setattr(bench.peers, "check_serves", lambda *args: None)
    monkeypatch.setattr(bench, "_measure", lambda *args: loadgen.WrkResult(0, 1.0, 0, {}, 0, 0))
    with pytest.raises(bench.BenchmarkErrors, match="nginx/workers/1cpu trial 0: no request was "
                                                    "answered") as failed:
        bench.run_benchmark(True, ["nginx"], [1], progress=False)
    assert [row["requests_per_s"] for row in failed.value.rows] == [0.0, 0.0]


@contextlib.contextmanager
def _serving(status: int, body: bytes):
    """An HTTP server answering every GET with `status` and `body`: its URL."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status, body, says", [
    (302, b"", "/hello.txt answered 302 Found with 0 bytes, not 200 with the file's 13"),
    (200, b"", "answered 200 OK with 0 bytes, not 200 with the file's 13"),
    (200, b"hello, World\n", "answered 200 OK with 13 bytes, not 200 with the file's 13"),
])
def test_a_server_that_does_not_serve_the_files_is_refused_before_it_is_measured(
        docroot, status, body, says):
    """wrk counts every reply under 400 as served: a server that redirected, or answered 200
    with other bytes, was measured as if it served the files."""
    with _serving(status, body) as url, pytest.raises(RuntimeError, match=says):
        peers.check_serves(url, docroot, ["/hello.txt"])


def test_our_server_serves_the_files_it_is_checked_for(docroot):
    server = start_server(docroot)
    try:
        peers.check_serves(server.url, docroot, ["/hello.txt", "/sub/data.json", "/big.bin"])
    finally:
        assert server.stop() == 0


def test_the_benchmark_checks_each_server_before_measuring_it(monkeypatch):
    def measure(*args):
        raise AssertionError("measured a server that does not serve the files")

    with _serving(302, b"") as url:
        monkeypatch.setattr(bench.peers, "start", lambda *args: contextlib.nullcontext(_Running(url)))
        monkeypatch.setattr(bench, "_measure", measure)
        with pytest.raises(RuntimeError, match="answered 302 Found"):
            bench.run_benchmark(True, ["nginx"], [1], progress=False)
