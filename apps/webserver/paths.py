"""Turning a request target into a file under the document root, and nothing outside it.

A target in absolute form (`http://host/path`) is first reduced to its path (`origin_form`).
Every rejection happens before the file system is touched: a target that is not an absolute path,
a malformed percent-escape (`%zz`), a NUL byte (raw or percent-encoded), a `..` segment (also
when its dots or slashes arrive percent-encoded, e.g. `..%2f`), or a backslash. What survives is
a normalised relative path whose segments contain no separators, so joining it to the root cannot
leave the root; symbolic links inside the root are still resolved and checked by the cache
before a file is opened.

A path with a segment that starts with "." (`.git/config`, `.htpasswd`, `.env`), however it was
spelt (`%2egit`, `/.git/`), is hidden: a 404, the same whether the file exists or not. Such
files are left under a document root by accident far more often than on purpose, and a server
that serves them gives away repositories and passwords; a site that wants `.well-known/` served
needs another server.
"""
from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

import httptools


_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


class BadPath(ValueError):
    """The target can never name a file we serve: the reply is `status` (400: unsafe or junk)."""

    status = 400


class Hidden(BadPath):
    """A segment starts with ".": answered as a name that is not there, so that the reply tells
    nothing of which dotfiles exist (and traversal beside it is still the 400 it was)."""

    status = 404


def origin_form(target: bytes) -> bytes:
    """b'http://host:8080/a.html?x=1' -> b'/a.html?x=1'; any other target is returned as it is.

    RFC 9112 3.2.2: a server MUST accept the absolute form (what a client sends to a proxy); we
    serve one site, so its authority is ignored and its path (b'/' if none) and query are used.
    """
    if target[:8].lower().startswith((b"http://", b"https://")):
        try:
            url = httptools.parse_url(target)
        except httptools.HttpParserInvalidURLError:
            raise BadPath("invalid absolute URL") from None
        path = url.path or b"/"
        return path + b"?" + url.query if url.query else path
    return target


def target_to_relpath(target: bytes) -> str:
    """b'/a/b.html?x=1' -> 'a/b.html'; b'/' -> ''; raises BadPath for anything unsafe."""
    path = target.split(b"?", 1)[0].split(b"#", 1)[0]
    if not path.startswith(b"/"):
        raise BadPath("request target must be an absolute path")
    if b"%" in path:
        if _BAD_ESCAPE.search(path):
            raise BadPath("'%' not followed by two hex digits")   # a malformed target, not a name
        path = unquote_to_bytes(path)
    if b"\x00" in path or b"\\" in path:
        raise BadPath("NUL or backslash in path")
    try:
        text = path.decode("utf-8")
    except UnicodeDecodeError:
        raise BadPath("path is not UTF-8") from None
    parts = []
    for segment in text.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            raise BadPath("'..' in path")
        parts.append(segment)
    for segment in parts:
        if segment[0] == ".":
            raise Hidden("a segment starts with '.'")
    relpath = "/".join(parts)
    if text.endswith("/") and relpath:
        relpath += "/"
    return relpath
