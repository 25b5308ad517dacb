"""HTTP/1.x on one connection, without sockets: bytes in, replies out, in request order.

`HttpSession.feed(data)` runs the llhttp parser (through httptools) over whatever arrived and
appends the replies of every request completed so far to `out`, so pipelined requests are
answered in order. The session enforces the limits llhttp does not: request-line, header and
body sizes, the number of headers, and which versions and methods are served. After a request
that ends the connection (an error, `Connection: close`, HTTP/1.0 without keep-alive) the session
stops parsing and `closing` tells the connection to finish writing and close.

Being free of sockets and of the event loop makes this the part the fuzzing tests drive directly.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timezone
from email.utils import parsedate_to_datetime
from urllib.parse import quote

import httptools

from . import responses
from .cache import FileCache, NeedsSlash, Unavailable
from .paths import BadPath, origin_form, target_to_relpath

ALLOW = responses.ALLOW
_METHODS = (b"GET", b"HEAD", b"OPTIONS")
_CRLFCRLF = b"\r\n\r\n"
_HTTP_1X = (b" HTTP/1.1", b" HTTP/1.0")
# Host = uri-host [":" port] (RFC 3986 3.2.2): an IP literal in brackets, or a reg-name (which
# covers IPv4), possibly empty. No userinfo, no path, no spaces.
_HOST = re.compile(rb"(?:\[[0-9A-Za-z:.\-_~!$&'()*+,;=]+\]|[0-9A-Za-z\-._~!$&'()*+,;=%]*)"
                   rb"(?::[0-9]*)?")
# The precondition fields (RFC 9110 13.1), kept as received until the file is known.
_TAG_LISTS = (b"if-match", b"if-none-match")
_DATES = (b"if-unmodified-since", b"if-modified-since")


@dataclass(frozen=True)
class Limits:
    max_request_line: int = 8 * 1024   # longer targets get 414
    max_head: int = 16 * 1024          # request line plus headers; more gets 431
    max_headers: int = 100             # more header fields get 431
    max_body: int = 64 * 1024          # GET/HEAD need no body; a larger one gets 413


class SendFile:
    """A reply too large for the cache: the connection opens the file, and only once it is open
    sends `head` (the 200 status line and headers) and streams the body from disk. A file that
    cannot be opened then gets `error_reply(...)` instead: never a head promising a body we lack.
    """

    __slots__ = ("entry", "size", "head", "keep_alive", "version")

    def __init__(self, entry, head: bytes = b"", keep_alive: bool = True, version: str = "1.1"):
        self.entry = entry           # the cache's CachedFile: which file, checked again to open
        self.size = entry.size
        self.head = head
        self.keep_alive = keep_alive
        self.version = version

    def error_reply(self, code: int, extra: bytes = b"") -> bytes:
        return responses.error_reply(code, keep_alive=self.keep_alive, version=self.version,
                                     extra=extra)


class _Reject(Exception):
    """Raised inside a parser callback to stop parsing and reply with `code`, then close."""

    def __init__(self, code: int, extra: bytes = b""):
        super().__init__(code)
        self.code = code
        self.extra = extra              # more header lines for the reply (405's Allow)


class _Stop(Exception):
    """Raised after a request that closes the connection: later pipelined bytes are ignored."""


class HttpSession:
    def __init__(self, cache: FileCache, limits: Limits = Limits(), date=responses.DATE):
        self.cache = cache
        self.limits = limits
        self.date = date
        self.out: list = []          # bytes and SendFile, in reply order
        self.closing = False         # no more requests will be read on this connection
        self.requests = 0
        # Replies by status, for the stats file: this connection's own counts, touched only on
        # its color, so counting takes no lock; the server merges them on the accept color. The
        # 200s have an int of their own: the hot path adds one to it, not a dict entry.
        self.ok = 0
        self._other_statuses: dict[int, int] = {}
        self.in_request = False      # a request has begun and has not completed
        self.request_started = 0.0   # `now` of the feed in which the current request began
        self._parser = httptools.HttpRequestParser(self)
        self._now = 0.0
        self._body_in_feed = 0       # body bytes of the current request seen in this feed
        self._body_before_head = 0   # ... of the previous request, in the feed this one began in
        self._reset_request()

    def _reset_request(self):
        self._in_head = False
        self._began_in_this_feed = False
        self._head_bytes = 0         # raw bytes of an unfinished head (see _count_partial_head)
        self._line = b""             # the request line so far, until it ends
        self._line_ended = False
        self._header_bytes = 0       # bytes of the header fields parsed so far
        self._url_parts: list[bytes] = []
        self._url_len = 0
        self._headers = 0
        self._has_host = False
        self._conditions: dict[bytes, bytes] = {}   # precondition field name -> value
        self._expect = None
        self._body_announced = False
        self._chunked = False
        self._body_bytes = 0
        self._framing = 0            # bytes of a chunked body that are not data (see _feed_parser)
        self._method = b""
        self._version = ""
        self._keep_alive = False

    # ---- feeding ---------------------------------------------------------------------------
    def feed(self, data: bytes, now: float = 0.0) -> None:
        """Parse `data`; replies of the requests it completes are appended to `out`."""
        if self.closing or not data:
            return
        self._now = now
        while data and not self.closing:
            data = self._feed_parser(data)

    def _feed_parser(self, data: bytes) -> bytes:
        """Run the parser over `data`; returns the bytes after an Upgrade request, still to parse.

        llhttp stops at the end of a request that asks for an Upgrade (`Upgrade: h2c`, which
        `curl --http2` sends) and leaves the rest unparsed. We never switch protocols (no 101), so
        the request was answered as plain HTTP/1.1 and what follows is the next request: a fresh
        parser takes it from the offset llhttp reports.
        """
        self._body_in_feed = 0
        was_in_head = self._in_head
        in_chunked_body = self._chunked and self.in_request and not was_in_head
        requests = self.requests
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Stop):
                return b""
            if isinstance(cause, _Reject):
                self._fail(cause.code, cause.extra)
                return b""
            self._fail(500)                  # our bug, not the client's: say so, then report it
            raise cause from None
        except httptools.HttpParserUpgrade as exc:
            self._parser = httptools.HttpRequestParser(self)
            return data[exc.args[0]:]
        except httptools.HttpParserInvalidURLError:
            self._fail(400)
            return b""
        except httptools.HttpParserError as exc:
            message = str(exc).lower()        # "Invalid HTTP version", "Invalid major version"
            self._fail(505 if "invalid" in message and "version" in message else 400)
            return b""
        if in_chunked_body and self.requests == requests:
            # All of `data` lies inside one chunked body: what on_body did not get is framing
            # (chunk-size lines, their extensions, trailers), which llhttp skips without limit.
            # It counts towards the body limit (RFC 9112 7.1.1), or an endless chunk extension
            # or zeros before a chunk size would be read until the header timeout. The read in
            # which the body begins or ends is not counted: the bound is one read looser.
            self._framing += len(data) - self._body_in_feed
            if self._body_bytes + self._framing > self.limits.max_body:
                self._fail(413)
                return b""
        if self._in_head:
            head = self._unfinished_head(data, was_in_head)
            if self._began_in_this_feed and self._body_before_head:
                self._line_ended = True      # where our head begins is a guess: no early 505
            self._began_in_this_feed = False
            self._check_request_line(head)
            if not self.closing:
                self._count_partial_head(len(head))
        return b""

    def _unfinished_head(self, data: bytes, was_in_head: bool) -> bytes:
        """The part of `data` that belongs to the head still being read.

        If the head began in this chunk, it began after the previous request's head, which ends
        with a blank line, and after that request's body, whose length we saw: so after the last
        blank line that leaves room for that body. Earlier requests of a pipelined chunk, bodies
        included, are then never counted as part of this one. (A body that itself holds a blank
        line can make this undercount, by less than one chunk: the bound stays a bound.)
        """
        if was_in_head and not self._began_in_this_feed:
            return data
        skip = self._body_before_head
        end = data.rfind(_CRLFCRLF, 0, len(data) - skip)
        return data[(end + 4 if end >= 0 else 0) + skip:]

    def _check_request_line(self, head: bytes) -> None:
        """Answer 505 as soon as a request line that is not HTTP/1.x has ended.

        llhttp takes a line without a version (`GET /`) for HTTP/0.9 and then waits for header
        lines that such a client never sends, so the client would hear nothing until the header
        timeout; an HTTP/0.9 client wants its answer at the end of the line.
        """
        if self._line_ended:
            return
        line = (self._line + head).lstrip(b"\r\n")     # empty lines before a request are allowed
        if b"\n" not in line:
            # bounded, with room for a method and version around the longest allowed target
            # (a longer target is refused with 414 by on_url before the line can end)
            self._line = line[:self.limits.max_request_line + 64]
            return
        self._line_ended = True
        # llhttp has accepted the line, or feed() would have answered already; its version is
        # read from the line itself, as the parser reports the previous request's until then
        if not line.split(b"\n", 1)[0].rstrip(b"\r").endswith(_HTTP_1X):
            self._fail(505)

    def _count_partial_head(self, nbytes: int) -> None:
        """Bound the bytes of an unfinished head, which httptools buffers out of our sight."""
        self._head_bytes += nbytes
        if self._head_bytes > self.limits.max_head:
            if not self._url_parts or self._url_len > self.limits.max_request_line:
                self._fail(414)
            else:
                self._fail(431)
        elif not self._url_parts and self._head_bytes > self.limits.max_request_line:
            self._fail(414)

    def count(self, code: int) -> None:
        """One more reply with status `code` (the connection counts the ones it decides)."""
        if code == 200:
            self.ok += 1
        else:
            self._other_statuses[code] = self._other_statuses.get(code, 0) + 1

    @property
    def statuses(self) -> dict[int, int]:
        """Replies so far by status code."""
        counts = dict(self._other_statuses)
        if self.ok:
            counts[200] = self.ok
        return counts

    def _fail(self, code: int, extra: bytes = b"") -> None:
        self.count(code)
        self.out.append(responses.error_reply(code, keep_alive=False, extra=extra))
        self.closing = True
        self.in_request = False

    # ---- httptools callbacks ---------------------------------------------------------------
    def on_message_begin(self):
        # The previous request's body lies between its head and ours; a chunked one ends with a
        # blank line of its own (its last chunk), so for it the last blank line marks our start.
        self._body_before_head = 0 if self._chunked else self._body_in_feed
        self._body_in_feed = 0
        self._reset_request()
        self._in_head = True
        self._began_in_this_feed = True
        self.in_request = True
        self.request_started = self._now

    def on_url(self, piece: bytes):
        self._url_parts.append(piece)
        self._url_len += len(piece)
        if self._url_len > self.limits.max_request_line:
            raise _Reject(414)

    def on_header(self, name: bytes, value: bytes):
        self._headers += 1
        self._header_bytes += len(name) + len(value) + 4
        if self._headers > self.limits.max_headers or self._header_bytes > self.limits.max_head:
            raise _Reject(431)
        lower = name.lower()
        if lower == b"host":
            # RFC 9112 3.2: more than one Host line, or an invalid one, MUST be a 400. We serve
            # one site whatever it says, but a proxy or a log reading it after us may not.
            if self._has_host or not _HOST.fullmatch(value.strip(b" \t")):
                raise _Reject(400)
            self._has_host = True
        elif lower in _TAG_LISTS:               # several lines are one list (RFC 9110 5.3)
            known = self._conditions.get(lower)
            self._conditions[lower] = value if known is None else known + b"," + value
        elif lower in _DATES:                   # two lines: two dates, ignored as unparsable
            self._conditions[lower] = b"two dates" if lower in self._conditions else value
        elif lower == b"expect":
            self._expect = value.strip().lower()
        elif lower == b"content-length":
            if value.strip().isdigit():
                if int(value) > self.limits.max_body:
                    raise _Reject(413)
                self._body_announced = int(value) > 0
        elif lower == b"transfer-encoding":
            codings = [c.strip(b" \t").lower() for c in value.split(b",")]
            if not all(codings):
                raise _Reject(400)
            if any(c != b"chunked" for c in codings):
                raise _Reject(501)          # RFC 9112 6.1: a coding we do not understand (gzip)
            self._body_announced = True
            self._chunked = True

    def on_headers_complete(self):
        self._in_head = False
        parser = self._parser
        self._method = parser.get_method()
        self._version = parser.get_http_version()
        self._keep_alive = parser.should_keep_alive()
        if self._body_announced and parser.should_upgrade():
            # llhttp skips the body of an Upgrade request, leaving it to the new protocol; as
            # HTTP/1.1 it would be misread as the next request. Answer, then close instead.
            self._keep_alive = False
        if self._chunked and self._version == "1.0":
            # RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 means framing we cannot trust (it may
            # be a request smuggled past a 1.0 intermediary): answer this one, then close.
            self._keep_alive = False
        if self._expect is not None:
            self._answer_expect()

    def _answer_expect(self):
        """A client that sent `Expect: 100-continue` (curl does, for large bodies) holds its body
        back until we answer: say now whether to send it, instead of both sides waiting."""
        if self._expect != b"100-continue":
            raise _Reject(417)
        if self._method not in _METHODS:
            raise _Reject(405, ALLOW)       # a body we would only discard: not worth receiving
        if self._version == "1.1" and self._body_announced:
            self.out.append(responses.CONTINUE)

    def on_body(self, body: bytes):
        self._body_bytes += len(body)
        self._body_in_feed += len(body)
        if self._body_bytes > self.limits.max_body:
            raise _Reject(413)

    def on_message_complete(self):
        self.in_request = False
        self.requests += 1
        self._respond()
        if self.closing:
            raise _Stop()

    # ---- replying --------------------------------------------------------------------------
    def _respond(self) -> None:
        version = self._version
        if version != "1.1" and version != "1.0":
            self._fail(505)
            return
        keep_alive = self._keep_alive
        if version == "1.1" and not self._has_host:
            self._fail(400)
            return
        method = self._method
        head_only = method == b"HEAD"
        options = False
        if not head_only and method != b"GET":
            if method != b"OPTIONS":
                self._reply_error(405, keep_alive, version, False, ALLOW)
                return
            options = True
        target = self._url_parts[0] if len(self._url_parts) == 1 else b"".join(self._url_parts)
        if options and target == b"*":          # the server as a whole (RFC 9110 9.3.7)
            self._reply_options(keep_alive, version)
            return
        try:
            target = origin_form(target)
            relpath = target_to_relpath(target)
        except BadPath as exc:
            self._reply_error(exc.status, keep_alive, version, head_only)
            return
        try:
            entry = self.cache.lookup(relpath)
        except Unavailable as exc:
            self._reply_error(exc.status, keep_alive, version, head_only, exc.extra, exc.detail)
            return
        except NeedsSlash:
            self._reply_error(301, keep_alive, version, head_only, _location(relpath, target))
            return
        if entry is None:
            self._reply_error(404, keep_alive, version, head_only)
            return
        if options:                 # it selects no representation: preconditions do not apply
            self._reply_options(keep_alive, version)
            return
        if self._conditions:
            status = self._precondition_status(entry)
            if status == 412:
                self._reply_error(412, keep_alive, version, head_only)
                return
            if status == 304:
                self.count(304)
                self.out.append(b"".join((
                    responses.STATUS_LINES[304], self.date(), entry.not_modified_headers(),
                    responses.connection_header(keep_alive, version), b"\r\n")))
                self.closing = not keep_alive
                return
        if keep_alive and version == "1.1" and not head_only and entry.body is not None:
            self.ok += 1
            self.out.append(entry.keepalive_reply(self.date()))   # the common case, ready-made
            return
        head = b"".join((responses.STATUS_LINES[200], self.date(), entry.headers,
                         responses.connection_header(keep_alive, version), b"\r\n"))
        if head_only:
            self.ok += 1
            self.out.append(head)
        elif entry.body is not None:
            self.ok += 1
            self.out.append(head)
            self.out.append(entry.body)          # the cached object itself: queueing copies nothing
        else:                   # counted by the connection when opened: it may yet be an error
            self.out.append(SendFile(entry, head, keep_alive, version))
        self.closing = not keep_alive

    def _reply_options(self, keep_alive, version):
        self.count(200)
        self.out.append(responses.options_reply(keep_alive=keep_alive, version=version))
        self.closing = not keep_alive

    def _reply_error(self, code, keep_alive, version, head_only, extra=b"", detail=""):
        self.count(code)
        self.out.append(responses.error_reply(code, keep_alive=keep_alive, version=version,
                                              head_only=head_only, extra=extra, detail=detail))
        self.closing = not keep_alive

    def _precondition_status(self, entry) -> int:
        """RFC 9110 13.2.2, for a file we would serve (the only 2xx we send; any other reply
        ignores preconditions, 13.2.1): 412 when If-Match, or else If-Unmodified-Since, is
        false; then 304 when If-None-Match, or else If-Modified-Since, is false; else 200."""
        conditions = self._conditions
        if_match = conditions.get(b"if-match")
        # strong comparison (13.1.1): the client wants these very bytes, not an equivalent
        if if_match is not None and not _names(if_match, entry, strong=True):
            return 412
        # An unstable file was sent without Last-Modified: no date to compare with. Its tags
        # are still compared: none names it, but "*" does (13.1.2).
        if if_match is None and entry.stable:
            since = _http_date(conditions.get(b"if-unmodified-since"))
            if since is not None and entry.modified_s > since:     # Last-Modified's time
                return 412
        if b"if-none-match" in conditions:
            return 304 if _names(conditions[b"if-none-match"], entry, strong=False) else 200
        if not entry.stable:
            return 200
        since = _http_date(conditions.get(b"if-modified-since"))
        return 304 if since is not None and entry.mtime_s <= since else 200


def _names(tags: bytes, entry, strong: bool) -> bool:
    """Whether an If-Match or If-None-Match list names `entry`: "*" names any file we have.
    Our ETags are strong, so a weak tag (W/"...") is the same one for the weak comparison and
    never for the strong one (RFC 9110 8.8.3.2); an unstable file has no ETag to name."""
    listed = [t.strip() for t in tags.split(b",")]
    if b"*" in listed:
        return True
    if not entry.stable:
        return False
    return entry.etag in (listed if strong else [t.removeprefix(b"W/") for t in listed])


def _http_date(value: bytes | None) -> float | None:
    """The time an If-Modified-Since or If-Unmodified-Since value names, or None when it is
    absent or not one valid HTTP-date: such a field is ignored, as RFC 9110 13.1.3-4 say."""
    if value is None:
        return None
    try:
        since = parsedate_to_datetime(value.decode("latin-1"))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if since.tzinfo is None:                 # asctime's form names no zone; every HTTP date is GMT
        since = since.replace(tzinfo=timezone.utc)
    return since.timestamp()


def _location(relpath: str, target: bytes) -> bytes:
    """The Location header for a folder named without its slash: b'/sub' -> b'/sub/', the query
    kept. Built from the normalised path, re-quoted, not echoed from the target: a target like
    `//evil.example` must not become a Location a browser reads as another host."""
    query = target.split(b"#", 1)[0].partition(b"?")[2]
    path = ("/" + quote(relpath) + "/").encode("ascii")
    return b"Location: " + (path + b"?" + query if query else path) + b"\r\n"
