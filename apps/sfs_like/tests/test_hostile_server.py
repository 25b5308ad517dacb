"""The client against a broken or hostile server (fakeserver.py: the real handshake, then bad
replies): every failure is one line of error, status 1, and `get` leaves nothing behind."""
from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from apps.sfs_like import rpc
from apps.sfs_like.client import Client, ServerTimeout
from apps.sfs_like.framing import LENGTH, MAX_IO

from .conftest import REPO
from .fakeserver import FILE, FakeServer, Raw, Trickle, _read, ok
from .test_client_cli import client, one_line_error


def _get_fails(tmp_path, answers: dict, says: str, *args) -> None:
    """`get f DEST` fails with `says` on one line, and DEST's folder stays empty."""
    dest = tmp_path / "down"
    dest.mkdir()
    with FakeServer(answers) as server:
        proc = client(*args, server.address, "get", "f", str(dest / "f"))
    one_line_error(proc, says)
    assert proc.returncode == 1
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("answers, says", [
    ({rpc.LOOKUP: lambda xid, args: ok(xid, b"\0")}, "error: malformed LOOKUP reply: unpack_from"),
    ({rpc.READ: lambda xid, args: ok(xid)}, "error: malformed READ reply"),
    ({rpc.READ: lambda xid, args: ok(xid + 1, b"\1")}, "error: reply for xid 3, expected 2"),
    ({rpc.READ: lambda xid, args: [Raw(b"\0\0\0"), None]}, "server closed the connection (3 of 4 bytes"),
    ({rpc.READ: lambda xid, args: b"\0\0"}, "error: reply of 2 bytes is shorter than its header"),
    ({rpc.READ: lambda xid, args: Raw(LENGTH.pack(0xFFFF_FFF0))},
     "error: server announced a 4294967280-byte frame, the limit is 263168"),
    ({rpc.READ: lambda xid, args: Raw(LENGTH.pack(40) + b"x" * 40)},
     "error: reply failed verification: bad MAC on frame 2"),
    ({rpc.READ: lambda xid, args: None}, "error: server closed the connection (0 of 4 bytes"),
])
def test_a_reply_that_breaks_the_protocol_is_one_line_of_error(tmp_path, answers, says):
    """A reply cut short, for another xid, oversized, forged or missing: 'malformed' replies
    were struct.error and IndexError tracebacks, and a wrong xid passed for the server's IO
    status."""
    _get_fails(tmp_path, answers, says)


@pytest.mark.parametrize("entries", [b"\0\0", rpc.U32.pack(1) + b"\1" + rpc.U32.pack(10**9),
                                     rpc.pack_entries([("f", 1)], True, 1)[:-1]])
def test_a_malformed_readdir_reply_is_one_line_of_error(entries):
    with FakeServer({rpc.READDIR: lambda xid, args: ok(xid, entries)}) as server:
        proc = client(server.address, "ls")
    one_line_error(proc, "error: malformed READDIR reply")
    assert proc.stdout == ""


def _endless(xid, args):
    """READ's reply from a server that never says EOF: all the bytes asked for, every time."""
    return ok(xid, b"\0" + b"x" * rpc.READ_ARGS.unpack(args)[2])


@pytest.mark.parametrize("answers, says", [
    ({rpc.READ: lambda xid, args: ok(xid, b"\0" + b"x" * 100)}, "error: READ of 4 bytes at 0 returned 100"),
    ({rpc.READ: _endless}, "error: READs went on to byte 12 without EOF, past the file's size "
                           "(10 bytes by GETATTR)"),
    ({rpc.READ: _endless, rpc.GETATTR: lambda xid, args: ok(xid)}, "error: malformed GETATTR reply"),
])
def test_a_read_that_would_never_end_is_one_line_of_error(tmp_path, answers, says):
    """More bytes than asked, or READs without EOF past the size GETATTR gives, had `get` fill
    the disk (and the library's get() the memory) for as long as the server liked."""
    _get_fails(tmp_path, answers, says, "--block", "4")


def test_a_file_that_grows_while_it_is_read_is_read_to_its_end():
    """Data past the size first heard is fine when GETATTR then says the file has grown."""
    sizes = iter([6, 12])
    data = b"abcdefghijkl"

    def read(xid, args):
        _, offset, count = rpc.READ_ARGS.unpack(args)
        return ok(xid, bytes([offset + count >= len(data)]) + data[offset:offset + count])

    answers = {rpc.READ: read, rpc.GETATTR: lambda xid, args: ok(
        xid, rpc.Attr(rpc.FT_FILE, 0o644, next(sizes), 0).pack())}
    with FakeServer(answers) as server, Client(server.address) as c:
        assert c.get("f", block=4) == data


@pytest.mark.parametrize("after", [0, 5])
def test_a_readdir_whose_cookie_does_not_move_on_is_one_line_of_error(after):
    """`ls` asked for the same entries forever (and kept every copy) when a reply without EOF
    gave back the cookie it was asked from, or one before it."""
    def readdir(xid, args):
        cookie = rpc.READDIR_ARGS.unpack(args)[1]
        return ok(xid, rpc.pack_entries([("f", rpc.FT_FILE)], False, after if cookie else 5))

    with FakeServer({rpc.READDIR: readdir}) as server:
        proc = client(server.address, "ls")
    one_line_error(proc, f"error: READDIR from cookie 5 goes on from {after}, not further")


def test_a_write_the_server_did_only_in_part_fails_the_put_before_its_rename(tmp_path):
    """A WRITE reply counting fewer bytes than were sent was ignored: the put renamed a short
    file over FILE and said nothing. Now it fails, and removes its temporary file."""
    local = tmp_path / "up"
    local.write_bytes(b"12345")
    with FakeServer({rpc.WRITE: lambda xid, args: ok(xid, rpc.U32.pack(1) + FILE.pack())}) as server:
        proc = client(server.address, "put", str(local), "f")
    one_line_error(proc, "error: WRITE of 5 bytes at 0: the server says it wrote 1")
    assert server.requests == [rpc.CREATE_TEMP, rpc.WRITE, rpc.REMOVE]


def test_ls_quotes_names_no_file_can_have():
    """Names with a '/', empty, '.' or '..' (which no real entry has) were printed raw: "d/"
    looked like a directory d, "a/b" like a path and '' like nothing at all. NUL and newlines
    were quoted already."""
    names = ["a/b", "d/", "", ".", "..", "x\0y", "n\nl", "plain"]
    entries = rpc.pack_entries([(name, rpc.FT_FILE) for name in names], True, len(names))
    with FakeServer({rpc.READDIR: lambda xid, args: ok(xid, entries)}) as server:
        proc = client(server.address, "ls")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["'a/b'", "'d/'", "''", "'.'", "'..'", "'x\\x00y'",
                                        "'n\\nl'", "plain"]


@pytest.mark.parametrize("message, says", [
    ("weird\nsecond line\x1b[2J", "error: status 200: weird\\nsecond line\\x1b[2J\n"),
    ("x" * 200_000, "error: status 200: " + "x" * (1000 - len("status 200: ")) + "...\n"),
])
def test_an_error_message_of_the_servers_is_one_line_of_printable_text(tmp_path, message, says):
    """An error reply's message was printed as it came: its newlines made more lines, its
    terminal escapes reached the terminal, and it could be a frame (256 KiB) long."""
    error = lambda xid, args: rpc.REP_HEAD.pack(xid, 200) + message.encode()
    _get_fails(tmp_path, {rpc.LOOKUP: error}, says)


def test_a_server_that_stops_answering_is_given_up_on_after_the_timeout(tmp_path):
    """It was 30 s, fixed, and then 'error: timed out', which did not say who or how long."""
    with FakeServer() as server:
        server.answers[rpc.READ] = server.stall
        dest = tmp_path / "down"
        dest.mkdir()
        proc = client("--timeout", "1", server.address, "get", "f", str(dest / "f"))
        one_line_error(proc, "error: the server sent nothing for 1 s (--timeout)")
        assert list(dest.iterdir()) == []
        local = tmp_path / "up"
        local.write_bytes(b"up")
        server.answers[rpc.WRITE] = server.stall
        proc = client("--timeout", "1", server.address, "put", str(local), "f")
        one_line_error(proc, "error: the server sent nothing for 1 s (--timeout)")
        # The put's temporary file is removed over a new connection: the old one is out of step.
        assert server.requests[-3:] == [rpc.CREATE_TEMP, rpc.WRITE, rpc.REMOVE]


def _trickled(xid, args, honest=_read):
    return Trickle(honest(xid, args))


@pytest.mark.parametrize("command, answers", [
    (["get", "f"], {rpc.READ: _trickled}),
    (["cat", "f"], {rpc.LOOKUP: lambda xid, args: Trickle(ok(xid, rpc.FH.pack(2) + FILE.pack()))}),
    (["ls"], {rpc.READDIR: lambda xid, args: Trickle(
        ok(xid, rpc.pack_entries([("f", rpc.FT_FILE)], True, 1)))}),
    (["put", "LOCAL", "f"], {rpc.WRITE: lambda xid, args: Trickle(
        ok(xid, rpc.U32.pack(len(args) - rpc.WRITE_HEAD.size) + FILE.pack()))}),
], ids=["get", "cat", "ls", "put"])
def test_a_reply_trickled_a_byte_at_a_time_is_given_up_on_after_the_timeout(tmp_path, command,
                                                                            answers):
    """--timeout was per recv: a server sending one byte of its reply every 0.1 s (about 4 s
    for the whole of it) held get, ls and put for as long as it liked, each byte well within
    the timeout. The timeout now bounds each request, from its sending to its whole reply."""
    local = tmp_path / "up"
    local.write_bytes(b"12345")
    dest = tmp_path / "down"
    dest.mkdir()
    command = [str(local) if arg == "LOCAL" else arg for arg in command]
    if command[0] == "get":
        command.append(str(dest / "f"))
    proc_name = rpc.PROC_NAMES[next(iter(answers))]
    with FakeServer(answers) as server:
        proc = client("--timeout", "1", server.address, *command)
        assert not server.trickled.is_set()         # given up on before the reply was all sent
    one_line_error(proc, "error: the server sent only ")
    assert f" bytes of its reply to {proc_name} in 1 s (--timeout)\n" in proc.stderr
    assert proc.stdout == ""
    assert list(dest.iterdir()) == []
    if command[0] == "put":         # its temporary file removed over a new connection
        assert server.requests[-3:] == [rpc.CREATE_TEMP, rpc.WRITE, rpc.REMOVE]


def test_a_handshake_trickled_a_byte_at_a_time_is_given_up_on_after_the_timeout():
    """The connect and the handshake are bounded by the timeout together: a server trickling
    its hello (and READY) a byte every 0.1 s took 14 s to be trusted, or for ever."""
    with FakeServer(trickle_handshake=True) as server:
        proc = client("--timeout", "1", server.address, "ls")
        assert not server.trickled.is_set()
        assert server.requests == []
    one_line_error(proc, "error: the server sent only ")
    assert " bytes of its handshake in 1 s (--timeout)\n" in proc.stderr


def test_a_request_taken_in_a_little_at_a_time_is_given_up_on_after_the_timeout():
    """The timeout covers sending the request too: a server reading a 256 KiB WRITE 4 KiB every
    0.1 s let each sendmsg through within its timeout, and the write took 6 s or more."""
    with FakeServer(read_slowly=True) as server, Client(server.address, timeout=1) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        with pytest.raises(ServerTimeout, match=r"^the server took in only \d+ of the 262189 bytes "
                                                r"of the WRITE request in 1 s \(--timeout\)$"):
            c.write(3, 0, bytes(MAX_IO))
        assert server.requests == []            # not one whole frame arrived


def test_a_server_that_never_accepts_is_not_called_quiet_but_unanswered():
    """A connect that times out is no server answering at all, not one that went quiet: the
    client said 'the server sent nothing for N s' for both. A listener whose backlog is full
    drops further SYNs, so connecting to it times out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = "127.0.0.1:%d" % listener.getsockname()[1]
        queued = []
        try:
            for _ in range(8):      # fill the backlog (its size is the kernel's business)
                queued.append(socket.create_connection(listener.getsockname(), timeout=0.5))
        except TimeoutError:
            pass
        else:
            pytest.skip("this kernel accepted every connection into the backlog")
        try:
            with pytest.raises(ConnectionError, match=f"no server answered at {address} within 1 s"):
                Client(f"{address}:{'a' * 32}", timeout=1)
        finally:
            for sock in queued:
                sock.close()


@pytest.mark.parametrize("remote, local", [("sub/..", None), ("..", "."), ("sub/.", None), ("/", None)])
def test_get_of_a_name_that_is_no_file_name_writes_nothing_outside(tmp_path, remote, local):
    """`get sub/..` made its temporary file beside the current folder, outside it, and tried to
    rename it over the folder (a server that answers for '..' sent its data there too). Now it
    is refused before connecting; with LOCAL naming a file it is the server's to refuse."""
    here = tmp_path / "top" / "here"
    here.mkdir(parents=True)
    with FakeServer() as server:
        proc = client(server.address, "get", remote, *([local] if local else []), cwd=here)
        assert server.requests == []
        one_line_error(proc, f"error: {remote!r} ends in no file name to save under in ")
        assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
        proc = client(server.address, "get", remote, "named", cwd=here)
        assert proc.returncode == 0 and (here / "named").read_bytes() == b"0123456789"


# ---- the load generator

BIG = rpc.Attr(rpc.FT_FILE, 0o644, 4096, 0)
COUNTERS = {"reads": 0, "read_bytes": 0, "seal_s": 0, "send_s": 0, "cpu_s": 0, "busy_s": 0,
            "steals": 0, "loop_errors": 0, "colors": "off", "workers": 1, "layer_time_s": {}}


def _load_against(answers: dict, *args):
    """`loadgen` for 0.2 s against a fake server of a 4 KiB file whose READs and STATS are
    honest unless `answers` says otherwise."""
    honest_load = {
        rpc.GETATTR: lambda xid, args: ok(xid, BIG.pack()),
        rpc.READ: lambda xid, args: ok(xid, b"\0" + bytes(rpc.READ_ARGS.unpack(args)[2])),
        rpc.STATS: lambda xid, args: ok(xid, json.dumps(COUNTERS).encode()),
    }
    with FakeServer({**honest_load, **answers}) as server:
        return subprocess.run([sys.executable, "-m", "apps.sfs_like.loadgen", server.address,
                               "--path", "f", "--block", "1024", "--clients", "1", "--warmup", "0",
                               "--duration", "0.2", *args],
                              cwd=REPO, capture_output=True, text=True, timeout=60)


def test_the_load_generator_against_an_honest_fake_measures():
    proc = _load_against({})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["mb_per_s"] > 0


@pytest.mark.parametrize("answers, says", [
    ({rpc.READ: lambda xid, args: ok(xid + 1, b"\0" + bytes(1024))},
     "error: load failed after 0 READs had completed: reply for xid 4, expected 3"),
    ({rpc.READ: lambda xid, args: ok(xid, b"\0" + bytes(1000))},
     "error: load failed after 0 READs had completed: READ of 1024 bytes answered with 1000"),
    ({rpc.STATS: lambda xid, args: rpc.rep_error(xid, rpc.BADPROC, "no STATS here")},
     "READs had completed: BADPROC: no STATS here"),
    ({rpc.STATS: lambda xid, args: ok(xid, b"{}")},
     "error: the server's STATS reply lacks what the report is made of (KeyError: 'reads')"),
    ({rpc.STATS: lambda xid, args: ok(xid, b"[1]")}, "error: the server's STATS reply lacks"),
])
def test_the_load_generator_reports_a_broken_server_as_an_error(answers, says):
    """The decrypting clients counted any reply of the right length as file data (another
    xid's, a repeated one); a STATS error status or a STATS without the counters ended in a
    traceback after the measurement."""
    proc = _load_against(answers)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and says in proc.stderr, proc.stderr


def test_the_load_generator_prints_an_error_message_of_the_servers_on_one_line():
    proc = _load_against({rpc.LOOKUP: lambda xid, args: rpc.rep_error(xid, rpc.NOENT, "no\nfile")})
    assert proc.returncode == 1
    assert proc.stderr == ("python -m apps.sfs_like.loadgen: error: load client failed during "
                           "set-up: NOENT: no\\nfile\n")
