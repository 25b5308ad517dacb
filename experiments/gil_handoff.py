"""Model input: what it costs to hand the GIL to a thread on another CPU.

Threads that alternate short interpreter work with GIL-releasing calls (a colored server's
workers) pass the GIL back and forth at every call; each pass wakes a thread on another core,
whose caches are cold. A lock that cost nothing to pass would give 2 threads up to
min(2 / (h + f), 1 / h) iterations per second; what they really reach tells the pass's cost.

We measure, on pinned threads: h (a pure-Python loop alone), f (sha256 over 16 KiB alone, GIL
released), one thread doing both, and two threads doing both on two CPUs. The switch cost is the
value that makes the discrete-event model (experiments.model, with one global lock) reproduce the
two-thread rate, found by bisection per trial. It is not a constant: it grows with the time the
waiting thread's CPU sat idle (deeper idle states, and on a virtual machine a halted vCPU to wake),
so it is measured at three lengths of interpreter work and interpolated by `switch_cost(held_s)`
for each application, unchanged by anything measured on the applications.

    python -m experiments.gil_handoff          (make fig-gil; writes artifact/results/gil_handoff.csv)
"""
from __future__ import annotations

import hashlib
import os
import threading
import time

from experiments import common

NAME = "gil_handoff"
BUF = os.urandom(16 * 1024)
SPINS = (400, 1500, 4000)       # loop iterations: about 3, 15 and 60 µs of interpreter work
_spin = [SPINS[0]]


def _held() -> None:
    for _ in range(_spin[0]):
        pass


def _free() -> None:
    hashlib.sha256(BUF).digest()


def _both() -> None:
    _held()
    _free()


def rate(work, threads: int, cpus: list[int], seconds: float) -> float:
    """Iterations per second of `work`, summed over `threads` threads pinned one per CPU."""
    counts = [0] * threads
    stop = threading.Event()
    start = threading.Barrier(threads + 1)

    def body(i: int) -> None:
        os.sched_setaffinity(0, {cpus[i % len(cpus)]})      # this thread only (Linux)
        start.wait()
        n = 0
        while not stop.is_set():
            for _ in range(16):
                work()
            n += 16
        counts[i] = n

    ts = [threading.Thread(target=body, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)      # the measurement window itself, not a stand-in for synchronisation
    stop.set()
    for t in ts:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def fit_switch_cost(held_s: float, free_s: float, rate2: float) -> float:
    """The GIL switch cost with which the model's 2-thread rate equals the measured one."""
    from experiments.model import Config, conn_stages, simulate

    def modelled(s: float) -> float:
        cfg = Config(stages=conn_stages(held_s, free_s), cpus=2, clients=2, client_cpus=2,
                     gil_switch_s=s, requests=1500, warmup=150)
        return simulate(cfg).throughput

    lo, hi = 0.0, 20 * (held_s + free_s)
    if modelled(lo) <= rate2:
        return 0.0
    for _ in range(18):
        mid = (lo + hi) / 2
        if modelled(mid) > rate2:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def measure(reuse: bool = False) -> None:
    if reuse and (common.RESULTS / f"{NAME}.csv").exists():
        print(f"reusing {common.RESULTS / NAME}.csv")
        return
    from tqdm import tqdm

    cpus = common.allowed_cpus()
    if len(cpus) < 2:
        raise SystemExit("the GIL hand-off needs 2 CPUs; this process may use only " + str(cpus))
    trials = 5 if common.quick() else 9          # a noisy neighbour inflates single trials: take medians
    seconds = 0.15 if common.quick() else 0.3
    for work in (_held, _free, _both):          # warm-up
        rate(work, 1, cpus, 0.05)
    rows = []
    steps = [(spin, trial) for trial in range(trials) for spin in SPINS]
    for spin, trial in tqdm(steps, desc="GIL hand-off", unit="run"):
        _spin[0] = spin
        h = 1.0 / rate(_held, 1, cpus[:1], seconds)
        f = 1.0 / rate(_free, 1, cpus[:1], seconds)
        r1 = rate(_both, 1, cpus[:1], seconds)
        r2 = rate(_both, 2, cpus[:2], seconds)
        # scale h and f so that one thread's rate is reproduced exactly; their ratio is measured
        scale = (1.0 / r1) / (h + f)
        held, free = h * scale, f * scale
        rows.append({"python": common.python_label(), "spin": spin, "trial": trial,
                     "held_s": held, "free_s": free,
                     "rate_1_thread": r1, "rate_2_threads": r2, "ratio": r2 / r1,
                     "switch_s": fit_switch_cost(held, free, r2)})
    common.write_results(NAME, rows)
    for held, s in switch_table():
        print(f"GIL switch cost after {held * 1e6:5.1f} µs of interpreter work: {s * 1e6:5.1f} µs")


def switch_table(results=None) -> list[tuple[float, float]]:
    """(median held_s, median switch_s) per length of interpreter work, shortest first."""
    from experiments import figlib

    df = figlib.read_csv(NAME, results)
    if df is None or not {"spin", "held_s", "switch_s"} <= set(df.columns):
        return []
    med = df.groupby("spin")[["held_s", "switch_s"]].median().sort_values("held_s")
    return [(float(h), float(s)) for h, s in zip(med["held_s"], med["switch_s"])]


def switch_cost(held_s: float, table: list[tuple[float, float]]) -> float:
    """The switch cost for callbacks holding the GIL for held_s: interpolated on log(held_s)
    between the measured points, and the nearest measured value outside them; 0 if unmeasured."""
    import math

    if not table or held_s <= 0:
        return 0.0
    if held_s <= table[0][0]:
        return table[0][1]
    for (h0, s0), (h1, s1) in zip(table, table[1:]):
        if held_s <= h1:
            t = (math.log(held_s) - math.log(h0)) / (math.log(h1) - math.log(h0))
            return s0 + t * (s1 - s0)
    return table[-1][1]


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--plot-only", action="store_true", help="(no figure: a model input table)")
    args = parser.parse_args(argv)
    if not args.plot_only:
        measure(reuse=args.reuse)


if __name__ == "__main__":
    main()
