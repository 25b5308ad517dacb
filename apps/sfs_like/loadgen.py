"""Load generator: K clients, each reading one large cached file over and over in READs of one size.

Each client keeps `--depth` READs outstanding (pipelined) so the server always has work queued.
Throughput is the file data that arrived during the measured window, in MB/s (10^6 bytes).

`--no-decrypt` (documented in README.md): the client reads every reply frame and checks its length,
but neither verifies its MAC nor decrypts it. A benchmark client must cost less CPU than the server
it measures, and on a 2-CPU machine it shares the server's CPUs once the server uses both. Requests
are still sealed properly (the server verifies them). Once a reply is skipped, the client's inbound
keystream is behind, so a no-decrypt session cannot verify later replies either: it is a load
generator only, never a way to fetch data.

Output: one JSON object on stdout (and a readable line on stderr), including the server's own
counters over the window (from the STATS procedure).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

from . import rpc
from .client import Client, ProtocolError, recv_exact
from .framing import HEADER_SIZE, LENGTH
from .suites import SUITES


class ReaderThread(threading.Thread):
    def __init__(self, address: str, suite: str, path: str, block: int, depth: int, decrypt: bool,
                 ready: threading.Barrier) -> None:
        super().__init__(daemon=True)
        self.address, self.suite, self.path = address, suite, path
        self.block, self.depth, self.decrypt = block, depth, decrypt
        self.ready = ready
        self.bytes = 0            # file data received so far (read by the main thread)
        self.replies = 0
        self.stop = False
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with Client(self.address, self.suite, timeout=60) as client:
                fh = client.walk(self.path)
                size = client.getattr(fh).size
                if size < self.block:
                    raise ValueError(f"{self.path} has {size} bytes, less than one {self.block}-byte READ")
                self.ready.wait()
                self._loop(client, fh, size - size % self.block)
        except BaseException as exc:  # reported by the main thread
            self.error = exc
            try:
                self.ready.abort()
            except threading.BrokenBarrierError:
                pass

    def _loop(self, client: Client, fh: int, span: int) -> None:
        block, offset = self.block, 0
        overhead = SUITES[self.suite].overhead
        expected = rpc.READ_REPLY_HEAD.size + block + overhead
        sink = bytearray(expected)
        view = memoryview(sink)
        outstanding = 0
        while True:
            while outstanding < self.depth and not self.stop:
                xid = client.next_xid()
                client.send_request(rpc.req_read(xid, fh, offset, block))
                offset = (offset + block) % span
                outstanding += 1
            if outstanding == 0:
                return
            if self.decrypt:
                reply = client.recv_reply()
                if len(reply) != rpc.READ_REPLY_HEAD.size + block or reply[4] != rpc.OK:
                    raise ProtocolError(f"unexpected READ reply of {len(reply)} bytes, status {reply[4]}")
            else:
                (length,) = LENGTH.unpack(recv_exact(client.sock, HEADER_SIZE))
                if length != expected:
                    raise ProtocolError(f"READ reply frame of {length} bytes, expected {expected}")
                got = 0
                while got < length:
                    n = client.sock.recv_into(view[got:], length - got)
                    if n == 0:
                        raise ProtocolError("server closed the connection mid-reply")
                    got += n
            outstanding -= 1
            self.replies += 1
            self.bytes += block


def run_load(address: str, *, suite: str = "sfs2003", path: str = "big", block: int = 64 * 1024,
             clients: int = 4, depth: int = 2, decrypt: bool = False, warmup: float = 0.5,
             duration: float = 2.0) -> dict:
    """Drive the server and return throughput plus the server's counters over the measured window."""
    ready = threading.Barrier(clients + 1)
    threads = [ReaderThread(address, suite, path, block, depth, decrypt, ready) for _ in range(clients)]
    for t in threads:
        t.start()
    try:
        ready.wait(timeout=60)
    except threading.BrokenBarrierError:
        pass
    failed = [t.error for t in threads if t.error is not None]
    if failed:
        raise RuntimeError(f"load client failed during set-up: {failed[0]!r}") from failed[0]
    with Client(address, suite) as control:
        time.sleep(warmup)          # a measurement window, not synchronisation: let caches and queues settle
        stats0, bytes0, t0 = control.stats(), sum(t.bytes for t in threads), time.perf_counter()
        cpu0 = os.times()
        time.sleep(duration)        # the measured window
        stats1, bytes1, t1 = control.stats(), sum(t.bytes for t in threads), time.perf_counter()
        cpu1 = os.times()
    for t in threads:
        t.stop = True
    for t in threads:
        t.join(timeout=30)
    failed = [t.error for t in threads if t.error is not None]
    if failed:
        raise RuntimeError(f"load client failed: {failed[0]!r}") from failed[0]
    elapsed = t1 - t0
    reads = stats1["reads"] - stats0["reads"]
    per_read = (lambda key: (stats1[key] - stats0[key]) / reads if reads else float("nan"))
    return {
        "suite": suite, "block": block, "clients": clients, "depth": depth, "client_decrypts": decrypt,
        "seconds": elapsed,
        "mb_per_s": (bytes1 - bytes0) / elapsed / 1e6,
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m apps.sfs_like.loadgen", description=__doc__.split("\n")[0])
    p.add_argument("server", help="HOST:PORT:FINGERPRINT")
    p.add_argument("--suite", default="sfs2003", choices=tuple(SUITES))
    p.add_argument("--path", default="big", help="file to read, relative to the export")
    p.add_argument("--block", type=int, default=64 * 1024, help="READ size in bytes")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--depth", type=int, default=2, help="READs each client keeps outstanding")
    p.add_argument("--no-decrypt", action="store_true",
                   help="skip MAC check and decryption of replies (cheaper client; see module doc)")
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--duration", type=float, default=2.0)
    p.add_argument("--cpus", default="", help="comma-separated CPUs for this process")
    p.add_argument("--serve", action="store_true",
                   help="stay up and run one measurement per JSON line on stdin (keyword arguments "
                        "of run_load, e.g. {\"block\": 8192}), answering one JSON line each: lets a "
                        "benchmark interleave many short trials without process start-up in them")
    args = p.parse_args(argv)
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    defaults = dict(suite=args.suite, path=args.path, block=args.block, clients=args.clients,
                    depth=args.depth, decrypt=not args.no_decrypt, warmup=args.warmup,
                    duration=args.duration)
    if args.serve:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                result = run_load(args.server, **{**defaults, **json.loads(line)})
            except Exception as exc:       # reported to the driver, which decides what to do
                result = {"error": repr(exc)}
            print(json.dumps(result), flush=True)
        return 0
    result = run_load(args.server, **defaults)
    print(json.dumps(result))
    print(f"{result['mb_per_s']:.1f} MB/s ({args.clients} clients, {args.block // 1024} KiB READs, "
          f"{'decrypting' if not args.no_decrypt else 'not decrypting'}), server "
          f"{result['server_cpu_util']:.2f} CPUs busy", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
