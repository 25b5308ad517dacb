"""Load generator: K clients, each reading one large cached file over and over in READs of one size.

Each client keeps `--depth` READs outstanding (pipelined) so the server always has work queued.
Throughput is the file data that arrived during the measured window, in MB/s (10^6 bytes).

Decrypting clients run one thread each (their crypto releases the GIL); no-decrypt clients all run
in one thread over epoll, which costs the CPUs they may share with the server least.

`--no-decrypt` (documented in README.md): the client reads every reply frame's length and checks it,
but neither verifies its MAC nor decrypts it: the kernel drops the body (recv with MSG_TRUNC, Linux
TCP) without copying it to the client. A benchmark client must cost less CPU than the server
it measures, and on a 2-CPU machine it shares the server's CPUs once the server uses both. Requests
are still sealed properly (the server verifies them). Once a reply is skipped, the client's inbound
keystream is behind, so a no-decrypt session cannot verify later replies either: it is a load
generator only, never a way to fetch data.

`--batch` runs the load generator under Linux's SCHED_BATCH policy, as the benchmark does. When it
shares the server's CPUs (2 CPUs measuring a 2-CPU server), a normal task is woken into a CPU ahead
of the server thread running there each time a reply arrives: on this 2-vCPU VM that made the
skimmer wake ~4000 times a second, cost it 25 µs of CPU per READ and preempted a server worker at
each wake-up. A batch task is not preempting; it runs when a server thread waits or its slice
ends, and then skims every reply that arrived meanwhile: 9 µs per READ, and colors-on on 2 CPUs
went from 1.56x to 1.78x colors-off on 1 CPU. Where the load generator has CPUs of its own it
changes nothing.

Output: one JSON object on stdout (and a readable line on stderr), including the server's own
counters over the window (from the STATS procedure).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import select
import socket
import sys
import threading
import time
from collections import deque

from . import rpc
from .client import Client, ProtocolError, one_line
from .framing import HEADER_SIZE, LENGTH, MAX_IO
from .suites import SUITES


class _Whole:
    """A whole number in lo..hi; `limit` says where the bounds come from."""

    def __init__(self, lo: int, hi: int, limit: str = "") -> None:
        self.lo, self.hi, self.limit = lo, hi, limit

    def check(self, value) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be a whole number {self.lo}..{self.hi}{self.limit}, not {value!r}")
        if not self.lo <= value <= self.hi:
            raise ValueError(f"must be {self.lo}..{self.hi}{self.limit}, not {value}")
        return value

    def parse(self, text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        return _for_argparse(self.check, n)


class _Seconds:
    """A number of seconds, finite and > 0 (or >= 0 when `positive` is False)."""

    def __init__(self, positive: bool) -> None:
        self.positive = positive
        self.bound = "positive" if positive else "at least 0"

    def check(self, value) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"must be a number of seconds, {self.bound} and finite, not {value!r}")
        try:
            x = float(value)
        except OverflowError:               # a JSON integer too big for a float
            x = math.inf
        if not (x > 0 if self.positive else x >= 0) or not math.isfinite(x):
            raise ValueError(f"must be {self.bound} and finite, not {x:g}")
        return x

    def parse(self, text: str) -> float:
        try:
            x = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        return _for_argparse(self.check, x)


class _OneOf:
    def __init__(self, choices: tuple) -> None:
        self.choices = choices

    def check(self, value) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}, not {value!r}")
        return value


class _FileName:
    """A file's path in the export: a string naming something (empty would be the export root)."""

    def check(self, value) -> str:
        if not isinstance(value, str):
            raise ValueError(f"must be a string, not {value!r}")
        if not value.strip("/"):
            raise ValueError(f"must name a file in the export, not {value!r} (the export root)")
        return value

    def parse(self, text: str) -> str:
        return _for_argparse(self.check, text)


class _Flag:
    def check(self, value) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, not {value!r}")
        return value


def _for_argparse(check, value):
    """Run a rule's check for argparse, whose usage error wants an ArgumentTypeError."""
    try:
        return check(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# The rules for run_load's settings, in one place: the command line's types use them, and so does
# every JSON line of `--serve` (which once ran whatever it was given: a negative duration
# "measured" for 0.4 ms, depth 0 waited 30 s for replies never asked for, block 0 divided by zero).
SETTINGS = {
    "suite": _OneOf(tuple(SUITES)),
    "path": _FileName(),
    "block": _Whole(1, MAX_IO, " (the server's READ limit, 256 KiB)"),
    "clients": _Whole(1, 1024, " (the server serves at most 1024)"),
    "depth": _Whole(1, rpc.MAX_OUTSTANDING, " (the server disconnects a client with more unanswered)"),
    "decrypt": _Flag(),
    "warmup": _Seconds(positive=False),
    "duration": _Seconds(positive=True),
}


def check_settings(settings: dict) -> dict:
    """Check run_load keyword settings against SETTINGS; a ValueError names the first bad one
    and what it may be."""
    for name, value in settings.items():
        if name not in SETTINGS:
            raise ValueError(f"unknown setting {name!r}; the settings are {', '.join(SETTINGS)}")
        try:
            SETTINGS[name].check(value)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return settings


def serve_one(address: str, defaults: dict, line: str) -> dict:
    """One `--serve` request: a JSON object of settings over `defaults`, checked as the command
    line checks them, then measured. Any failure is the reply's "error", so a driver sees it and
    the next line is served."""
    try:
        settings = json.loads(line)
    except ValueError as exc:
        return {"error": f"not a line of JSON: {exc}"}
    if not isinstance(settings, dict):
        return {"error": f"expected a JSON object of settings, e.g. {{\"block\": 8192}}, "
                         f"not {line.strip()!r}"}
    try:
        check_settings(settings)
    except ValueError as exc:
        return {"error": str(exc)}
    try:
        return run_load(address, **{**defaults, **settings})
    except Exception as exc:       # reported to the driver, which decides what to do
        return {"error": f"{type(exc).__name__}: {_describe(exc)}"}


def _open_file(client: Client, path: str, block: int) -> tuple[int, int]:
    """(file handle, the part of the file read over and over: whole READs only)."""
    fh = client.walk(path)
    attr = client.getattr(fh)
    if attr.type != rpc.FT_FILE:
        raise ValueError(f"{path} is not a regular file on the server")
    size = attr.size
    if size < block:
        raise ValueError(f"{path} has {size} bytes, less than one {block}-byte READ")
    return fh, size - size % block


class ReaderThread(threading.Thread):
    """One decrypting client: verifies and decrypts every reply (its crypto releases the GIL)."""

    def __init__(self, address: str, suite: str, path: str, block: int, depth: int,
                 ready: threading.Barrier, failed: threading.Event) -> None:
        super().__init__(daemon=True)
        self.address, self.suite, self.path = address, suite, path
        self.block, self.depth = block, depth
        self.ready, self.failed = ready, failed
        self.bytes = 0            # file data received so far (read by the main thread)
        self.replies = 0
        self.max_gap = 0.0        # longest time without a reply on this connection
        self.last_reply = time.perf_counter()
        self.stop = False
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with Client(self.address, self.suite, timeout=60) as client:
                fh, span = _open_file(client, self.path, self.block)
                self.ready.wait()
                self._loop(client, fh, span)
        except BaseException as exc:  # reported by the main thread
            _fail(self, exc)

    def _loop(self, client: Client, fh: int, span: int) -> None:
        """READs, `depth` at a time. Each reply must answer the oldest READ outstanding (replies
        come in request order) with all of its bytes: a reply to no READ of ours, repeated or
        of another length was counted as file data."""
        block, offset = self.block, 0
        xids = deque()              # of the READs outstanding, oldest first
        while True:
            while len(xids) < self.depth and not self.stop:
                xids.append(client.next_xid())
                client.send_request(rpc.req_read(xids[-1], fh, offset, block))
                offset = (offset + block) % span
            if not xids:
                return
            results = rpc.parse_reply(client.recv_reply(), xids.popleft())   # eof | data
            if len(results) != 1 + block:
                raise ProtocolError(f"READ of {block} bytes answered with {len(results) - 1}")
            now = time.perf_counter()
            self.max_gap = max(self.max_gap, now - self.last_reply)
            self.last_reply = now
            self.replies += 1
            self.bytes += block


def _fail(worker: threading.Thread, exc: BaseException) -> None:
    """Hand a load thread's failure to the main thread: free it from the start barrier, and end
    the measurement it may be waiting out."""
    worker.error = exc
    worker.failed.set()
    try:
        worker.ready.abort()
    except threading.BrokenBarrierError:
        pass


class _Skimmed:
    __slots__ = ("client", "sock", "offset", "outstanding", "remaining", "header")

    def __init__(self, client: Client) -> None:
        self.client, self.sock, self.offset, self.outstanding = client, client.sock, 0, 0
        self.remaining = 0              # body bytes of the current frame still to come
        self.header = bytearray()       # a length prefix split across two recvs


class Skimmer(threading.Thread):
    """All no-decrypt clients in one thread, written to cost the machine as little as we can,
    because on a small machine it shares the server's CPUs: one thread (no GIL hand-offs between
    client threads), epoll used directly, `SO_RCVLOWAT` of one whole reply (a socket is reported
    once a reply has arrived, not for every piece of it), the bodies dropped in the kernel, and the
    requests that replace the replies of one wake-up sealed and sent in one `sendmsg`."""

    def __init__(self, address: str, suite: str, path: str, block: int, clients: int, depth: int,
                 ready: threading.Barrier, failed: threading.Event) -> None:
        super().__init__(daemon=True)
        self.address, self.suite, self.path = address, suite, path
        self.block, self.clients, self.depth = block, clients, depth
        self.ready, self.failed = ready, failed
        self.bytes = 0
        self.replies = 0
        self.max_gap = 0.0        # longest time without any reply (reset by the main thread)
        self.last_reply = time.perf_counter()
        self.stop = False
        self.error: BaseException | None = None

    def run(self) -> None:
        conns = []
        try:
            for _ in range(self.clients):
                conns.append(_Skimmed(Client(self.address, self.suite, timeout=60)))
            fh, span = _open_file(conns[0].client, self.path, self.block)
            self.ready.wait()
            self._pump(conns, fh, span)
        except BaseException as exc:  # reported by the main thread
            _fail(self, exc)
        finally:
            for c in conns:
                c.client.close()

    def _request(self, c: _Skimmed, fh: int, span: int, count: int) -> None:
        """Seal `count` READ requests (each its own frame) and send them in one call."""
        client, block, seal = c.client, self.block, c.client.channel.send.seal
        wire = []
        for _ in range(count):
            wire += seal([rpc.req_read(client.next_xid(), fh, c.offset, block)])
            c.offset = (c.offset + block) % span
        if c.sock.sendmsg(wire) != sum(map(len, wire)):
            raise ProtocolError("requests did not fit the socket's send buffer")
        c.outstanding += count

    def _pump(self, conns: list, fh: int, span: int) -> None:
        expected = rpc.READ_REPLY_HEAD.size + self.block + SUITES[self.suite].overhead
        epoll = select.epoll()
        by_fd = {}
        for c in conns:
            c.sock.setblocking(False)
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, HEADER_SIZE + expected)
            by_fd[c.sock.fileno()] = c
            epoll.register(c.sock.fileno(), select.EPOLLIN)
            self._request(c, fh, span, self.depth)
        view = memoryview(bytearray(1 << 20))
        busy = len(conns)
        try:
            while busy:
                events = epoll.poll(1.0)
                if not events:
                    # SO_RCVLOWAT hides a reply shorter than a READ's (an error reply): look at
                    # every socket once a second, so a wrong reply is reported, not waited on.
                    events = [(fd, 0) for fd, c in by_fd.items() if c.outstanding]
                    if time.perf_counter() - self.last_reply > 30.0:
                        raise ProtocolError("no reply from the server for 30 s")
                for fd, _ in events:
                    c = by_fd[fd]
                    done = self._skim(c, view, expected)
                    if not done:
                        continue
                    now = time.perf_counter()
                    if now - self.last_reply > self.max_gap:
                        self.max_gap = now - self.last_reply
                    self.last_reply = now
                    c.outstanding -= done
                    self.replies += done
                    self.bytes += done * self.block
                    if not self.stop:
                        self._request(c, fh, span, done)
                    elif c.outstanding == 0:
                        epoll.unregister(fd)
                        busy -= 1
        finally:
            epoll.close()

    @staticmethod
    def _skim(c: _Skimmed, view: memoryview, expected: int) -> int:
        """Drop the whole replies that have arrived on c's socket; return how many."""
        sock, done = c.sock, 0
        while True:
            try:
                if c.remaining == 0:                        # at a length prefix
                    n = sock.recv_into(view, HEADER_SIZE - len(c.header))
                    if n == 0:
                        raise ProtocolError("server closed the connection between replies")
                    c.header += view[:n]
                    if len(c.header) < HEADER_SIZE:
                        return done
                    (length,) = LENGTH.unpack(c.header)
                    c.header.clear()
                    if length != expected:
                        raise ProtocolError(f"READ reply frame of {length} bytes, expected {expected}")
                    c.remaining = length
                # The body is dropped in the kernel (MSG_TRUNC on TCP), never copied to us.
                n = sock.recv_into(view, min(c.remaining, len(view)), socket.MSG_TRUNC)
            except BlockingIOError:
                return done
            if n == 0:
                raise ProtocolError("server closed the connection mid-reply")
            c.remaining -= n
            if c.remaining:
                return done                                  # the rest is still on its way
            done += 1
            if done == c.outstanding:
                return done                                  # nothing more can be in flight


def _describe(exc: BaseException) -> str:
    """An exception as one line: its message (the server's words, if it is an error reply: made
    printable), or its type when it has none (e.g. a bare OSError). The load generator talks to
    nobody but the server, so a reset is said to be the server's."""
    if isinstance(exc, ConnectionResetError):
        return "the server reset the connection"
    if isinstance(exc, BrokenPipeError):             # a request sent after the server went away
        return "the server closed the connection (a request could not be sent)"
    return one_line(str(exc)) or type(exc).__name__


def run_load(address: str, *, suite: str = "sfs2003", path: str = "big", block: int = 64 * 1024,
             clients: int = 4, depth: int = 2, decrypt: bool = False, warmup: float = 0.5,
             duration: float = 2.0) -> dict:
    """Drive the server and return throughput plus the server's counters over the measured window.
    The settings are checked first, as on the command line (ValueError naming the bad one)."""
    check_settings(dict(suite=suite, path=path, block=block, clients=clients, depth=depth,
                        decrypt=decrypt, warmup=warmup, duration=duration))
    failure = threading.Event()      # set by a load thread that fails
    if decrypt:
        ready = threading.Barrier(clients + 1)
        threads = [ReaderThread(address, suite, path, block, depth, ready, failure)
                   for _ in range(clients)]
    else:
        ready = threading.Barrier(2)
        threads = [Skimmer(address, suite, path, block, clients, depth, ready, failure)]
    for t in threads:
        t.start()
    try:
        ready.wait(timeout=60)
    except threading.BrokenBarrierError:
        pass
    failed = [t.error for t in threads if t.error is not None]
    if failed:
        raise RuntimeError(f"load client failed during set-up: {_describe(failed[0])}") from failed[0]
    lost = None                      # the control connection's failure, if it failed
    try:
        with Client(address, suite) as control:
            # The windows are measurement time, not synchronisation; a client that fails ends them.
            failure.wait(warmup)         # let caches and queues settle
            stats0, bytes0, t0 = control.stats(), sum(t.bytes for t in threads), time.perf_counter()
            for t in threads:
                t.max_gap, t.last_reply = 0.0, time.perf_counter()
            cpu0 = os.times()
            failure.wait(duration)       # the measured window
            stats1, bytes1, t1 = control.stats(), sum(t.bytes for t in threads), time.perf_counter()
            max_gap = max(max(t.max_gap, t1 - t.last_reply) for t in threads)
            cpu1 = os.times()
    except (ProtocolError, OSError, rpc.RpcError) as exc:
        # A server that goes away mid-run fails the load threads and then the control connection's
        # STATS; that one escaped as a traceback (as did an error status in reply to STATS).
        # Report it below, with the load threads' error.
        lost = exc
    for t in threads:
        t.stop = True
    for t in threads:
        t.join(timeout=30)
    failed = [t.error for t in threads if t.error is not None] + ([lost] if lost else [])
    if failed:
        raise RuntimeError(f"load failed after {sum(t.replies for t in threads)} READs had "
                           f"completed: {_describe(failed[0])}") from failed[0]
    try:    # the server's STATS go into the report unchecked: one it has not sent is its fault
        elapsed = t1 - t0
        reads = stats1["reads"] - stats0["reads"]
        per_read = (lambda key: (stats1[key] - stats0[key]) / reads if reads else float("nan"))
        return {
            "suite": suite, "block": block, "clients": clients, "depth": depth, "client_decrypts": decrypt,
            "client_sched": "batch" if os.sched_getscheduler(0) == os.SCHED_BATCH else "normal",
            "seconds": elapsed,
            "mb_per_s": (bytes1 - bytes0) / elapsed / 1e6,
            "max_gap_ms": 1e3 * max_gap,
            "server_reads": reads,
            "server_mb_per_s": (stats1["read_bytes"] - stats0["read_bytes"]) / elapsed / 1e6,
            "crypto_s_per_read": per_read("seal_s"),
            "send_s_per_read": per_read("send_s"),
            "server_cpu_s_per_read": per_read("cpu_s"),
            "server_busy_s_per_read": per_read("busy_s"),
            "server_cpu_util": (stats1["cpu_s"] - stats0["cpu_s"]) / elapsed,
            "client_cpu_util": ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / elapsed,
            "server_colors": stats1["colors"], "server_workers": stats1["workers"],
            "server_steals": stats1["steals"] - stats0["steals"],
            "server_loop_errors": stats1["loop_errors"],
            "server_layers": {layer: {"callbacks": v[0] - stats0["layer_time_s"].get(layer, [0, 0, 0])[0],
                                      "busy_s": v[1] - stats0["layer_time_s"].get(layer, [0, 0, 0])[1],
                                      "queue_wait_s": v[2] - stats0["layer_time_s"].get(layer, [0, 0, 0])[2]}
                              for layer, v in stats1["layer_time_s"].items()},
        }
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise RuntimeError(f"the server's STATS reply lacks what the report is made of "
                           f"({type(exc).__name__}: {exc})") from None


def _cpu_set(p: argparse.ArgumentParser, text: str) -> set[int]:
    """--cpus as a set, checked against the CPUs this process may use (a usage error, not an
    OSError traceback from sched_setaffinity)."""
    if not text:
        return set()
    try:
        cpus = {int(c) for c in text.split(",")}
    except ValueError:
        p.error(f"--cpus {text!r}: expected comma-separated CPU numbers, e.g. 0,1")
    allowed = os.sched_getaffinity(0)
    if not cpus <= allowed:
        p.error(f"--cpus {text}: this process may only use CPUs {sorted(allowed)}")
    return cpus


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m apps.sfs_like.loadgen", description=__doc__.split("\n")[0])
    p.add_argument("server", help="HOST:PORT:FINGERPRINT")
    p.add_argument("--suite", default="sfs2003", choices=SETTINGS["suite"].choices)
    p.add_argument("--path", type=SETTINGS["path"].parse, default="big",
                   help="file to read, relative to the export")
    p.add_argument("--block", type=SETTINGS["block"].parse, default=64 * 1024, help="READ size in bytes")
    p.add_argument("--clients", type=SETTINGS["clients"].parse, default=4)
    p.add_argument("--depth", type=SETTINGS["depth"].parse, default=2,
                   help="READs each client keeps outstanding")
    p.add_argument("--no-decrypt", action="store_true",
                   help="skip MAC check and decryption of replies (cheaper client; see module doc)")
    p.add_argument("--warmup", type=SETTINGS["warmup"].parse, default=0.5)
    p.add_argument("--duration", type=SETTINGS["duration"].parse, default=2.0)
    p.add_argument("--cpus", default="", help="comma-separated CPUs for this process")
    p.add_argument("--batch", action="store_true",
                   help="run under the SCHED_BATCH policy: no wake-up preemption of the server "
                        "when sharing its CPUs (see module doc)")
    p.add_argument("--serve", action="store_true",
                   help="stay up and run one measurement per JSON line on stdin (keyword arguments "
                        "of run_load, e.g. {\"block\": 8192}, checked as on the command line), "
                        "answering one JSON line each ({\"error\": ...} for a bad one): lets a "
                        "benchmark interleave many short trials without process start-up in them")
    args = p.parse_args(argv)
    cpus = _cpu_set(p, args.cpus)
    if cpus:
        os.sched_setaffinity(0, cpus)
    if args.batch:          # before any thread starts: threads inherit the policy
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    defaults = dict(suite=args.suite, path=args.path, block=args.block, clients=args.clients,
                    depth=args.depth, decrypt=not args.no_decrypt, warmup=args.warmup,
                    duration=args.duration)
    if args.serve:
        for line in sys.stdin:
            if line.strip():
                print(json.dumps(serve_one(args.server, defaults, line)), flush=True)
        return 0
    try:
        result = run_load(args.server, **defaults)
    except (RuntimeError, OSError, ValueError) as exc:   # e.g. no such --path on the server
        raise SystemExit(f"python -m apps.sfs_like.loadgen: error: {exc}") from None
    print(json.dumps(result))
    print(f"{result['mb_per_s']:.1f} MB/s ({args.clients} clients, {args.block // 1024} KiB READs, "
          f"{'decrypting' if not args.no_decrypt else 'not decrypting'}), server "
          f"{result['server_cpu_util']:.2f} CPUs busy", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
