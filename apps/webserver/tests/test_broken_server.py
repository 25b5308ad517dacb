"""The benchmark driver against a server that answers wrongly or not at all: a failed
measurement, never a rate."""
from __future__ import annotations

import contextlib
import shutil
import socket
import threading

import pytest

from apps.webserver import bench, loadgen

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


def test_the_benchmark_fails_a_trial_in_which_no_request_was_answered(monkeypatch):
    """The trials checked wrk's errors only: such a trial was a row of 0 requests/s and the run
    passed."""
    class Running:
        url = "http://127.0.0.1:1"

        def alive(self):
            return True

    monkeypatch.setattr(bench.peers, "start", lambda *args: contextlib.nullcontext(Running()))
    monkeypatch.setattr(bench, "_measure", lambda *args: loadgen.WrkResult(0, 1.0, 0, {}, 0, 0))
    with pytest.raises(bench.BenchmarkErrors, match="nginx/workers/1cpu trial 0: no request was "
                                                    "answered") as failed:
        bench.run_benchmark(True, ["nginx"], [1], progress=False)
    assert [row["requests_per_s"] for row in failed.value.rows] == [0.0, 0.0]
