"""The file cache: per-thread tables, coherence with the disk, CLOCK eviction, the byte bound."""
import os
import threading

import pytest

from apps.webserver.cache import FileCache, Unavailable


def _in_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def test_each_thread_has_its_own_entries_and_all_see_changes(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"one")
    cache = FileCache(str(tmp_path))
    here = cache.lookup("a.txt")
    there = _in_thread(lambda: cache.lookup("a.txt"))
    assert here.body == there.body == b"one"
    assert here is not there                       # no object is shared between two threads
    assert cache.lookup("a.txt") is here           # a hit in this thread's own table
    assert len(cache) == 2 and cache.loads == 2
    (tmp_path / "a.txt").write_bytes(b"two, longer")
    assert cache.lookup("a.txt").body == b"two, longer"
    assert _in_thread(lambda: cache.lookup("a.txt")).body == b"two, longer"


def test_clock_keeps_the_entry_used_since_the_last_sweep(tmp_path):
    for name in "abcd":
        (tmp_path / name).write_bytes(name.encode() * 1000)
    cache = FileCache(str(tmp_path), max_bytes=3000)
    for name in "abc":
        cache.lookup(name)                      # full: 3000 bytes
    cache.lookup("d")                           # a sweep clears every use bit, then evicts "a"
    assert cache.cached_bytes == 3000
    kept_b = cache.lookup("b")                  # b is used again
    cache.lookup("a")                           # loaded again: the sweep passes b, evicts c
    assert cache.lookup("b") is kept_b          # still the same entry: b was not evicted
    assert cache.loads == 5 and cache.cached_bytes == 3000


def test_byte_bound_holds_per_thread_under_churn(tmp_path):
    for i in range(40):
        (tmp_path / f"f{i}").write_bytes(os.urandom(100 + 37 * i))
    cache = FileCache(str(tmp_path), max_bytes=5000)

    wrong = []

    def churn(seed):
        for k in range(400):
            i = (k * seed) % 40
            if cache.lookup(f"f{i}").body != (tmp_path / f"f{i}").read_bytes():
                wrong.append((seed, i))

    threads = [threading.Thread(target=churn, args=(s,)) for s in (7, 11, 13)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    churn(3)
    assert wrong == []
    assert 0 < cache.cached_bytes <= 4 * 5000      # four threads, each within its bound


def test_a_chmod_makes_the_next_lookup_open_the_file_again(tmp_path):
    """A revoked permission changes neither mtime, size nor inode, only ctime and mode: the entry
    must be dropped so the file is opened again (and a refused open is answered, as root cannot
    show here). The reload shows in the bytes, replaced behind the cache's back."""
    path = tmp_path / "a.txt"
    path.write_bytes(b"old")
    cache = FileCache(str(tmp_path))
    assert cache.lookup("a.txt").body == b"old"
    before = path.stat()
    path.write_bytes(b"new")                              # same inode, same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.chmod(path, 0o600)
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino, before.st_size, before.st_mtime_ns)
    assert cache.lookup("a.txt").body == b"new" and cache.loads == 2


def test_a_file_whose_stat_says_zero_bytes_is_read_to_its_end_each_time(tmp_path):
    """procfs reports a size of 0 for files whose bytes are made when read (/proc/self/status):
    they were served as empty 200s. They are read to their end, and again at every request, as
    their bytes change; they carry no ETag or Last-Modified, which could not tell two versions
    of the same length apart (a wrong 304). A truly empty file is still served, empty."""
    cache = FileCache("/proc/self")
    first = cache.lookup("status")
    assert first.body.startswith(b"Name:") and first.size == len(first.body)
    assert b"ETag" not in first.headers and b"Last-Modified" not in first.headers
    second = cache.lookup("status")
    assert second is not first and second.body.startswith(b"Name:") and len(cache) == 0
    (tmp_path / "empty.txt").write_bytes(b"")
    empty = FileCache(str(tmp_path)).lookup("empty.txt")
    assert (empty.body, empty.size) == (b"", 0)


def test_a_generated_file_over_the_bound_is_refused_not_cut(tmp_path):
    """Its length is only known by reading it: one over the bound of a cached file cannot be
    sent from disk (that needs its length first) and must not be sent cut short: a 500."""
    cache = FileCache("/proc/self", max_file_bytes=64)
    with pytest.raises(Unavailable) as raised:
        cache.lookup("status")
    assert raised.value.status == 500


@pytest.mark.parametrize("change", ["larger", "smaller", "same size"])
def test_a_large_file_rewritten_in_place_after_its_lookup_is_not_opened_for_it(tmp_path, change):
    """Its head (Content-Length, ETag) was built at the lookup; `cp` over the file keeps the
    inode, so only its size and mtime tell that the bytes are no longer the ones announced."""
    path = tmp_path / "big.bin"
    path.write_bytes(b"o" * 5000)
    cache = FileCache(str(tmp_path), max_file_bytes=1000)
    entry = cache.lookup("big.bin")
    assert entry.body is None
    os.close(cache.open_cached(entry))                  # unchanged: opened
    ino = path.stat().st_ino
    with open(path, "r+b") as f:                        # in place: the same inode
        f.truncate(0)
        f.write(b"n" * {"larger": 9000, "smaller": 100, "same size": 5000}[change])
    if change == "same size":                           # only the mtime tells
        os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns + 1_000_000_000))
    assert path.stat().st_ino == ino
    with pytest.raises(Unavailable) as refused:
        cache.open_cached(entry)
    assert refused.value.status == 503 and b"Retry-After" in refused.value.extra
    fresh = cache.lookup("big.bin")                      # the retry gets the new version
    assert fresh.size == path.stat().st_size and fresh.etag != entry.etag
    os.close(cache.open_cached(fresh))
