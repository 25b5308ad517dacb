"""The benchmark driver says which configuration failed and what became of its server."""
from __future__ import annotations

from pathlib import Path

import pytest

from apps.sfs_like import bench


def test_a_dead_server_is_named_with_its_status_and_log(monkeypatch):
    """One of two servers dies after starting (SIGKILL, after a last line in its log). The run
    ended in `RuntimeError: loadgen failed: ...ConnectionRefusedError(111...)`, naming neither the
    configuration nor the server's fate; now it is a few lines of error, and every process and the
    temporary folder are still cleaned up."""
    servers, loads = [], []

    class DiesAfterStarting(bench.ServerProc):
        def wait_ready(self) -> None:
            super().wait_ready()
            servers.append(self)
            if self.mode == "on":
                self._log.write(b"simulated: the last words of a dying server\n")
                self._log.flush()
                self.proc.kill()
                self.proc.wait(timeout=20)

    class Recorded(bench.LoadProc):
        def __init__(self, *args, **kw) -> None:
            super().__init__(*args, **kw)
            loads.append(self)

    monkeypatch.setattr(bench, "ServerProc", DiesAfterStarting)
    monkeypatch.setattr(bench, "LoadProc", Recorded)
    monkeypatch.setattr(bench, "cpu_counts", lambda: [1])
    monkeypatch.setattr(bench, "plan", lambda quick: {"blocks": {"sfs2003": [8]}, "trials": 1,
                                                      "warmup": 0.02, "duration": 0.05,
                                                      "ceiling_s": 0.02})
    monkeypatch.setattr(bench, "write_results", lambda *a, **kw: pytest.fail("nothing to write"))
    with pytest.raises(SystemExit) as exit_:
        bench.main([])
    said = str(exit_.value.code)
    first, *rest = said.splitlines()
    assert first.startswith("python -m apps.sfs_like.bench: error: trial 0, sfs2003 8 KiB READs, "
                            "colors on, 1 CPU: ")
    assert "Connection refused" in first
    assert first.endswith("the server was killed by SIGKILL; the end of its log:")
    assert rest == ["    simulated: the last words of a dying server"]
    # Cleaned up as before: both servers and both load generators ended, the folder removed.
    assert len(servers) == 2 and len(loads) == 2
    assert all(p.proc.poll() is not None for p in servers + loads)
    folders = {Path(srv._log.name).parent for srv in servers}
    assert len(folders) == 1 and not folders.pop().exists()
