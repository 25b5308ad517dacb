"""How much GIL-held work the runtime does between two GIL-releasing calls, on 1 worker and on 2.

Runs the runtime speedup benchmark's callbacks (runtime/benchmarks/speedup.py: 4 colors per
worker, a 64 KiB ChaCha20-Poly1305 `encrypt` by default) and timestamps each call on its worker.
The gap between one call's return and the next call's start on the same worker is the runtime's
own GIL-held work (dispatch, bookkeeping) plus any wait for the GIL. On this 2-vCPU VM
(2026-11-27) its median grew from 1.3-1.8 us on one worker to 3.8-4.4 us on two, against the
1.5 us a bare loop loses per GIL hand-off (experiments.gil_handoff, `switch` rows): the
scheduler's shared state crosses caches too. Not part of `make reproduce`.

    .venv/bin/python tools/diagnostics/callback_gaps.py [--workload sha256] [--seconds 0.3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runtime.benchmarks import speedup  # noqa: E402


def traced_run(make_op, ops: int, workers: int) -> tuple[float, dict]:
    """The benchmark's own run (speedup.throughput), with every call timestamped: ops/s, and per
    worker thread the (start, end) of each call, in order."""
    spans: dict = {}
    clock = time.perf_counter

    def make_traced_op():
        op = make_op()

        def traced():
            started = clock()
            op()
            spans.setdefault(threading.get_ident(), []).append((started, clock()))
        return traced

    return speedup.throughput(make_traced_op, ops, workers, "distinct"), spans


def quantile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[int(q * (len(values) - 1))]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workload", default="chacha20poly1305", choices=sorted(speedup.WORKLOADS))
    p.add_argument("--seconds", type=float, default=0.3, help="length of one run on one worker")
    args = p.parse_args(argv)
    make_op = speedup.WORKLOADS[args.workload]
    ops = max(50, int(args.seconds / speedup.time_per_op(make_op())))
    for workers in (1, 2):
        rate, spans = traced_run(make_op, ops, workers)
        print(f"{args.workload}, {workers} worker(s): {rate:,.0f} calls/s")
        for calls in spans.values():
            calls = calls[len(calls) // 4:]          # after the loop thread has queued them all
            if len(calls) < 2:
                continue
            gaps = [b[0] - a[1] for a, b in zip(calls, calls[1:])]
            lengths = [end - start for start, end in calls]
            print(f"  a worker, {len(calls)} calls: gap between calls median {statistics.median(gaps) * 1e6:.1f} us"
                  f" (p90 {quantile(gaps, 0.9) * 1e6:.1f}); call median {statistics.median(lengths) * 1e6:.1f} us"
                  f" (p90 {quantile(lengths, 0.9) * 1e6:.1f}: a call that had to wait for the GIL at its end)")


if __name__ == "__main__":
    main()
