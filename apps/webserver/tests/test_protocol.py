"""HttpSession without sockets: replies, their order, errors, limits and conditional requests."""
import errno
import os
import time
from datetime import timedelta
from email.utils import formatdate, parsedate_to_datetime
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.webserver import cache as cache_module
from apps.webserver import responses
from apps.webserver.cache import FileCache
from apps.webserver.protocol import HttpSession, Limits, SendFile


@pytest.fixture
def cache(docroot):
    return FileCache(str(docroot))


def parse(replies):
    """Split the session's output into (status, headers, body) triples."""
    data = b"".join(r for r in replies if not isinstance(r, SendFile))
    out = []
    while data:
        head, data = data.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        headers = dict((k.lower(), v.strip()) for k, _, v in (l.partition(":") for l in lines[1:]))
        status = int(lines[0].split()[1])
        n = 0 if status == 304 or headers.get("x-head") else int(headers.get("content-length", 0))
        out.append((status, headers, data[:n]))
        data = data[n:]
    return out


def run(cache, raw: bytes, **kw):
    session = HttpSession(cache, **kw)
    session.feed(raw)
    return session, parse(session.out)


def test_get_has_every_header_and_the_bytes(cache, docroot):
    _, [(status, h, body)] = run(cache, b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200 and body == (docroot / "hello.txt").read_bytes()
    assert h["content-length"] == str(len(body))
    assert h["content-type"] == "text/plain; charset=utf-8"
    assert h["etag"].startswith('"') and h["last-modified"].endswith("GMT")
    assert h["date"].endswith("GMT") and "connection" not in h


def test_pipelined_requests_answered_in_order(cache):
    names = ["hello.txt", "style.css", "nope", "sub/data.json", "index.html"] * 5
    raw = b"".join(f"GET /{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for n in names)
    session, replies = run(cache, raw)
    assert [r[0] for r in replies] == [404 if n == "nope" else 200 for n in names]
    assert replies[3][2] == b'{"a": 1}\n' and not session.closing


def test_head_sends_headers_only(cache):
    session = HttpSession(cache)
    session.feed(b"HEAD /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    [raw] = session.out
    assert raw.endswith(b"\r\n\r\n") and b"Content-Length: 13\r\n" in raw


def test_directory_serves_its_index(cache):
    _, [(s1, _, b1), (s2, _, b2)] = run(cache, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
                                               b"GET /sub/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (s1, b1, s2, b2) == (200, b"<p>home</p>\n", 200, b"<p>sub</p>\n")


@pytest.mark.parametrize("target, location", [
    (b"/sub", "/sub/"), (b"/sub?a=1&b=%2F", "/sub/?a=1&b=%2F"), (b"//sub", "/sub/"),
    (b"/./sub", "/sub/"), (b"http://x/sub?q", "/sub/?q"), (b"/spaced%20dir", "/spaced%20dir/"),
])
def test_a_folder_without_its_slash_is_redirected(tmp_path, target, location):
    """Served directly, the relative links of sub/index.html would resolve against the parent."""
    for folder in ("sub", "spaced dir"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "index.html").write_text("<p>in</p>\n")
    session, replies = run(FileCache(str(tmp_path)),
                           b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n"
                           b"HEAD " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [(r[0], r[1]["location"]) for r in replies[:1]] == [(301, location)]
    assert session.out[1].startswith(b"HTTP/1.1 301 ") and session.out[1].endswith(b"\r\n\r\n")
    assert not session.closing


def test_http10_closes_unless_keep_alive(cache):
    session, [(s, h, _)] = run(cache, b"GET /hello.txt HTTP/1.0\r\n\r\n")
    assert s == 200 and h["connection"] == "close" and session.closing
    session, [(s, h, _)] = run(cache, b"GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert h["connection"] == "keep-alive" and not session.closing


def test_connection_close_stops_parsing(cache):
    session, replies = run(cache, b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                                  b"GET /style.css HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(replies) == 1 and replies[0][1]["connection"] == "close" and session.closing


def test_if_none_match_and_if_modified_since_give_304(cache):
    _, [(_, h, _)] = run(cache, b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    etag, modified = h["etag"], h["last-modified"]
    raw = (f"GET /hello.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"zz\", {etag}\r\n\r\n"
           f"GET /hello.txt HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: {modified}\r\n\r\n"
           f"GET /hello.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"other\"\r\n"
           f"If-Modified-Since: {modified}\r\n\r\n"
           f"GET /hello.txt HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: "
           f"{formatdate(0, usegmt=True)}\r\n\r\n"
           f"GET /hello.txt HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: garbage\r\n\r\n").encode()
    _, replies = run(cache, raw)
    assert [r[0] for r in replies] == [304, 304, 200, 200, 200]
    assert replies[0][1]["etag"] == etag and replies[0][2] == b""


def test_if_modified_since_accepts_all_three_http_date_forms(cache):
    """RFC 9110 5.6.7: IMF-fixdate, the obsolete RFC 850 form and asctime's, all in GMT."""
    _, [(_, h, _)] = run(cache, b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    when = parsedate_to_datetime(h["last-modified"])
    forms = [when.strftime("%a, %d %b %Y %H:%M:%S GMT"), when.strftime("%A, %d-%b-%y %H:%M:%S GMT"),
             when.strftime("%a %b ") + f"{when.day:2d}" + when.strftime(" %H:%M:%S %Y")]
    earlier = when - timedelta(days=1)
    forms.append(earlier.strftime("%a %b ") + f"{earlier.day:2d}" + earlier.strftime(" %H:%M:%S %Y"))
    raw = "".join(f"GET /hello.txt HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: {f}\r\n\r\n" for f in forms)
    _, replies = run(cache, raw.encode())
    assert [r[0] for r in replies] == [304, 304, 304, 200]


@pytest.mark.parametrize("date", [
    "Mon, 01 Jan 99999999999999999999 00:00:00 GMT", "Mon, 99999999999999999999 Jan 2020 00:00:00 GMT",
    "Mon, 01 Jan 2020 99999999999999999999:00:00 GMT", "Mon, 01 Jan 2020 00:00:00 +99999999999999999999",
])
def test_an_if_modified_since_date_out_of_range_is_ignored(cache, date):
    _, replies = run(cache, f"GET /hello.txt HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: {date}\r\n\r\n"
                            "GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert [(r[0], r[2]) for r in replies] == [(200, b"hello, world\n")] * 2


@pytest.mark.parametrize("raw, code", [
    (b"POST /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 405),
    (b"DELETE /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"GET /../secret.txt HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /..%2fsecret.txt HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    (b"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400),          # not a percent-escape
    (b"GET /hello.txt%2 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /escape.txt HTTP/1.1\r\nHost: x\r\n\r\n", 404),
])
def test_keep_alive_errors(cache, raw, code):
    session, replies = run(cache, raw + b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [r[0] for r in replies] == [code, 200]
    if code == 405:
        assert replies[0][1]["allow"] == "GET, HEAD, OPTIONS"


@pytest.mark.parametrize("raw, code", [
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 505),
    (b"GET /\r\n\r\n", 505),
    (b"GET / HTTP/a.1\r\nHost: x\r\n\r\n", 505),
    (b"GET / HTTP/1.1\nHost: x\n\n", 400),               # bare LF ends no line here
    (b"GET / HTTP/1.1x\r\nHost: x\r\n\r\n", 400),
    (b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),         # RFC 9112 3.2
    (b"GET / HTTP/1.0\r\nHost: x\r\nhost: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),                   # RFC 9112 3.2: invalid
    (b"GET / HTTP/1.1\r\nHost: user@x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x/y\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x:http\r\n\r\n", 400),
    (b"GET / HTTP/1.0\r\nHost: x\"y\r\n\r\n", 400),
    (b"GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /" + b"a" * 20000, 414),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: y\r\n" * 101 + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 17000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 17000, 431),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n", 413),
    (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),   # RFC 9112 6.1
    (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n", 400),
])
def test_fatal_errors_reply_then_close(cache, raw, code):
    session, replies = run(cache, raw + b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [r[0] for r in replies] == [code]
    assert replies[0][1]["connection"] == "close" and session.closing
    assert replies[0][2].startswith(str(code).encode())


@pytest.mark.parametrize("chunks", [
    [b"GET /\r\n"],                                   # HTTP/0.9: no version, no headers to come
    [b"GET /hello.txt", b"\r\n"],
    [b"\r\n", b"GET / HTTP/0.9\r\n"],
    [b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /\r\n"],      # after a pipelined request
])
def test_a_request_line_without_http_1x_is_answered_when_it_ends(cache, chunks):
    session = HttpSession(cache)
    for chunk in chunks:
        session.feed(chunk)
    replies = parse(session.out)
    assert replies[-1][0] == 505 and session.closing and not session.in_request
    assert [r[0] for r in replies[:-1]] == [200] * (len(replies) - 1)


def _with_body(body: bytes) -> bytes:
    return b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body


@pytest.mark.parametrize("chunks", [
    [_with_body(b"a" * 20000) + b"GET /hel", b"lo.txt HTTP/1.1\r\nHost: x\r\n\r\n"],
    [_with_body(b"a" * 20000) + b"G", b"ET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n"],
    [_with_body(b"\r\n\r\nA\n") + b"GET /hello.txt HTTP/1.1\r\nHo", b"st: x\r\n\r\n"],
    [_with_body(b"b" * 9000 + b"\r\n\r\n") + b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nX-A: b",
     b"\r\n\r\n"],
    [_with_body(b"a" * 3000)[:-1000], b"a" * 1000 + b"GET /hello.txt HTTP/1.1\r\nHo", b"st: x\r\n\r\n"],
    [b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"      # chunk
     + b"1\r\nX\r\n" * 4000 + b"0\r\n\r\nGET /hel", b"lo.txt HTTP/1.1\r\nHost: x\r\n\r\n"],   # framing
])
def test_a_body_before_a_pipelined_request_is_not_counted_as_its_head(cache, chunks):
    session = HttpSession(cache)
    for chunk in chunks:
        session.feed(chunk)
    assert [(r[0], r[2]) for r in parse(session.out)] == [(200, b"hello, world\n")] * 2
    assert not session.closing


def test_a_long_request_line_split_before_its_end_is_not_taken_for_http_0_9(cache):
    target = b"/" + b"a" * (Limits().max_request_line - 2)          # within the 414 limit
    session = HttpSession(cache)
    for chunk in (b"GET " + target + b" HTTP/1.1", b"\r\nHo", b"st: x\r\n\r\n"):
        session.feed(chunk)
    assert [r[0] for r in parse(session.out)] == [404] and not session.closing


@pytest.mark.parametrize("chunks", [
    [b"GET /hello.txt"], [b"\r\n\r\nGET /"], [b"GET / HTTP/1.1\r\n"], [b"GET / HTT", b"P/1.0\r\n"],
    [b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n"],
])
def test_an_unfinished_or_http_1x_request_line_waits_for_the_rest(cache, chunks):
    session = HttpSession(cache)
    for chunk in chunks:
        session.feed(chunk)
    assert all(r[0] == 200 for r in parse(session.out))
    assert session.in_request and not session.closing


def test_expect_100_continue_is_answered_before_the_body(cache):
    """curl sends `Expect: 100-continue` and holds a large body back until it hears from us."""
    session = HttpSession(cache)
    session.feed(b"POST /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 50000\r\n"
                 b"Expect: 100-continue\r\n\r\n")
    replies = parse(session.out)            # answered now, without the 50000 bytes
    assert [r[0] for r in replies] == [405] and replies[0][1]["allow"] == "GET, HEAD, OPTIONS"
    assert session.closing
    session = HttpSession(cache)
    session.feed(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                 b"Expect: 100-Continue\r\n\r\n")
    assert session.out == [responses.CONTINUE]
    session.feed(b"abc")
    assert [r[0] for r in parse(session.out)] == [100, 200] and not session.closing
    _, replies = run(cache, b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n")
    assert [r[0] for r in replies] == [200]       # nothing held back: no interim reply
    session, replies = run(cache, b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n\r\n"
                                  b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [r[0] for r in replies] == [417] and session.closing


def test_chunked_body_over_the_limit_is_413(cache):
    session = HttpSession(cache, Limits(max_body=100))
    session.feed(b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    session.feed(b"c8\r\n" + b"z" * 200 + b"\r\n0\r\n\r\n")
    assert [r[0] for r in parse(session.out)] == [413]


def test_chunked_framing_counts_towards_the_body_limit(cache):
    """llhttp skips chunk extensions, and zeros before a chunk size, without any limit: without
    one of ours (RFC 9112 7.1.1) a client kept one request going, read and parsed, until the
    header timeout (5 GB in 5 s over loopback). Ordinary chunks are not hurt."""
    head = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    for start, junk in ((b"1;ext=", b"e"), (b"1;x=\"", b"q"), (b"", b"0")):
        session = HttpSession(cache, Limits(max_body=1000))
        session.feed(head + start)
        for _ in range(5):
            session.feed(junk * 300)
        assert [r[0] for r in parse(session.out)] == [413] and session.closing, start
    raw = (head + b"".join(b"10;n=v\r\n" + b"d" * 16 + b"\r\n" for _ in range(20)) + b"0\r\n\r\n"
           + b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    session = HttpSession(cache, Limits(max_body=1000))
    for i in range(0, len(raw), 7):
        session.feed(raw[i:i + 7])
    assert [r[0] for r in parse(session.out)] == [200, 200] and not session.closing


def test_head_limit_counts_only_the_unfinished_request(cache):
    """A pipelined chunk of many small requests must not be mistaken for one huge head."""
    one = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n"
    session = HttpSession(cache, Limits(max_head=200, max_request_line=100))
    session.feed(one * 500 + b"GET /hel")
    session.feed(b"lo.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [r[0] for r in parse(session.out)] == [200] * 501


def test_large_file_is_streamed_not_cached(cache, docroot):
    session = HttpSession(cache)
    session.feed(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    [body] = session.out                   # its head waits in it until the file is open
    assert isinstance(body, SendFile) and body.size == (docroot / "big.bin").stat().st_size
    assert f"Content-Length: {body.size}\r\n".encode() in body.head


def test_cache_refreshes_on_change_and_stays_bounded(tmp_path):
    for i in range(10):
        (tmp_path / f"f{i}").write_bytes(bytes([i]) * 1000)
    cache = FileCache(str(tmp_path), max_bytes=3500)
    first = cache.lookup("f0")
    assert cache.lookup("f0") is first                   # a hit: the same entry
    (tmp_path / "f0").write_bytes(b"new and longer")     # size changes
    assert cache.lookup("f0").body == b"new and longer"
    os.utime(tmp_path / "f0", ns=(0, 10**9))             # only the mtime changes
    assert cache.lookup("f0").mtime_ns == 10**9
    for i in range(10):
        cache.lookup(f"f{i}")
    assert cache.cached_bytes <= 3500 and len(cache) == 3
    assert cache.lookup("missing") is None
    with pytest.raises(cache_module.Unavailable) as refused:    # a root without index.html
        cache.lookup("")
    assert refused.value.status == 403


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=30))
def test_replies_do_not_depend_on_how_bytes_are_split(docroot, cuts):
    """The same pipelined stream split at arbitrary points yields the same replies."""
    cache = FileCache(str(docroot))
    raw = (b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\nHEAD /style.css HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /sub/data.json?x=1 HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"q\"\r\n\r\n"
           b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /index.html HTTP/1.0\r\n\r\n")
    # One frozen clock for both sessions: a Date header that ticks between them is not a difference.
    frozen = responses.DateHeader(clock=lambda: 1_700_000_000)
    with mock.patch.object(responses, "DATE", frozen):
        whole = HttpSession(cache, date=frozen)
        whole.feed(raw)
        split = HttpSession(cache, date=frozen)
        pos = 0
        for cut in cuts:
            split.feed(raw[pos:pos + cut])
            pos += cut
        split.feed(raw[pos:])
    assert b"".join(split.out) == b"".join(whole.out)
    assert b"".join(whole.out).count(b"Date: Tue, 14 Nov 2023 22:13:20 GMT\r\n") == 5
    assert split.closing and whole.closing


REQUEST_PATHS = st.lists(
    st.sampled_from(["hello.txt", "..", ".", "%2e%2e", "%2f", "sub", "secret.txt", "%00", "a b",
                     "%20", "index.html", "escape.txt", "%5c", "//", "?", "#", "%", "\u00e9"]),
    max_size=8).map(lambda parts: "/" + "/".join(parts))


@settings(max_examples=300, deadline=None)
@given(REQUEST_PATHS)
def test_fuzzed_request_paths_never_serve_outside_the_root(docroot, path):
    cache = FileCache(str(docroot))
    session = HttpSession(cache)
    session.feed(b"GET " + path.encode("utf-8") + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    [(status, headers, body)] = parse(session.out)
    assert status in (200, 301, 400, 404)
    assert b"outside the root" not in body
    if status == 301:
        assert headers["location"].startswith("/") and not headers["location"].startswith("//")


@pytest.mark.parametrize("error, code", [
    (errno.EMFILE, 503), (errno.ENFILE, 503), (errno.ENOMEM, 503), (errno.EACCES, 403),
    (errno.EIO, 500), (errno.ENOENT, 404),
])
def test_a_file_that_cannot_be_opened_gets_the_status_its_error_means(docroot, error, code):
    """Only a missing file is a 404: out of descriptors is a 503 to retry, not 'not found'."""
    cache = FileCache(str(docroot))
    session = HttpSession(cache)
    with mock.patch.object(cache_module.os, "open", side_effect=OSError(error, "simulated")):
        session.feed(b"GET /style.css HTTP/1.1\r\nHost: x\r\n\r\n")
    session.feed(b"GET /style.css HTTP/1.1\r\nHost: x\r\n\r\n")      # the error has passed
    replies = parse(session.out)
    assert [r[0] for r in replies] == [code, 200] and not session.closing
    assert replies[0][2].startswith(str(code).encode())
    assert replies[1][2] == (docroot / "style.css").read_bytes()
    assert ("retry-after" in replies[0][1]) == (code == 503)


UPGRADE_H2C = (b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n"
               b"Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n")


@pytest.mark.parametrize("split", [False, True])
def test_an_upgrade_request_is_answered_as_http_1_1_and_parsing_goes_on(cache, split):
    """We never switch protocols (no 101): `Upgrade: h2c` (curl --http2) is ignored, and the
    request pipelined after it is answered too, in order, on the same connection."""
    session = HttpSession(cache)
    second = b"GET /style.css HTTP/1.1\r\nHost: x\r\n\r\n"
    for chunk in ([UPGRADE_H2C, second] if split else [UPGRADE_H2C + second]):
        session.feed(chunk)
    replies = parse(session.out)
    assert [(r[0], r[2]) for r in replies] == [(200, b"hello, world\n"),
                                                (200, b"p { color: red }\n")]
    assert "connection" not in replies[0][1] and not session.closing


def test_many_upgrade_requests_in_one_chunk(cache):
    session = HttpSession(cache)
    session.feed(UPGRADE_H2C * 2000)
    assert [r[0] for r in parse(session.out)] == [200] * 2000 and not session.closing


def test_an_upgrade_request_with_a_body_is_answered_then_the_connection_closed(cache):
    """llhttp leaves such a body unparsed (for the new protocol); read as HTTP/1.1 it would be
    taken for the next request, so the reply says `Connection: close` and parsing stops."""
    session, replies = run(cache, b"POST /hello.txt HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n"
                                  b"Connection: Upgrade\r\nContent-Length: 3\r\n\r\nabc"
                                  b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [r[0] for r in replies] == [405] and replies[0][1]["connection"] == "close"
    assert session.closing


def test_an_absolute_form_target_is_served_by_its_path(cache):
    """RFC 9112 3.2.2: a server MUST accept `GET http://host/path`; traversal in it is still 400."""
    session, replies = run(cache, b"GET http://x:8080/hello.txt HTTP/1.1\r\nHost: x:8080\r\n\r\n"
                                  b"GET http://x/sub/data.json?q=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                                  b"GET http://x/%2e%2e/secret.txt HTTP/1.1\r\nHost: x\r\n\r\n"
                                  b"GET ftp://x/hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [(r[0], r[2][:9]) for r in replies] == [
        (200, b"hello, wo"), (200, b'{"a": 1}\n'), (400, b"400 Bad R"), (400, b"400 Bad R")]


def test_an_http_1_0_request_with_transfer_encoding_closes_after_its_reply(cache):
    """RFC 9112 6.1: HTTP/1.0 has no Transfer-Encoding, so its framing is suspect (a request
    smuggled through a 1.0 proxy) and the connection MUST close after the reply, keep-alive or
    not: the request pipelined after it is not read."""
    session, replies = run(cache, b"GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                                  b"GET /style.css HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert [(status, body) for status, _, body in replies] == [(200, b"hello, world\n")]
    assert replies[0][1]["connection"] == "close" and session.closing


def test_if_none_match_over_several_header_lines_is_one_list(cache):
    """RFC 9110 5.3: field lines of one name are one comma-separated list: an ETag on the first
    of two If-None-Match lines matches as much as on the second (only the last one was read)."""
    session, [(_, headers, _)] = run(cache, b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    etag = headers["etag"].encode()
    for first, second in ((etag, b'"other"'), (b'"other"', etag)):
        session.feed(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: " + first +
                     b"\r\nIf-None-Match: " + second + b"\r\n\r\n")
    assert [status for status, _, _ in parse(session.out)] == [200, 304, 304]


@pytest.mark.parametrize("host", [b"", b"x", b"example.com:8080", b"127.0.0.1", b"[::1]:80",
                                  b"[v1.fe80::a+en1]", b"EXAMPLE.com.", b"x:", b"caf%C3%A9.example"])
def test_every_valid_host_is_served(cache, host):
    """Host is uri-host [":" port] (RFC 9112 3.2); an empty one is allowed too."""
    session, replies = run(cache, b"GET /hello.txt HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert [r[0] for r in replies] == [200] and not session.closing


def test_a_file_dated_in_the_future_is_not_last_modified_in_the_future(tmp_path):
    """RFC 9110 8.8.2.1: a Last-Modified after the reply's Date MUST be replaced by the Date. A
    file unpacked with a future mtime was announced as modified then; a client revalidating
    with that date (curl -z, a proxy) was told 304 after every change until that day came."""
    path = tmp_path / "news.txt"
    path.write_bytes(b"old news\n")
    now = time.time()
    os.utime(path, (now + 86400, now + 86400))
    session = HttpSession(FileCache(str(tmp_path)))
    session.feed(b"GET /news.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    [(_, headers, _)] = parse(session.out)
    modified = headers["last-modified"]
    assert parsedate_to_datetime(modified) <= parsedate_to_datetime(headers["date"])
    path.write_bytes(b"fresh news\n")
    os.utime(path, (now + 3600, now + 3600))               # changed: still ahead, but earlier
    session.out.clear()
    session.feed(f"GET /news.txt HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: {modified}\r\n\r\n"
                 .encode())
    assert [(r[0], r[2]) for r in parse(session.out)] == [(200, b"fresh news\n")]


def test_if_modified_since_on_two_lines_is_ignored(cache):
    """RFC 9110 13.1.3: a field value of more than one member MUST be ignored; the last line
    alone decided, so a later date after an earlier one gave a 304."""
    _, [(_, h, _)] = run(cache, b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    old = formatdate(0, usegmt=True)
    _, replies = run(cache, f"GET /hello.txt HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: {old}\r\n"
                            f"If-Modified-Since: {h['last-modified']}\r\n\r\n".encode())
    assert [(r[0], r[2]) for r in replies] == [(200, b"hello, world\n")]


def _statuses(cache, *fields: str) -> list[int]:
    """The status of a GET /hello.txt with each set of header lines, in which {etag} and
    {modified} stand for its validators and {old} for a date long before it."""
    _, [(_, h, _)] = run(cache, b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    values = dict(etag=h["etag"], modified=h["last-modified"], old=formatdate(0, usegmt=True))
    raw = "".join(f"GET /hello.txt HTTP/1.1\r\nHost: x\r\n{f.format(**values)}\r\n\r\n"
                  for f in fields)
    return [r[0] for r in run(cache, raw.encode())[1]]


def test_if_match_compares_strongly_and_star_matches_a_file_we_have(cache):
    """RFC 9110 13.1.1; If-Match was ignored (a 200 for every one of these)."""
    assert _statuses(cache, "If-Match: {etag}", "If-Match: W/{etag}", 'If-Match: "zz"',
                     "If-Match: *", 'If-Match: "zz", {etag}') == [200, 412, 412, 200, 200]


def test_if_match_over_several_header_lines_is_one_list(cache):
    assert _statuses(cache, 'If-Match: "zz"\r\nIf-Match: {etag}',
                     'If-Match: {etag}\r\nIf-Match: "zz"',
                     'If-Match: "zz"\r\nIf-Match: "yy"') == [200, 200, 412]


def test_if_unmodified_since_is_ignored_beside_if_match_or_when_not_one_date(cache):
    """RFC 9110 13.1.4: If-Unmodified-Since was ignored always; now only beside If-Match, or
    when it is not one valid date (two lines are two dates, as for If-Modified-Since)."""
    assert _statuses(cache, "If-Unmodified-Since: {modified}", "If-Unmodified-Since: {old}",
                     "If-Unmodified-Since: garbage",
                     "If-Unmodified-Since: {modified}\r\nIf-Unmodified-Since: {old}",
                     "If-Unmodified-Since: {old}\r\nIf-Unmodified-Since: {modified}",
                     "If-Match: {etag}\r\nIf-Unmodified-Since: {old}",
                     "If-Match: *\r\nIf-Unmodified-Since: {old}",
                     ) == [200, 412, 200, 200, 200, 200, 200]


def test_a_false_if_match_or_if_unmodified_since_wins_over_a_304(cache):
    """RFC 9110 13.2.2: If-Match (else If-Unmodified-Since) before If-None-Match (else
    If-Modified-Since)."""
    assert _statuses(cache, 'If-Match: "zz"\r\nIf-None-Match: {etag}',
                     "If-Match: {etag}\r\nIf-None-Match: {etag}",
                     "If-Unmodified-Since: {old}\r\nIf-Modified-Since: {modified}",
                     "If-Unmodified-Since: {modified}\r\nIf-Modified-Since: {modified}",
                     ) == [412, 304, 412, 304]


def test_a_412_has_its_length_no_body_for_head_and_keeps_the_connection(cache):
    session, replies = run(cache, b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nIf-Match: \"zz\"\r\n\r\n"
                                  b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [(r[0], r[2]) for r in replies] == [(412, b"412 Precondition Failed\n"),
                                               (200, b"hello, world\n")]
    assert replies[0][1]["content-length"] == "24" and "connection" not in replies[0][1]
    assert session.requests == 2 and not session.closing
    session, _ = run(cache, b"HEAD /hello.txt HTTP/1.1\r\nHost: x\r\nIf-Match: \"zz\"\r\n\r\n")
    [raw] = session.out
    assert raw.startswith(b"HTTP/1.1 412 ") and raw.endswith(b"\r\n\r\n")
    assert b"Content-Length: 24\r\n" in raw and not session.closing
    session, [(status, h, _)] = run(cache, b"GET /hello.txt HTTP/1.0\r\nIf-Match: \"zz\"\r\n\r\n")
    assert status == 412 and h["connection"] == "close" and session.closing


def test_a_file_too_large_to_cache_gets_its_412_before_it_is_opened(cache):
    session, replies = run(cache, b"GET /big.bin HTTP/1.1\r\nHost: x\r\nIf-Match: \"zz\"\r\n\r\n")
    assert [r[0] for r in replies] == [412]
    assert not any(isinstance(r, SendFile) for r in session.out)


@pytest.mark.parametrize("target, code", [(b"/nope", 404), (b"/sub", 301), (b"/../x", 400)])
@pytest.mark.parametrize("field", [b"If-Match: \"zz\"", b"If-Unmodified-Since: Thu, 01 Jan 1970 "
                                                        b"00:00:00 GMT"])
def test_preconditions_do_not_change_a_reply_other_than_200(cache, target, code, field):
    """RFC 9110 13.2.1: a request that would not be a 2xx without its preconditions ignores
    them; the same field on a file we serve is a 412."""
    _, replies = run(cache, b"".join(b"GET " + t + b" HTTP/1.1\r\nHost: x\r\n" + field + b"\r\n\r\n"
                                     for t in (target, b"/hello.txt")))
    assert [r[0] for r in replies] == [code, 412]


def test_a_file_without_validators_meets_only_if_match_star():
    """A file whose bytes its stat does not describe (procfs) is sent without ETag or
    Last-Modified: no tag can name it, and If-Unmodified-Since has no date to compare with."""
    raw = b"".join(b"GET /status HTTP/1.1\r\nHost: x\r\n" + field + b"\r\n\r\n"
                   for field in (b"If-Match: \"zz\"", b"If-Match: *",
                                 b"If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT"))
    assert [r[0] for r in run(FileCache("/proc/self"), raw)[1]] == [412, 200, 200]


def test_options_star_and_options_on_a_file_get_200_with_allow(cache):
    """RFC 9110 9.3.7: `OPTIONS *` asks about the server, `OPTIONS /file` about one file; both
    were 405. The reply has no body (Content-Length: 0) and keeps the connection."""
    session, replies = run(cache, b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"
                                  b"OPTIONS /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n"
                                  b"OPTIONS /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                                  b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [(r[0], r[2]) for r in replies] == [(200, b""), (200, b""), (404, b"404 Not Found\n"),
                                               (200, b"hello, world\n")]
    for _, headers, _ in replies[:2]:
        assert headers["allow"] == "GET, HEAD, OPTIONS" and headers["content-length"] == "0"
        assert "etag" not in headers and "content-type" not in headers
    assert not session.closing
    session, [(status, headers, _)] = run(cache, b"OPTIONS * HTTP/1.0\r\n\r\n")
    assert status == 200 and headers["connection"] == "close" and session.closing


def test_options_ignores_preconditions_and_follows_the_body_rules_of_get(cache):
    """RFC 9110 13.2.1: OPTIONS selects no representation, so If-Match and the like are ignored.
    A body is read and discarded as for GET: 100 Continue when asked, 413 over the limit."""
    _, replies = run(cache, b"OPTIONS /hello.txt HTTP/1.1\r\nHost: x\r\nIf-Match: \"zz\"\r\n\r\n"
                            b"OPTIONS * HTTP/1.1\r\nHost: x\r\nIf-None-Match: *\r\n\r\n"
                            b"OPTIONS * HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                            b"Content-Length: 3\r\n\r\nabc"
                            b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [r[0] for r in replies] == [200, 200, 200, 200]
    session = HttpSession(cache)
    session.feed(b"OPTIONS * HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                 b"Expect: 100-continue\r\n\r\n")
    assert session.out == [responses.CONTINUE]
    session.feed(b"abc")
    assert [r[0] for r in parse(session.out)] == [100, 200] and not session.closing
    session, replies = run(cache, b"OPTIONS * HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n")
    assert [r[0] for r in replies] == [413] and session.closing


def test_a_405_allows_the_methods_options_announces(cache):
    _, replies = run(cache, b"DELETE /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n"
                            b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [r[0] for r in replies] == [405, 200]
    assert replies[0][1]["allow"] == replies[1][1]["allow"] == "GET, HEAD, OPTIONS"


def test_dotfiles_are_404_however_the_target_spells_them(tmp_path):
    """A .git folder or .htpasswd left under the root was served to anyone who asked."""
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("[remote] secret\n")
    (tmp_path / ".git" / "index.html").write_text("secret index\n")
    (tmp_path / ".htpasswd").write_text("admin:secret\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".env").write_text("TOKEN=secret\n")
    (tmp_path / "x.txt").write_text("x\n")
    targets = [b"/.git/config", b"/%2egit/config", b"/%2Egit%2Fconfig", b"/.git/", b"/.git",
               b"/.htpasswd", b"/.htpasswd/", b"/sub/.env", b"/sub/./.env", b"/sub/%2eenv",
               b"//.htpasswd", b"/.nothing-there", b"http://h/.htpasswd"]
    raw = b"".join(b"GET " + t + b" HTTP/1.1\r\nHost: x\r\n\r\n" for t in targets)
    raw += b"OPTIONS /.htpasswd HTTP/1.1\r\nHost: x\r\n\r\n"
    raw += b"GET /./x.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /../ HTTP/1.1\r\nHost: x\r\n\r\n"
    cache = FileCache(str(tmp_path))
    session, replies = run(cache, raw)
    assert [r[0] for r in replies] == [404] * (len(targets) + 1) + [200, 400]
    assert all(b"secret" not in r[2] and "location" not in r[1] for r in replies)
    assert replies[-2][2] == b"x\n"
    session, _ = run(cache, b"HEAD /.htpasswd HTTP/1.1\r\nHost: x\r\n\r\n")
    assert session.out[0].startswith(b"HTTP/1.1 404 ")


NO_LISTING = b"403 Forbidden: this server does not list directories\n"


def test_a_folder_without_an_index_is_403_with_or_without_its_slash(tmp_path):
    """/bare was redirected to /bare/, which then said 404: a redirect to a dead end, and a
    "not found" for a folder that is there. Only a folder with an index.html is redirected."""
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "x.txt").write_text("x\n")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "index.html").mkdir()           # an index that is not a file
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "index.html").write_text("<p>home</p>\n")
    targets = [b"/bare", b"/bare/", b"/bare?q=1", b"/odd", b"/odd/", b"/", b"/home", b"/home/",
               b"/bare/x.txt"]
    cache = FileCache(str(tmp_path))
    session, replies = run(cache, b"".join(b"GET " + t + b" HTTP/1.1\r\nHost: x\r\n\r\n"
                                           for t in targets))
    assert [(r[0], r[2]) for r in replies] == [(403, NO_LISTING)] * 6 + [
        (301, b"301 Moved Permanently\n"), (200, b"<p>home</p>\n"), (200, b"x\n")]
    assert [r[1].get("location") for r in replies[:7]] == [None] * 6 + ["/home/"]
    assert replies[0][1]["content-length"] == str(len(NO_LISTING)) and not session.closing
    session, _ = run(cache, b"HEAD /bare HTTP/1.1\r\nHost: x\r\n\r\n")
    assert session.out[0].startswith(b"HTTP/1.1 403 ") and session.out[0].endswith(b"\r\n\r\n")


def test_a_folder_outside_the_root_is_404_with_or_without_an_index(tmp_path):
    """Through a symlink leading out, a folder without an index must not become a 403: that
    would tell which folders exist out there (a dangling index link too)."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (outside / "bare").mkdir(parents=True)
    (outside / "home").mkdir()
    (outside / "home" / "index.html").write_text("outside\n")
    root.mkdir()
    os.symlink(outside, root / "out")
    (root / "lead").mkdir()
    os.symlink(outside / "home" / "index.html", root / "lead" / "index.html")
    (root / "dangle").mkdir()
    os.symlink(outside / "no-such-file", root / "dangle" / "index.html")
    targets = [b"/out", b"/out/", b"/out/bare", b"/out/bare/", b"/out/home", b"/out/home/",
               b"/lead", b"/lead/", b"/dangle", b"/dangle/"]
    _, replies = run(FileCache(str(root)), b"".join(b"GET " + t + b" HTTP/1.1\r\nHost: x\r\n\r\n"
                                                    for t in targets))
    assert [r[0] for r in replies] == [404] * len(targets)


def test_if_none_match_star_is_304_for_a_file_without_validators():
    """RFC 9110 13.1.2: "*" matches any current representation, with or without an ETag; a
    procfs file (sent without validators) got 200. Its 304 carries no validator either."""
    cache = FileCache("/proc/self")
    now = formatdate(time.time() + 60, usegmt=True)
    raw = b"".join(b"GET /status HTTP/1.1\r\nHost: x\r\n" + field + b"\r\n\r\n"
                   for field in (b"If-None-Match: *", b"If-None-Match: \"zz\", *",
                                 b"If-None-Match: \"zz\"", b"If-Match: *",
                                 b"If-Modified-Since: " + now.encode(),
                                 b"If-Match: *\r\nIf-None-Match: *"))
    replies = run(cache, raw)[1]
    assert [r[0] for r in replies] == [304, 304, 200, 200, 200, 304]
    assert all("etag" not in r[1] and "last-modified" not in r[1] for r in replies)
    assert replies[3][2].startswith(b"Name:")
    for field, code in ((b"If-None-Match: *", 304), (b"If-Match: *", 200)):
        session, _ = run(cache, b"HEAD /status HTTP/1.1\r\nHost: x\r\n" + field + b"\r\n\r\n")
        assert session.out[0].startswith(b"HTTP/1.1 %d " % code), field
        assert session.out[0].endswith(b"\r\n\r\n") and not session.closing


def test_if_unmodified_since_compares_with_the_last_modified_we_sent(tmp_path):
    """A file dated in the future is sent with Last-Modified capped at when it was loaded, but
    If-Unmodified-Since was compared with its real mtime: the very date we sent was a 412."""
    path = tmp_path / "ahead.txt"
    path.write_bytes(b"from the future\n")
    later = time.time() + 86400
    os.utime(path, (later, later))
    cache = FileCache(str(tmp_path))
    _, [(_, headers, _)] = run(cache, b"GET /ahead.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    modified = headers["last-modified"].encode()
    old = formatdate(0, usegmt=True).encode()
    raw = b"".join(b"GET /ahead.txt HTTP/1.1\r\nHost: x\r\n" + field + b"\r\n\r\n"
                   for field in (b"If-Unmodified-Since: " + modified,
                                 b"If-Unmodified-Since: " + old,
                                 b"If-Modified-Since: " + modified))
    assert [r[0] for r in run(cache, raw)[1]] == [200, 412, 200]


def test_each_session_counts_its_replies_by_status(cache):
    """The per-status counts of the stats file start here: one plain dict per connection,
    touched only by the connection's color (merged on the accept color when it closes)."""
    raw = b"".join(b"%s %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % parts for parts in (
        (b"GET", b"/hello.txt", b""), (b"GET", b"/hello.txt", b""), (b"GET", b"/nope", b""),
        (b"GET", b"/sub", b""), (b"OPTIONS", b"*", b""), (b"DELETE", b"/x", b""),
        (b"GET", b"/hello.txt", b"If-Match: \"zz\"\r\n"), (b"GET", b"/hello.txt", b"If-None-Match: *\r\n"),
        (b"GET", b"/%zz", b""), (b"GET", b"/big.bin", b""), (b"GET", b"/", b"Host: y\r\n")))
    session, _ = run(cache, raw)
    # the file sent from disk is counted when it is opened (connection.py), the second Host
    # line is a 400 that closes the connection
    assert session.statuses == {200: 3, 404: 1, 301: 1, 405: 1, 412: 1, 304: 1, 400: 2}


def test_every_worker_sends_the_same_last_modified_for_a_file_dated_in_the_future(tmp_path):
    """Each worker thread loads a file into its own table; capped at the clock of each load, a
    future-dated file had a Last-Modified per worker, and the date one gave was a 412 on the
    other (half the requests of `curl -H If-Unmodified-Since` with --colors on, 2 workers)."""
    path = tmp_path / "ahead.txt"
    path.write_bytes(b"from the future\n")
    later = time.time() + 86400
    os.utime(path, (later, later))
    entries = []
    for delay in (0, 5):                     # two loads, as two workers would, 5 s apart
        with mock.patch.object(cache_module.time, "time", return_value=time.time() + delay):
            entries.append(FileCache(str(tmp_path)).lookup("ahead.txt"))
    assert entries[0].last_modified == entries[1].last_modified
    raw = b"GET /ahead.txt HTTP/1.1\r\nHost: x\r\nIf-Unmodified-Since: " + entries[0].last_modified
    session = HttpSession(mock.Mock(lookup=lambda relpath: entries[1]))
    session.feed(raw + b"\r\n\r\n")
    assert [r[0] for r in parse(session.out)] == [200]
