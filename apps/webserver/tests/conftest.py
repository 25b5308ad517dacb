"""Fixtures: a folder of files, and our server as a real subprocess on a free port."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
BIG_SIZE = 3 * 1024 * 1024 + 17          # over the 1 MiB cache entry bound: sent with sendfile
LARGE_CACHED_SIZE = 1000 * 1000          # just under it: cached, its bytes held in memory


@pytest.fixture(scope="session")
def docroot(tmp_path_factory) -> Path:
    top = tmp_path_factory.mktemp("web")
    root = top / "root"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text("<p>home</p>\n")
    (root / "hello.txt").write_text("hello, world\n")
    (root / "style.css").write_text("p { color: red }\n")
    (root / "sub" / "index.html").write_text("<p>sub</p>\n")
    (root / "sub" / "data.json").write_text('{"a": 1}\n')
    (root / "with space.txt").write_text("spaced\n")
    (root / "big.bin").write_bytes(bytes(range(256)) * (BIG_SIZE // 256) + b"x" * (BIG_SIZE % 256))
    (root / "large.bin").write_bytes(os.urandom(LARGE_CACHED_SIZE))
    (top / "secret.txt").write_text("outside the root\n")   # what traversal would reach
    os.symlink(top / "secret.txt", root / "escape.txt")      # a symlink that leads out
    return root


class RunningServer:
    def __init__(self, proc: subprocess.Popen, url: str):
        self.proc = proc
        self.url = url
        rest = url.split("//", 1)[1].rstrip("/")
        self.host, port = rest.rsplit(":", 1)
        self.port = int(port)

    def connect(self, timeout: float = 5.0) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=timeout)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def start_server(root: Path, *args: str) -> RunningServer:
    cmd = [sys.executable, "-m", "apps.webserver", "--root", str(root), "--port", "0", *args]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("serving "):
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return RunningServer(proc, line.split()[1])


@pytest.fixture
def server_factory():
    started: list[RunningServer] = []

    def factory(root, *args):
        server = start_server(root, *args)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture(scope="module", params=["off", "on"])
def server(request, docroot):
    """Our server with colors off and with colors on (2 workers): every test runs on both."""
    extra = ["--colors", "off"] if request.param == "off" else ["--colors", "on", "--workers", "2"]
    running = start_server(docroot, *extra)
    yield running
    assert running.stop() == 0, "the server must exit cleanly on SIGTERM"


class Replies:
    """Reads HTTP/1.1 replies one after another from a raw socket (pipelining-aware)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed by the server; unread {self.buf[:200]!r}")
        self.buf += chunk

    def next(self, *, head_only: bool = False) -> tuple[int, dict, bytes]:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if head_only or status == 304 else int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body


def read_reply(sock: socket.socket, **kw) -> tuple[int, dict, bytes]:
    return Replies(sock).next(**kw)


def exchange(server: RunningServer, raw: bytes) -> tuple[int, dict, bytes]:
    """Send raw bytes on a fresh connection and read one reply."""
    with server.connect() as sock:
        sock.sendall(raw)
        return read_reply(sock)


def closed_by_peer(sock: socket.socket) -> bool:
    """True when the server closed the connection (EOF or reset), waiting up to the timeout."""
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
