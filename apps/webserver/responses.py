"""Bytes of HTTP/1.1 replies: status lines, the Date header, error replies, content types.

Everything that can be computed once is computed once: the Date header changes once a second and
is rebuilt only then; error replies are short fixed bodies so every client gets a reason it can
read, and a server that replies with an error never has to think about it twice.
"""
from __future__ import annotations

import mimetypes
import time
from email.utils import formatdate

SERVER_NAME = b"colorloop"

REASONS = {
    200: "OK", 301: "Moved Permanently", 304: "Not Modified", 400: "Bad Request",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    412: "Precondition Failed", 413: "Content Too Large", 414: "URI Too Long",
    417: "Expectation Failed", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
STATUS_LINES = {code: f"HTTP/1.1 {code} {reason}\r\n".encode() for code, reason in REASONS.items()}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# The methods we serve: what a 405 and an OPTIONS reply both announce (RFC 9110 10.2.1, 9.3.7).
ALLOW = b"Allow: GET, HEAD, OPTIONS\r\n"


def http_date(seconds: float) -> str:
    return formatdate(seconds, usegmt=True)


class DateHeader:
    """b'Date: <now>\\r\\n', rebuilt when the second changes (a tuple swap: safe across threads)."""

    def __init__(self, clock=time.time):
        self._clock = clock
        self._cached = (-1, b"")

    def __call__(self) -> bytes:
        second = int(self._clock())
        cached = self._cached
        if cached[0] == second:
            return cached[1]
        line = b"Date: " + http_date(second).encode() + b"\r\n"
        self._cached = (second, line)
        return line


DATE = DateHeader()


def connection_header(keep_alive: bool, version: str) -> bytes:
    """HTTP/1.1 keeps connections open unless told; HTTP/1.0 must be told that we kept it open."""
    if not keep_alive:
        return b"Connection: close\r\n"
    return b"" if version == "1.1" else b"Connection: keep-alive\r\n"


def error_reply(code: int, *, keep_alive: bool = False, version: str = "1.1",
                head_only: bool = False, extra: bytes = b"", detail: str = "") -> bytes:
    """A complete reply with a one-line text body saying what went wrong (and `detail`, why)."""
    body = f"{code} {REASONS[code]}{': ' + detail if detail else ''}\n".encode()
    head = b"".join((
        STATUS_LINES[code], b"Server: ", SERVER_NAME, b"\r\n", DATE(),
        b"Content-Type: text/plain; charset=utf-8\r\n",
        b"Content-Length: ", str(len(body)).encode(), b"\r\n",
        extra, connection_header(keep_alive, version), b"\r\n"))
    return head if head_only else head + body


def options_reply(*, keep_alive: bool, version: str) -> bytes:
    """The 200 to `OPTIONS *` or to OPTIONS on a file we serve: the methods, and no body."""
    return b"".join((STATUS_LINES[200], b"Server: ", SERVER_NAME, b"\r\n", DATE(), ALLOW,
                     b"Content-Length: 0\r\n", connection_header(keep_alive, version), b"\r\n"))


# The system's table (/etc/mime.types) is read now, at import, before the server accepts anyone.
# Left to mimetypes, it is read at the first guess: on a worker thread, while serving, where a
# shortage of descriptors made that request a 500, and two workers could set it up at once.
mimetypes.init()

_TEXT_TYPES = ("text/", "application/javascript", "application/json", "image/svg+xml")


def content_type(path: str) -> str:
    guessed, _ = mimetypes.guess_type(path, strict=False)
    if guessed is None:
        return "application/octet-stream"
    if guessed.startswith(_TEXT_TYPES):
        return guessed + "; charset=utf-8"
    return guessed
