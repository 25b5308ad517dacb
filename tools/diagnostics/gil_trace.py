"""How the GIL really changes hands in experiments.gil_handoff's two looping threads.

Each thread loops `--spin` iterations of an empty Python loop (h) and a sha256 over `--kib` KiB
(f, the GIL released), timestamping both ends of each part; one thread alone, then two pinned to
two CPUs. From the timestamps: the rate ratio (as gil_handoff measures it), how often the GIL
changes threads per operation, how long the GIL-free part really takes (alone it is f; with two
threads it also holds the release's wake-up of a sleeping thread and the wait to take the GIL
back), and, when the GIL does change threads, how long after the other thread's last release.

What it showed here (2026-11-27, 2-vCPU VM, eight runs with h = 7 µs and f = 9 µs, six with
f = 17 µs), at the two points where the model misses most (artifact/README.md, A.5):
* `--spin 800 --kib 16`: 0.78-0.87x. The GIL changed threads on 5-16% of operations, and 65-82%
  of GIL-free parts took no longer than alone (+3 µs): one thread runs several operations in a
  row, most of its releases costing it nothing extra. The model: 0.59x, as in it nearly every
  release pays for waking the other thread.
* `--spin 800 --kib 32`: 0.85-1.11x, and the runs split into two modes: in four the threads
  alternated (0.68-0.82 changes per operation; a GIL-free part took 31-40 µs at the median against
  17-19 alone, as each hand-off waits for a wake-up), in two one thread mostly ran (0.34-0.38
  changes; the median GIL-free part as alone). The model: 1.42x.
Which mode a run falls into is the knife edge the model cannot predict from the wake-up costs
measured apart.
Not part of `make reproduce`.

    .venv/bin/python tools/diagnostics/gil_trace.py [--spin 800] [--kib 16] [--ops 20000]
"""
from __future__ import annotations

import argparse
import bisect
import hashlib
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from experiments import common  # noqa: E402

QUANTILES = (5, 25, 50, 75, 95)


def trace(spin: int, kib: int, ops: int, cpus: list[int]) -> list[list[tuple[float, float, float]]]:
    """Per thread (one per CPU in `cpus`), (start, end of Python work, end of sha256) per op."""
    buf = os.urandom(kib * 1024)
    clock = time.perf_counter
    traces: list[list] = [[] for _ in cpus]
    start = threading.Barrier(len(cpus))

    def body(i: int) -> None:
        os.sched_setaffinity(0, {cpus[i]})
        append = traces[i].append
        start.wait()
        for _ in range(ops):
            t0 = clock()
            for _ in range(spin):
                pass
            t1 = clock()
            hashlib.sha256(buf).digest()
            append((t0, t1, clock()))

    threads = [threading.Thread(target=body, args=(i,)) for i in range(len(cpus))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return traces


def steady(traces) -> tuple[list[list], float, float]:
    """The ops inside the window where every thread is past its first and before its last 10%."""
    lo = max(tr[len(tr) // 10][0] for tr in traces)
    hi = min(tr[-(len(tr) // 10) - 1][2] for tr in traces)
    return [[op for op in tr if lo <= op[0] and op[2] <= hi] for tr in traces], lo, hi


def quantiles_us(values: list[float]) -> str:
    values = sorted(values)
    picks = [values[round(q / 100 * (len(values) - 1))] * 1e6 for q in QUANTILES]
    return " ".join(f"{v:.1f}" for v in picks)


def summarize(spin: int, kib: int, ops: int, cpus: list[int]) -> list[str]:
    alone, lo, hi = steady(trace(spin, kib, ops, cpus[:1]))
    rate_1 = len(alone[0]) / (hi - lo)
    free_alone = statistics.median(op[2] - op[1] for op in alone[0])
    both, lo, hi = steady(trace(spin, kib, ops, cpus[:2]))
    rate_2 = sum(len(tr) for tr in both) / (hi - lo)
    # The GIL changed threads when the thread that takes it back after its sha256 differs from the
    # one that took it last.
    takes = sorted((op[2], i) for i, tr in enumerate(both) for op in tr)
    changes = sum(1 for a, b in zip(takes, takes[1:]) if a[1] != b[1])
    frees = [op[2] - op[1] for tr in both for op in tr]
    cheap = sum(1 for f in frees if f <= free_alone + 3e-6) / len(frees)
    since_release = []
    for i, tr in enumerate(both):
        releases = [op[1] for op in both[1 - i]]
        for op in tr:
            # the other thread released and took the GIL back inside this sha256: it ran meanwhile
            k = bisect.bisect_left(releases, op[1])
            if k < len(releases) and releases[k] < op[2]:
                last = bisect.bisect_left(releases, op[2]) - 1
                since_release.append(op[2] - releases[last])
    lines = [
        f"h = {spin} loop iterations, f = sha256 over {kib} KiB: 2 threads vs 1 {rate_2 / rate_1:.2f}x "
        f"({rate_2:.0f} vs {rate_1:.0f} ops/s)",
        f"  GIL changes threads on {changes / len(takes):.2f} of operations",
        f"  GIL-free part alone: median {free_alone * 1e6:.1f} us; with two threads p5/25/50/75/95 "
        f"{quantiles_us(frees)} us; {cheap:.0%} no longer than alone + 3 us",
    ]
    if len(since_release) >= 2:
        lines.append(f"  a thread got the GIL back after the other ran: {quantiles_us(since_release)} us "
                     f"(p5/25/50/75/95) after the other's last release")
    return lines


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spin", type=int, default=800, help="empty-loop iterations per op (800: about 7 us)")
    p.add_argument("--kib", type=int, default=16, help="sha256 input per op (16: about 9 us)")
    p.add_argument("--ops", type=int, default=20000, help="ops per thread")
    args = p.parse_args(argv)
    if args.ops < 50:
        raise SystemExit("--ops must be at least 50")
    cpus = common.allowed_cpus()
    if len(cpus) < 2:
        raise SystemExit(f"gil_trace needs 2 CPUs; this process may use only {cpus}")
    print("\n".join(summarize(args.spin, args.kib, args.ops, cpus)))


if __name__ == "__main__":
    main()
