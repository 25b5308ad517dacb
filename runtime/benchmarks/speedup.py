"""Throughput with 1..N workers for work that releases the GIL, with distinct colors and one color.

Each operation is one callback over a 64 KiB buffer: `sha256` (hashlib), `chacha20poly1305`
(cryptography's AEAD; absent on free-threaded 3.13t, which has no cryptography build),
`chacha20poly1305_256k` (the same over 256 KiB) and
`purepython` (an interpreter-bound loop that holds the GIL on CPython 3.11, so it shows the GIL's
cost there and the free-threaded build's gain). With distinct colors the operations may run in
parallel; with a single color they must stay serial, whatever the worker count (speedup ~1x).

Each color gets its own cipher object, as each SFS connection has its own keys: one cryptography
AEAD object shared by two threads serialises them (measured: 0.92x on 2 threads, against 1.5-1.8x
with one object per thread), so sharing one would hide the parallelism under a lock.

Why two ChaCha20-Poly1305 sizes: a 64 KiB AEAD call lasts only about 18 us here, less than it
takes to wake a thread sleeping for the GIL on another CPU (about 12 us of the waker's time and
20-45 us until the sleeper runs, measured by experiments/gil_handoff.py on this VM), so two
workers gain little (1.1-1.3x), while over 256 KiB (about 65 us) they gain 1.8x, as sha256 does
over 64 KiB (about 35 us). The runtime adds about 2.4 us of GIL-held work per
callback; replacing its bookkeeping with a bare call changed the 2-worker ratio by under 0.1x.
Two more things hold the 64 KiB case back (measured 2026-11-27; the model has the second,
measured by experiments.gil_split, not the first): with two
workers on two CPUs the runtime's GIL-held work between one call and the next grows from 1.3-1.8
us (median, one worker) to 3.8-4.4 us, more than the 1.5 us a bare loop loses per GIL hand-off,
since the scheduler's shared state must cross caches too (tools/diagnostics/callback_gaps.py); and
`encrypt` allocates and zero-fills its 64 KiB output holding the GIL: two bare threads with 3 us of
Python per call make 1.20-1.47x with `encrypt`, 1.40-1.64x with `encrypt_into` a buffer of their
own, in six runs (tools/diagnostics/aead_gil.py).

For the model (experiments/), each row also carries the per-operation time spent inside the
GIL-releasing call (`gil_free_s_per_op`, measured alone on one thread) and the rest of a callback's
cost at one worker (`gil_held_s_per_op`: dispatch, Python glue).
"""
from __future__ import annotations

import hashlib
import os
import statistics
import threading
import time

import runtime
from experiments.common import cpu_counts, gil_enabled, python_label

from ._harness import main, progress

BUFFER = os.urandom(64 * 1024)


def _sha256():
    return lambda: hashlib.sha256(BUFFER).digest()


def _chacha(buffer=BUFFER):
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    aead = ChaCha20Poly1305(ChaCha20Poly1305.generate_key())
    nonce = os.urandom(12)
    return lambda: aead.encrypt(nonce, buffer, None)


BIG_BUFFER = os.urandom(256 * 1024)


def _chacha_256k():
    return _chacha(BIG_BUFFER)


def _purepython():
    def spin():
        total = 0
        for i in range(20_000):
            total += i * i % 7
        return total
    return spin


WORKLOADS = {"sha256": _sha256, "chacha20poly1305": _chacha,
             "chacha20poly1305_256k": _chacha_256k, "purepython": _purepython}


def available_workloads() -> list[str]:
    names = ["sha256", "purepython"]
    try:
        import cryptography  # noqa: F401
        names[1:1] = ["chacha20poly1305", "chacha20poly1305_256k"]
    except ImportError:
        pass
    return names


def time_per_op(op, seconds: float = 0.2) -> float:
    """Mean time of op() alone on this thread: the GIL-free part for the GIL-releasing workloads."""
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        op()
        n += 1
    return (time.perf_counter() - started) / n


def throughput(make_op, ops: int, workers: int, colors: str) -> float:
    """Operations per second when `ops` callbacks run on `workers` pinned workers; each color
    has its own op from `make_op()`.

    Each color counts its own callbacks down (one color's callbacks never overlap, so its counter
    needs no lock) and only a color's last callback touches the shared count of colors left. A
    shared counter under a lock in every callback made both workers pull that lock and counter
    across CPUs on every call: 2-worker ChaCha20-Poly1305 over 64 KiB read 1.16x that way against
    1.27x now, side by side (sha256: 1.73x and 1.77x)."""
    if ops < 1:
        raise ValueError(f"ops must be at least 1, not {ops}")
    ncolors = 4 * workers if colors == "distinct" else 1
    per_color = [make_op() for _ in range(ncolors)]
    left = [len(range(c, ops, ncolors)) for c in range(ncolors)]
    colors_left = [sum(1 for n in left if n)]
    lock = threading.Lock()
    done = threading.Event()

    def one(c):
        per_color[c]()
        left[c] -= 1
        if left[c] == 0:
            with lock:
                colors_left[0] -= 1
                if colors_left[0] == 0:
                    done.set()

    with runtime.Loop(workers=workers, pin=True) as loop:
        def start():
            started[0] = time.perf_counter()
            for i in range(ops):
                loop.call_soon(one, i % ncolors, color=i % ncolors + 1)
        started = [0.0]
        loop.call_soon(start)
        stopper = threading.Thread(target=lambda: (done.wait(), loop.stop()))
        stopper.start()
        loop.run()
        stopper.join()
        return ops / (time.perf_counter() - started[0])


def run_benchmark(quick: bool = False, workloads=None) -> list[dict]:
    workloads = workloads or available_workloads()
    trials = 2 if quick else 5
    target_s = 0.15 if quick else 0.4            # length of one measurement at one worker
    counts = cpu_counts()
    configs = [(w, c) for w in counts for c in ("distinct", "single")]
    rows = []
    bar = progress(len(workloads) * trials * len(configs), "speedup")
    for name in workloads:
        make_op = WORKLOADS[name]
        per_op = time_per_op(make_op())
        ops = max(50, int(target_s / per_op))
        at_one = throughput(make_op, ops, 1, "single")  # warm-up, and the GIL-held share
        gil_free = 0.0 if name == "purepython" else per_op
        gil_held = max(0.0, 1 / at_one - gil_free)
        for trial in range(trials):
            for workers, colors in configs:
                rate = throughput(make_op, ops, workers, colors)
                rows.append({"python": python_label(), "gil": gil_enabled(), "workload": name,
                             "colors": colors, "workers": workers, "trial": trial,
                             "ops_per_s": rate, "gil_free_s_per_op": gil_free,
                             "gil_held_s_per_op": gil_held})
                bar.update()
    bar.close()
    _add_speedups(rows)
    return rows


def _add_speedups(rows: list[dict]) -> None:
    """speedup: over the median of the same workload and colors on one worker."""
    base = {}
    for r in rows:
        if r["workers"] == 1:
            base.setdefault((r["workload"], r["colors"]), []).append(r["ops_per_s"])
    for r in rows:
        r["speedup"] = r["ops_per_s"] / statistics.median(base[r["workload"], r["colors"]])


if __name__ == "__main__":
    main("runtime_speedup", run_benchmark,
         ["python", "workload", "colors", "workers", "trial", "ops_per_s", "speedup"])
