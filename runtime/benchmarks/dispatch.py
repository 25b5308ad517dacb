"""Cost of one callback: colorloop against asyncio, measured side by side in one process.

Two paths: `same_thread` (a callback schedules N no-op callbacks on the default color; asyncio's
`call_soon`) and `cross_thread` (another thread schedules them; asyncio's `call_soon_threadsafe`).
The figure of merit is ns per callback, from scheduling the first to running the last. Goal of the
runtime issue: the default color on one worker within 2x of asyncio's call_soon.
"""
from __future__ import annotations

import asyncio
import statistics
import threading
import time

import runtime
from experiments.common import python_label

from ._harness import main, progress


def _measure(loop, call_soon, run, n: int, cross_thread: bool) -> float:
    """Seconds from scheduling the first of n no-op callbacks to running the last.

    `call_soon` schedules them: from a callback on the loop (same thread) or from a plain thread.
    """
    left = [n]
    started = [0.0]

    def noop():
        left[0] -= 1
        if left[0] == 0:
            loop.stop()

    def burst():
        for _ in range(n):
            call_soon(noop)

    if cross_thread:
        started[0] = time.perf_counter()
        thread = threading.Thread(target=burst)
        thread.start()
        run()
        thread.join()
    else:
        def timed_burst():
            started[0] = time.perf_counter()
            burst()
        loop.call_soon(timed_burst)
        run()
    return time.perf_counter() - started[0]


def colorloop_case(cross_thread: bool):
    def measure(n: int) -> float:
        with runtime.Loop(workers=1) as loop:
            return _measure(loop, loop.call_soon, loop.run, n, cross_thread)
    return measure


def asyncio_case(cross_thread: bool):
    def measure(n: int) -> float:
        loop = asyncio.new_event_loop()
        try:
            call_soon = loop.call_soon_threadsafe if cross_thread else loop.call_soon
            return _measure(loop, call_soon, loop.run_forever, n, cross_thread)
        finally:
            loop.close()
    return measure


CASES = [
    ("colorloop", "same_thread", colorloop_case(cross_thread=False)),
    ("asyncio", "same_thread", asyncio_case(cross_thread=False)),
    ("colorloop", "cross_thread", colorloop_case(cross_thread=True)),
    ("asyncio", "cross_thread", asyncio_case(cross_thread=True)),
]


def run_benchmark(quick: bool = False) -> list[dict]:
    n = 50_000 if quick else 200_000
    trials = 3 if quick else 7
    rows = []
    bar = progress(trials * len(CASES), "dispatch")
    for trial in range(trials):
        for impl, path, fn in CASES:       # interleaved: every case sees the same machine noise
            elapsed = fn(n)
            rows.append({"python": python_label(), "impl": impl, "path": path, "callbacks": n,
                         "trial": trial, "ns_per_callback": elapsed / n * 1e9})
            bar.update()
    bar.close()
    _add_ratios(rows)
    return rows


def _add_ratios(rows: list[dict]) -> None:
    """ratio_to_asyncio: ours over asyncio's on the same path, trial by trial (each pair ran back
    to back, so machine noise mostly cancels), then the median over trials. Lower is better."""
    by_key = {(r["impl"], r["path"], r["trial"]): r["ns_per_callback"] for r in rows}
    ratios = {}
    for (impl, path, trial), ns in by_key.items():
        ratios.setdefault((impl, path), []).append(ns / by_key["asyncio", path, trial])
    for r in rows:
        r["ratio_to_asyncio"] = statistics.median(ratios[r["impl"], r["path"]])


if __name__ == "__main__":
    main("runtime_dispatch", run_benchmark,
         ["impl", "path", "trial", "ns_per_callback", "ratio_to_asyncio"])
