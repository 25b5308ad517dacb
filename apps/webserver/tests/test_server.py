"""Our server over real sockets, with colors off and on: real clients, pipelining, bad input."""
import http.client
import json
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import (BIG_SIZE, LARGE_CACHED_SIZE, REPO, Replies, closed_by_peer, exchange,
                       read_reply)


def test_http_client_keep_alive_get_and_head(server, docroot):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    for name in ["hello.txt", "style.css", "sub/data.json", "index.html"] * 3:
        conn.request("GET", "/" + name)
        reply = conn.getresponse()
        assert reply.status == 200 and reply.read() == (docroot / name).read_bytes()
        assert reply.getheader("Content-Length") == str((docroot / name).stat().st_size)
        for header in ("Date", "Last-Modified", "ETag", "Content-Type"):
            assert reply.getheader(header)
    conn.request("HEAD", "/hello.txt")
    reply = conn.getresponse()
    assert reply.status == 200 and reply.read() == b""
    assert reply.getheader("Content-Length") == "13"
    first_socket = conn.sock
    conn.request("GET", "/hello.txt")
    conn.getresponse().read()
    assert conn.sock is first_socket          # one connection for every request: keep-alive
    conn.close()


def test_options_over_the_wire_keeps_the_connection(server):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    for target in ("*", "/hello.txt"):
        conn.request("OPTIONS", target)
        reply = conn.getresponse()
        assert (reply.status, reply.read()) == (200, b"")
        assert reply.getheader("Allow") == "GET, HEAD, OPTIONS"
    first_socket = conn.sock
    conn.request("GET", "/hello.txt")
    assert conn.getresponse().read() == b"hello, world\n" and conn.sock is first_socket
    conn.close()


def test_conditional_requests_give_304(server):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    conn.request("GET", "/style.css")
    reply = conn.getresponse()
    reply.read()
    etag, modified = reply.getheader("ETag"), reply.getheader("Last-Modified")
    conn.request("GET", "/style.css", headers={"If-None-Match": etag})
    reply = conn.getresponse()
    assert (reply.status, reply.read()) == (304, b"")
    conn.request("GET", "/style.css", headers={"If-Modified-Since": modified})
    reply = conn.getresponse()
    assert (reply.status, reply.read()) == (304, b"")
    conn.close()



def test_if_match_and_if_unmodified_since_give_412_and_keep_the_connection(server):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    conn.request("GET", "/style.css")
    reply = conn.getresponse()
    body = reply.read()
    etag, modified = reply.getheader("ETag"), reply.getheader("Last-Modified")
    first_socket = conn.sock
    old = "Thu, 01 Jan 1970 00:00:00 GMT"
    for method, path, headers, status in [
        ("GET", "/style.css", {"If-Match": etag}, 200),
        ("GET", "/style.css", {"If-Match": "W/" + etag}, 412),
        ("HEAD", "/style.css", {"If-Match": '"zz"'}, 412),
        ("GET", "/style.css", {"If-Unmodified-Since": modified}, 200),
        ("GET", "/style.css", {"If-Unmodified-Since": old}, 412),
        ("HEAD", "/style.css", {"If-Unmodified-Since": old}, 412),
        ("GET", "/style.css", {"If-Match": etag, "If-Unmodified-Since": old}, 200),
        ("GET", "/style.css", {"If-Match": '"zz"', "If-None-Match": etag}, 412),
        ("GET", "/big.bin", {"If-Match": '"zz"'}, 412),
        ("GET", "/nope", {"If-Match": '"zz"'}, 404),
    ]:
        conn.request(method, path, headers=headers)
        reply = conn.getresponse()
        data = reply.read()
        assert reply.status == status, (method, path, headers)
        if method == "HEAD":
            assert data == b""
        elif status == 412:
            assert data == b"412 Precondition Failed\n"
        elif status == 200:
            assert data == body
    conn.request("GET", "/style.css")
    assert conn.getresponse().read() == body
    assert conn.sock is first_socket          # every 412 kept the connection open
    conn.close()


def test_several_if_match_lines_are_one_list_over_the_wire(server):
    """Raw bytes, as http.client sends each header once; the 412 and the HEAD 412 before it
    must be framed exactly for the pipelined replies after them to be read."""
    etag = exchange(server, b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")[1]["etag"].encode()
    with server.connect() as sock:
        sock.sendall(b"HEAD /hello.txt HTTP/1.1\r\nHost: t\r\nIf-Match: \"zz\"\r\n\r\n"
                     b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nIf-Match: \"zz\"\r\n\r\n"
                     b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nIf-Match: \"zz\"\r\n"
                     b"If-Match: " + etag + b"\r\n\r\n")
        replies = Replies(sock)
        assert replies.next(head_only=True)[0] == 412
        assert [replies.next()[::2] for _ in range(2)] == [
            (412, b"412 Precondition Failed\n"), (200, b"hello, world\n")]


def test_large_file_arrives_whole(server, docroot):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", "/big.bin")
    reply = conn.getresponse()
    data = reply.read()
    assert reply.status == 200 and len(data) == BIG_SIZE
    assert data == (docroot / "big.bin").read_bytes()
    conn.request("GET", "/hello.txt")                # the connection is still usable after it
    assert conn.getresponse().read() == b"hello, world\n"
    conn.close()


def test_pipelined_requests_over_one_socket(server, docroot):
    names = ["hello.txt", "nope", "style.css", "sub/", "big.bin", "index.html"] * 4
    with server.connect(timeout=10) as sock:
        sock.sendall(b"".join(f"GET /{n} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for n in names))
        replies = Replies(sock)
        for name in names:
            status, _, body = replies.next()
            if name == "nope":
                assert status == 404
            else:
                path = docroot / name / "index.html" if name.endswith("/") else docroot / name
                assert (status, body) == (200, path.read_bytes())


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.parametrize("version", ["1.1", "1.0"])
def test_a_pipelining_client_that_does_not_read_cannot_grow_our_memory(server, docroot, version):
    # One read of 64 KiB holds about 1500 requests for a 1 MB cached file: answered with copies
    # of the file, they would take 1.5 GB; answered with references to its one cached body,
    # almost nothing. Another client is served meanwhile, and the stalled one gets right bytes.
    keep = "Connection: keep-alive\r\n" if version == "1.0" else ""
    one = f"GET /large.bin HTTP/{version}\r\nHost: t\r\n{keep}\r\n".encode()
    assert exchange(server, one.replace(b"keep-alive", b"close"))[0] == 200    # cached now
    before = _rss_bytes(server.proc.pid)
    with server.connect(timeout=10) as sock:
        sock.sendall(one * (64 * 1024 // len(one)))
        status, _, body = Replies(sock).next()       # the server has read the burst and answers
        grown = _rss_bytes(server.proc.pid) - before
        assert exchange(server, b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")[2] == b"hello, world\n"
    assert grown < 200 * 1024 * 1024, f"the server grew by {grown >> 20} MiB"
    assert status == 200 and body == (docroot / "large.bin").read_bytes()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed (make setup)")
def test_curl_reuses_its_connection(server, docroot):
    url = server.url
    out = subprocess.run(
        ["curl", "-sS", "-v", "-w", "%{http_code} %{size_download}\\n",
         "-o", "/dev/null", url + "hello.txt", "-o", "/dev/null", url + "sub/data.json",
         "-o", "/dev/null", url + "missing"],
        capture_output=True, text=True, timeout=20)
    assert out.stdout.split("\n")[:3] == ["200 13", "200 9", "404 14"]
    assert "Re-using existing connection" in out.stderr or "Reusing existing" in out.stderr
    out = subprocess.run(["curl", "-sS", "--http1.0", "-i", url + "hello.txt"],
                         capture_output=True, text=True, timeout=20)
    assert out.stdout.startswith("HTTP/1.1 200") and "Connection: close" in out.stdout
    assert out.stdout.endswith("hello, world\n")


BAD_INPUTS = [
    (b"GET /../secret.txt HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    (b"GET /%2e%2e/secret.txt HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    (b"GET /..%2fsecret.txt HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    (b"GET /sub/..%2F..%2Fsecret.txt HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    (b"GET /hello.txt%00.html HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    (b"GET /hello\x00.txt HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    (b"GET /escape.txt HTTP/1.1\r\nHost: t\r\n\r\n", 404),
    (b"GET /" + b"x" * 70000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-Pad: " + b"p" * 100 + b"\r\n" * 1 + b"X-A: b\r\n" * 500
     + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: t\r\nX-Huge: " + b"h" * 100000 + b"\r\n\r\n", 431),
    (b"BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    (b"PUT /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi", 405),
    (b"GET / HTTP/3.0\r\nHost: t\r\n\r\n", 505),
    (b"GET / HTTP/1.7\r\nHost: t\r\n\r\n", 505),
    (b"\x00\xff garbage \r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n", 413),
    # an endless chunk extension: 413 once it passes the body limit, not 408 at the header timeout
    (b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1;" + b"e" * 1000000, 413),
]


@pytest.mark.parametrize("raw, code", BAD_INPUTS, ids=lambda v: str(v)[:30] if isinstance(v, bytes) else str(v))
def test_bad_input_gets_its_error_and_the_server_keeps_serving(server, raw, code):
    with server.connect() as sock:
        try:
            sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass                 # the server may answer and close before we finish sending
        status, headers, body = read_reply(sock)
        assert status == code and body.startswith(str(code).encode())
        assert b"outside the root" not in body
    assert exchange(server, b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")[2] == b"hello, world\n"


def test_an_http_0_9_request_is_refused_at_once_not_at_the_header_timeout(server):
    with server.connect(timeout=3) as sock:        # the fixture's header timeout is longer
        sock.sendall(b"GET /hello.txt\r\n")
        status, headers, body = read_reply(sock)
    assert status == 505 and headers["connection"] == "close"


@pytest.mark.parametrize("colors", ["off", "on"])
@pytest.mark.parametrize("size", [1000, BIG_SIZE])          # cached body / sent from disk
def test_a_symlink_re_pointed_out_of_the_root_is_not_followed(server_factory, tmp_path, colors, size):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    (root / "inside.bin").write_bytes(b"I" * size)
    outside.write_bytes(b"S" * size)
    os.symlink(root / "inside.bin", root / "link.bin")
    server = server_factory(root, "--colors", colors, "--workers", "1")
    request = b"GET /link.bin HTTP/1.1\r\nHost: t\r\n\r\n"
    assert exchange(server, request)[2] == b"I" * size
    # the same size and mtime, the same name: only where it leads has changed
    st = (root / "inside.bin").stat()
    os.utime(outside, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.symlink(outside, root / "link.tmp")
    os.replace(root / "link.tmp", root / "link.bin")
    status, _, body = exchange(server, request)
    assert status == 404 and b"S" not in body


@pytest.mark.parametrize("colors", ["off", "on"])
def test_a_pipelined_large_file_rewritten_in_place_before_its_turn_is_a_503(
        server_factory, tmp_path, colors):
    """Two pipelined GETs of a file sent from disk, rewritten in place (same inode) while the
    first is being sent: the second's head, built when it was parsed, describes the old file.
    It used to be sent anyway, over the new bytes (a 200 with the old ETag); now it is a 503."""
    size = 16 << 20                        # more than loopback's socket buffers hold
    root = tmp_path / "root"
    root.mkdir()
    (root / "big.bin").write_bytes(b"o" * size)
    server = server_factory(root, "--colors", colors, "--workers", "2")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)    # a slow reader
    sock.settimeout(10)
    sock.connect((server.host, server.port))
    with sock:
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n" * 2)
        replies = Replies(sock)
        replies._fill()                    # the first reply has begun
        with open(root / "big.bin", "r+b") as f:    # over it, never shorter: the first reply
            f.write(b"n" * (size + 1000))            # is not cut while it is rewritten
        status, headers, body = replies.next()
        assert status == 200 and len(body) == size      # its bytes may mix the two versions
        status, headers, body = replies.next()
        assert status == 503 and headers["retry-after"] == "1" and body.startswith(b"503")
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")    # the retry
        status, headers, body = replies.next()
        assert status == 200 and body == b"n" * (size + 1000)


def test_a_symlink_out_of_the_root_tells_nothing_of_what_exists_there(server_factory, tmp_path):
    """Through a link to a folder outside the root, a folder there and a name that is not there
    both get 404: no 301 (or 403) marks which paths exist outside."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    (outside / "folder").mkdir(parents=True)
    (outside / "folder" / "index.html").write_text("outside\n")
    os.symlink(outside, root / "out")
    server = server_factory(root)
    for target in ("/out/folder", "/out/folder/", "/out/no-such-name", "/out"):
        raw = f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
        status, headers, body = exchange(server, raw)
        assert status == 404 and "location" not in headers and b"outside" not in body, target


def test_traversal_never_reaches_the_outside_file(server):
    for target in ["/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt", "/escape.txt",
                   "//../secret.txt", "/sub/../../secret.txt", "/.%2e/secret.txt"]:
        raw = f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
        status, _, body = exchange(server, raw)
        assert status in (400, 404) and body != b"outside the root\n", target


def test_slow_header_client_times_out_while_others_are_served(server_factory, docroot):
    server = server_factory(docroot, "--header-timeout", "0.6")
    with server.connect(timeout=5) as slow:
        slow.sendall(b"GET /hel")
        # While the slow client dribbles, another client is served at once.
        assert exchange(server, b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")[0] == 200
        sent = 0
        rest = b"lo.txt HTTP/1.1\r\nHost: t\r\n"         # 27 bytes: 5.4 s at this pace
        try:
            for byte in rest:                                # one byte per 0.2 s
                slow.sendall(bytes([byte]))
                sent += 1
                readable = socket.socket.recv(slow, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT) \
                    if _readable(slow, 0.2) else b""
                if readable:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, headers, _ = read_reply(slow)
        assert status == 408 and headers["connection"] == "close"
        assert sent < len(rest)     # cut off (after about 0.6 s) before the header was complete
        assert closed_by_peer(slow)
    assert exchange(server, b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")[0] == 200


HUGE = 12 * 1024 * 1024      # more than the server's send buffer and ours together: back-pressure


@pytest.fixture(scope="module")
def huge_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("huge")
    (root / "huge.bin").write_bytes(os.urandom(HUGE))
    (root / "hello.txt").write_text("hello, world\n")
    return root


def _small_window_connection(server) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)     # before connect: the window
    sock.settimeout(10)
    sock.connect((server.host, server.port))
    return sock


def _read_exactly(sock: socket.socket, n: int, pace_s: float = 0.0) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(min(64 * 1024, n - len(data)))
        if not chunk:
            break
        data += chunk
        if pace_s:
            time.sleep(pace_s)           # the slow reader is the behaviour under test
    return bytes(data)


@pytest.mark.parametrize("colors", ["off", "on"])
def test_a_pipelined_request_held_back_by_our_replies_is_not_timed_out(server_factory, huge_root, colors):
    # The second request arrives whole at once, but we stop reading while the first reply fills
    # the socket; the client reads only after the header timeout. The time we held it back is
    # not the client's: both replies come, no 408.
    server = server_factory(huge_root, "--colors", colors, "--header-timeout", "1")
    with _small_window_connection(server) as sock:
        sock.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /hello.txt HTTP/1.1\r\nHo")
        time.sleep(0.3)
        sock.sendall(b"st: t\r\n\r\n")
        time.sleep(2.5)                  # longer than the header timeout, reading nothing
        replies = Replies(sock)
        first, second = replies.next(), replies.next()
    assert first[0] == 200 and first[2] == (huge_root / "huge.bin").read_bytes()
    assert (second[0], second[2]) == (200, b"hello, world\n")


@pytest.mark.parametrize("colors", ["off", "on"])
def test_a_slow_but_steady_reader_is_not_closed_as_idle(server_factory, huge_root, colors):
    # At about 600 KB/s the socket buffers take longer than the idle timeout to make room, so
    # the server sees no writable socket for a while; the kernel's send queue shrinking all
    # along says the client reads. The whole file arrives.
    server = server_factory(huge_root, "--colors", colors, "--idle-timeout", "1",
                            "--header-timeout", "1")
    with _small_window_connection(server) as sock:
        sock.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        slow = _read_exactly(sock, 2 * 1024 * 1024, pace_s=0.1)      # about 3.5 s
        rest = _read_exactly(sock, HUGE - len(slow))
    assert head.startswith(b"HTTP/1.1 200") and slow + rest == (huge_root / "huge.bin").read_bytes()


def test_silent_connection_is_closed_after_the_header_timeout(server_factory, docroot):
    server = server_factory(docroot, "--header-timeout", "0.4")
    with server.connect(timeout=5) as silent:
        assert exchange(server, b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")[0] == 200
        assert closed_by_peer(silent)        # within the 5 s socket timeout, or recv raises


@pytest.mark.parametrize("colors", ["off", "on"])
def test_empty_lines_do_not_keep_an_idle_connection_open(server_factory, docroot, colors):
    """RFC 9112 2.2 lets a client send empty lines before a request, and the server skips them;
    they are no request, so they must not reset the idle timer: a client dripping CRLFs held its
    connection (and a descriptor) forever."""
    server = server_factory(docroot, "--colors", colors, "--idle-timeout", "1")
    with server.connect(timeout=10) as sock:
        sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        assert Replies(sock).next()[0] == 200
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 6 and not closed:      # the client's pace, 0.2 s
            try:
                sock.sendall(b"\r\n")
            except OSError:                 # reset: the server closed it
                closed = True
                break
            closed = _readable(sock, 0.2) and closed_by_peer(sock)
        assert closed, "the server kept a connection that sent only empty lines open"
        assert exchange(server, b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")[0] == 200


def _readable(sock, timeout):
    import select
    return bool(select.select([sock], [], [], timeout)[0])


def test_connections_over_the_limit_are_refused_cleanly(server_factory, docroot):
    server = server_factory(docroot, "--max-connections", "3")
    held = [server.connect() for _ in range(3)]
    try:
        for sock in held:        # each is accepted and counted: it answers
            sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_reply(sock)[0] == 200
        with server.connect() as extra:
            extra.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            status, headers, body = read_reply(extra)
            assert status == 503 and headers["connection"] == "close"
            assert headers["retry-after"] == "1" and closed_by_peer(extra)
        for sock in held:        # the held connections were not disturbed
            sock.sendall(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_reply(sock)[0] == 200
    finally:
        held.pop().close()
    # A slot is free again once the server has seen that close.
    statuses = []
    for _ in range(200):
        statuses.append(exchange(server, b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n"
                                         b"Connection: close\r\n\r\n")[0])
        if statuses[-1] == 200:
            break
    assert statuses[-1] == 200 and set(statuses) <= {200, 503}
    for sock in held:
        sock.close()


# colors on: color 0 (only the SIGTERM handler), the accept color, and one per connection
@pytest.mark.parametrize("mode, expect_colors", [("off", 1), ("on", 1 + 1 + 6)])
def test_colors_on_gives_each_connection_its_color(server_factory, docroot, tmp_path, mode,
                                                   expect_colors):
    """colors.py is the whole switch: off runs everything on color 0, on uses one per connection."""
    stats = tmp_path / "stats.json"
    server = server_factory(docroot, "--colors", mode, "--workers", "2", "--stats-file", str(stats))
    socks = [server.connect() for _ in range(6)]
    for sock in socks:
        sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_reply(sock)[2] == b"hello, world\n"
    assert server.stop() == 0
    for sock in socks:
        sock.close()
    counts = json.loads(stats.read_text())
    assert counts["colors_used"] == expect_colors and counts["requests"] == 6
    if mode == "off":
        assert counts["workers_used"] == 1


def test_sigterm_stops_the_server_cleanly(server_factory, docroot):
    server = server_factory(docroot)
    with server.connect() as sock:
        sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_reply(sock)[0] == 200
        assert server.stop() == 0


def _read_to_eof(sock) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=400))
def test_fuzzed_garbage_never_hurts_the_server(server, raw):
    with server.connect() as sock:
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = _read_to_eof(sock)
    assert reply == b"" or reply.startswith(b"HTTP/1.1 ")
    assert exchange(server, b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")[0] == 200


PATH_PIECES = st.lists(st.sampled_from(
    ["hello.txt", "..", ".", "%2e%2e", "%2f", "%2F", "sub", "secret.txt", "%00", "%20", "escape.txt",
     "%5c", "", "index.html", "%", "%e9", "sub?x=.."]), max_size=8)


@settings(max_examples=60, deadline=None)
@given(PATH_PIECES)
def test_fuzzed_paths_over_the_wire(server, pieces):
    target = "/" + "/".join(pieces)
    with server.connect() as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        status, _, body = read_reply(sock)
    assert status in (200, 301, 400, 404)
    assert b"outside the root" not in body


def _fds(pid: int) -> list[int]:
    return [int(name) for name in os.listdir(f"/proc/{pid}/fd")]


def test_out_of_descriptors_is_a_503_never_a_404_or_an_empty_200(server_factory, docroot):
    """With every descriptor in use (a low `ulimit -n`, many idle clients), a file not cached
    yet, or sent from disk, cannot be opened: the client hears 503, not 'not found' and not a
    200 head followed by no body. Once descriptors are free, the same files are served."""
    server = server_factory(docroot)
    pid = server.proc.pid
    get = lambda name: f"GET /{name} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
    with server.connect() as sock:
        replies = Replies(sock)
        sock.sendall(get("hello.txt") + get("big.bin"))      # cached: its bytes / its head
        assert [replies.next()[0] for _ in range(2)] == [200, 200]
        fds = _fds(pid)
        limit = max(fds) + 4
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
        idle = []
        try:
            for _ in range(limit - len(fds)):        # each free descriptor taken by a client
                idle.append(server.connect())
                idle[-1].sendall(get("nope"))        # answered: accepted, its descriptor held
                assert read_reply(idle[-1])[0] == 404
            assert len(_fds(pid)) == limit
            for name in ("style.css", "big.bin", "hello.txt"):
                sock.sendall(get(name))
            statuses = [replies.next() for _ in range(3)]
            assert [s for s, _, _ in statuses] == [503, 503, 200]
            assert statuses[0][1]["retry-after"] == "1" and statuses[2][2] == b"hello, world\n"
        finally:
            for s in idle:
                s.close()
        for _ in range(200):          # the server notices the closes on its own time
            sock.sendall(get("big.bin"))
            status, _, body = replies.next()
            if status == 200:
                break
        assert status == 200 and body == (docroot / "big.bin").read_bytes()
        sock.sendall(get("style.css"))
        assert replies.next()[2] == (docroot / "style.css").read_bytes()


def test_an_upgrade_h2c_request_and_the_one_pipelined_after_it_are_both_answered(server):
    with server.connect() as sock:
        sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\n"
                     b"Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n"
                     b"\r\nGET /style.css HTTP/1.1\r\nHost: t\r\n\r\n")
        replies = Replies(sock)
        first, second = replies.next(), replies.next()
        assert (first[0], first[2]) == (200, b"hello, world\n") and "connection" not in first[1]
        assert (second[0], second[2]) == (200, b"p { color: red }\n")
        sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")     # still open
        assert replies.next()[2] == b"hello, world\n"


def test_root_slash_serves_absolute_paths_and_still_refuses_traversal(server_factory, tmp_path):
    """`--root /`: a containment check of "//" once refused every file with 404."""
    (tmp_path / "small.txt").write_bytes(b"small\n")
    (tmp_path / "big.bin").write_bytes(b"B" * BIG_SIZE)           # opened again to send
    server = server_factory("/")
    for name, data in (("small.txt", b"small\n"), ("big.bin", b"B" * BIG_SIZE)):
        raw = f"GET {tmp_path / name} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
        assert exchange(server, raw)[::2] == (200, data)
    for target in (f"{tmp_path}/../{tmp_path.name}/small.txt", "/%2e%2e/etc/hostname"):
        raw = f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
        assert exchange(server, raw)[0] == 400


@pytest.mark.parametrize("colors", ["off", "on"])
def test_ctrl_c_stops_the_server_as_cleanly_as_sigterm(docroot, tmp_path, colors):
    stats = tmp_path / "stats.json"
    returncode, stderr = serve_then_signal(docroot, signal.SIGINT, "--colors", colors,
                                           "--stats-file", str(stats))
    assert returncode == 0 and "Traceback" not in stderr, stderr
    assert json.loads(stats.read_text())["requests"] == 0


def serve_then_signal(docroot, signum, *args, meanwhile=lambda: None) -> tuple[int, str]:
    """Start the server (CLI), wait until it serves, run `meanwhile()`, send `signum`: its exit
    status and stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "apps.webserver", "--root", str(docroot),
                             "--port", "0", *args],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("serving ")
        meanwhile()
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, stderr


def test_a_stats_folder_removed_while_serving_costs_one_line_not_the_counters(docroot, tmp_path):
    folder = tmp_path / "stats"
    folder.mkdir()
    returncode, stderr = serve_then_signal(docroot, signal.SIGTERM, "--stats-file",
                                           str(folder / "s.json"), meanwhile=folder.rmdir)
    assert returncode == 0 and "Traceback" not in stderr, stderr
    assert "cannot write --stats-file" in stderr and '"requests": 0' in stderr


def test_root_slash_serves_a_proc_file_with_its_bytes_not_empty(server_factory):
    """`--root /`: /proc/self/status has a stat size of 0; its reply carries what a read gives
    (the server's own status: its pid), with a Content-Length that matches."""
    server = server_factory("/")
    status, headers, body = exchange(server, b"GET /proc/self/status HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == 200 and body.startswith(b"Name:")
    assert f"\nPid:\t{server.proc.pid}\n".encode() in body
    assert int(headers["content-length"]) == len(body) and "etag" not in headers


@pytest.mark.parametrize("mode", ["off", "on"])
def test_the_stats_file_counts_replies_by_status(server_factory, docroot, tmp_path, mode):
    """Counted per connection without a lock, merged when it closes or when the server stops."""
    stats = tmp_path / "stats.json"
    server = server_factory(docroot, "--colors", mode, "--workers", "2", "--max-connections", "3",
                            "--stats-file", str(stats))
    socks = [server.connect() for _ in range(3)]
    for sock, raw, statuses in (
            (socks[0], b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /big.bin HTTP/1.1\r\n"
                       b"Host: t\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n\r\n", [200, 200, 404]),
            (socks[1], b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /%zz HTTP/1.1\r\n"
                       b"Host: t\r\n\r\n", [200, 400]),
            (socks[2], b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n", [200])):
        sock.sendall(raw)
        replies = Replies(sock)
        assert [replies.next()[0] for _ in statuses] == statuses
    with server.connect() as sock:                   # over --max-connections
        assert read_reply(sock)[0] == 503
    socks.pop(0).close()                             # its counts are merged when it closes
    time.sleep(0.2)
    assert server.stop() == 0                        # the others' when the server stops
    for sock in socks:
        sock.close()
    counts = json.loads(stats.read_text())
    assert counts["statuses"] == {"200": 4, "400": 1, "404": 1, "503": 1}


def _slow_reader(server) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.settimeout(10)
    sock.connect((server.host, server.port))
    return sock


@pytest.mark.parametrize("colors", ["off", "on"])
def test_hostile_ends_of_a_large_reply(server_factory, tmp_path, colors):
    """A client that half-closes after its requests still gets every reply; a file truncated
    while it is sent ends that connection after what it still has (never a keep-alive
    connection owing the rest); a client that resets mid-sendfile costs nothing else: no bug
    counted, and the next client gets the whole file."""
    size = 16 << 20                        # more than loopback's socket buffers hold
    root = tmp_path / "root"
    root.mkdir()
    (root / "big.bin").write_bytes(b"o" * size)
    (root / "small.txt").write_bytes(b"small\n")
    stats = tmp_path / "stats.json"
    server = server_factory(root, "--colors", colors, "--workers", "2", "--stats-file", str(stats))
    get = b"GET /%s HTTP/1.1\r\nHost: t\r\n\r\n"
    with server.connect(timeout=10) as sock:                       # half-close
        sock.sendall(get % b"small.txt" + get % b"big.bin" + get % b"small.txt")
        sock.shutdown(socket.SHUT_WR)
        replies = Replies(sock)
        assert [replies.next()[2] for _ in range(3)] == [b"small\n", b"o" * size, b"small\n"]
        assert closed_by_peer(sock)
    with _slow_reader(server) as sock:                              # truncated while sent
        sock.sendall(get % b"big.bin" + get % b"small.txt")
        replies = Replies(sock)
        replies._fill()
        os.truncate(root / "big.bin", size // 4)
        with pytest.raises(ConnectionError):
            replies.next()                 # fewer bytes than its Content-Length, then EOF
        assert len(replies.buf) < size
    (root / "big.bin").write_bytes(b"o" * size)
    for _ in range(3):                                              # reset mid-sendfile
        with _slow_reader(server) as sock:
            sock.sendall(get % b"big.bin")
            sock.recv(4096)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        assert exchange(server, get % b"big.bin")[2] == b"o" * size
    assert server.stop() == 0
    assert json.loads(stats.read_text())["bugs"] == 0
