"""Fixtures that start real server processes on loopback and wait for their printed address."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


class ServerProcess:
    """`python -m apps.sfs_like.server` in a subprocess; ready once it has printed its address."""

    def __init__(self, export: Path, key: Path, log: Path, *, colors: str = "off", workers: int = 1,
                 extra: tuple = ()) -> None:
        self.export, self.key, self.log_path = export, key, log
        cmd = [sys.executable, "-m", "apps.sfs_like.server", "--export", str(export), "--key", str(key),
               "--colors", colors, "--workers", str(workers), *extra]
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=self._log,
                                     env={**os.environ, "PYTHONPATH": str(REPO)})
        line = self.proc.stdout.readline().decode().strip()   # blocks until the server is listening
        if not line:
            self.stop()
            raise RuntimeError(f"server did not start; log:\n{log.read_text()}")
        self.address = line

    def log(self) -> str:
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, kill: bool = False) -> None:
        if self.proc.poll() is None:
            (self.proc.kill if kill else self.proc.terminate)()
            self.proc.wait(timeout=20)
        self.proc.stdout.close()
        self._log.close()


@pytest.fixture
def start_server(tmp_path_factory):
    started = []

    def start(export: Path, *, key: Path | None = None, **kw) -> ServerProcess:
        d = tmp_path_factory.mktemp("srv")
        srv = ServerProcess(export, key or d / "key", d / "server.log", **kw)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture
def export(tmp_path) -> Path:
    d = tmp_path / "export"
    d.mkdir()
    (d / "hello.txt").write_bytes(b"hello, world\n")
    (d / "sub").mkdir()
    (d / "sub" / "inner.bin").write_bytes(bytes(range(256)) * 10)
    return d
