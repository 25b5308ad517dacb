"""Request targets to paths: every traversal form is refused before the file system is used."""
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.webserver.paths import BadPath, Hidden, origin_form, target_to_relpath


@pytest.mark.parametrize("target, expected", [
    (b"/", ""), (b"/index.html", "index.html"), (b"/sub/", "sub/"), (b"/a//b/./c", "a/b/c"),
    (b"/with%20space.txt", "with space.txt"), (b"/x.html?q=1&r=..", "x.html"),
    (b"/caf%C3%A9", "caf\u00e9"), (b"/./x", "x"), (b"/a/./b/", "a/b/"), (b"/foo.", "foo."),
    (b"/a.b/c.d", "a.b/c.d"),
])
def test_good_targets(target, expected):
    assert target_to_relpath(target) == expected


@pytest.mark.parametrize("target", [
    b"/../etc/passwd", b"/a/../../etc/passwd", b"/%2e%2e/etc/passwd", b"/%2E%2E%2Fetc",
    b"/..%2fetc/passwd", b"/..%2F..%2Fetc", b"/a/%2e%2e/%2e%2e/x", b"/a%00b", b"/a\x00b",
    b"/..\\etc", b"/a%5c..%5cb", b"etc/passwd", b"http://host/x", b"*", b"/%ff%fe",
    b"/%zz", b"/a%", b"/a%2", b"/%2g.txt", b"/%%41",
])
def test_traversal_and_junk_refused(target):
    with pytest.raises(BadPath):
        target_to_relpath(target)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b"..", b".", b"%2e", b"%2E%2e", b"a", b"%2f", b"/", b"%00",
                                 b"b.txt", b"%5c", b"\\", b"?", b"%", b"%zz"]), max_size=12))
def test_fuzzed_paths_never_leave_the_root(pieces):
    target = b"/" + b"".join(pieces)
    root = "/srv/root"
    try:
        rel = target_to_relpath(target)
    except BadPath:
        return
    joined = os.path.normpath(os.path.join(root, rel))
    assert joined == root or joined.startswith(root + "/")
    assert ".." not in rel.split("/") and "\x00" not in rel


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_give_a_path_or_badpath(raw):
    try:
        rel = target_to_relpath(b"/" + raw)
    except BadPath:
        return
    assert not os.path.isabs(rel) and ".." not in rel.split("/")


@pytest.mark.parametrize("target, expected", [
    (b"http://h:8080/sub/data.json?x=1#f", b"/sub/data.json?x=1"), (b"HTTP://h", b"/"),
    (b"https://h?q", b"/?q"), (b"http://h/%2e%2e/x", b"/%2e%2e/x"), (b"/a?b", b"/a?b"),
    (b"*", b"*"), (b"ftp://h/x", b"ftp://h/x"),
])
def test_absolute_form_targets_become_their_path(target, expected):
    assert origin_form(target) == expected


def test_an_invalid_absolute_url_is_a_bad_path():
    with pytest.raises(BadPath):
        origin_form(b"http://")


@pytest.mark.parametrize("target", [
    b"/.git/config", b"/.htpasswd", b"/.git/", b"/.git", b"/sub/.env", b"/a/./.git/config",
    b"/%2egit/config", b"/%2Ehtpasswd", b"/sub%2f.env", b"/.%2egit", b"/.%2f.git", b"/.htpasswd/",
    b"/.htpasswd?x=1", b"/..foo", b"/...", b"//.git//config", b"/.well-known/x",
])
def test_a_segment_starting_with_a_dot_is_hidden_whatever_its_spelling(target):
    """Dotfiles (.git, .htpasswd, .env) are not served: a 404, the same whether they exist."""
    with pytest.raises(Hidden) as caught:
        target_to_relpath(target)
    assert caught.value.status == 404


@pytest.mark.parametrize("target", [b"/../", b"/.git/../x", b"/%2e%2e/.env", b"/.htpasswd%00"])
def test_traversal_beside_a_dotfile_is_still_a_400(target):
    with pytest.raises(BadPath) as caught:
        target_to_relpath(target)
    assert caught.value.status == 400 and not isinstance(caught.value, Hidden)
