"""Model input: what waking a thread on another CPU costs, and the GIL hand-offs it prices.

Threads that alternate short interpreter work with GIL-releasing calls (a colored server's
workers) pass the GIL back and forth; a thread that finds the GIL held sleeps, and the thread that
releases it must wake it on its CPU. Idle colorloop workers sleep the same way until a callback is
queued for them. On this VM both are dear: the sleeping vCPU is halted (the guest does no halt
polling), so each wake-up goes through the hypervisor.

So we measure the wake-up itself, with nothing fitted: two threads pinned to two CPUs, one blocked
on a lock, the other releasing it after spinning a while (5 µs to 2 ms: how long the sleeper's CPU
has been idle changes the price, as a vCPU idle for long is woken through the host scheduler).
`wake_signal_s` is how long the release call takes the waker (median); `wake_latency_pNN_s` are
quantiles of how long after the release began the sleeper runs; `slept_s` how long it had slept
(the spin plus the waker's own wake-up, since the sleeper woke the waker the round before). The model (experiments.model.Gil
and its idle workers) charges exactly these.

A second cost comes with every GIL hand-off, wake-up or not: the thread that takes the GIL from
a thread on the other CPU first pulls the interpreter state that thread last wrote (reference
counts of shared objects, the interpreter's own structures) into its own caches. So the same
interpreter work (h) takes longer right after another thread ran Python on the other CPU. We
time h alone, between two sha256 calls over 128 KiB (about 70 µs without the GIL, long enough
that the two threads seldom wait for each other, so the GIL changes threads on nearly every
take), on one thread and on two: `held_1_thread_s` and `held_2_threads_s` are medians over the
loops, their difference the switch cost (`switch_s`; model: Config.switch_s).

Then, as a check of that GIL model, two threads each looping interpreter work (h) and a
GIL-releasing sha256 (f), at four lengths of h and two of f, one thread against two:
model_validation models these rates from h, f and the measured costs alone, beside the
applications' points.

    python -m experiments.gil_handoff          (make fig-gil; writes artifact/results/gil_handoff.csv)
"""
from __future__ import annotations

import hashlib
import os
import statistics
import threading
import time

from experiments import common

NAME = "gil_handoff"
SPINS = (400, 800, 1500, 4000)      # loop iterations: about 3, 7, 15 and 40 µs of interpreter work
FREE_KIB = (16, 32)                 # sha256 over 16 or 32 KiB: about 9 or 17 µs without the GIL
SWITCH_FREE_KIB = 128               # between timed interpreter work: about 70 µs without the GIL
_spin = [SPINS[0]]
_buf = [os.urandom(FREE_KIB[0] * 1024)]


def _held() -> None:
    for _ in range(_spin[0]):
        pass


def _free() -> None:
    hashlib.sha256(_buf[0]).digest()


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


def held_times(spin: int, threads: int, cpus: list[int], seconds: float) -> float:
    """Median duration of `spin` loop iterations of interpreter work, each done right after a
    sha256 over SWITCH_FREE_KIB, on each of `threads` threads pinned one per CPU."""
    buf = os.urandom(SWITCH_FREE_KIB * 1024)
    times: list[list[float]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads)
    clock = time.perf_counter

    def body(i: int) -> None:
        os.sched_setaffinity(0, {cpus[i % len(cpus)]})
        mine = times[i]
        start.wait()
        stop = clock() + seconds
        while True:
            hashlib.sha256(buf).digest()         # the GIL is released here, taken back at return
            t0 = clock()
            for _ in range(spin):
                pass
            t1 = clock()
            mine.append(t1 - t0)
            if t1 > stop:
                break

    ts = [threading.Thread(target=body, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return statistics.median(x for per_thread in times for x in per_thread[1:])


SLEEPS_US = (5, 50, 100, 200, 500, 2000)     # how long the sleeper sleeps before it is woken


LATENCY_QUANTILES = (5, 25, 50, 75, 95)      # percent: the spread the model draws wake-ups from


def wake_costs_once(sleep_us: float, rounds: int, cpus: list[int]) -> tuple[float, list[float], float]:
    """Median waker's cost, the wake latency's quantiles (LATENCY_QUANTILES) and the median time
    the sleeper really slept (the spin, plus the waker's own wake-up before it), over `rounds`
    lock hand-offs from cpus[0] to cpus[1]."""
    wake, back = threading.Lock(), threading.Lock()
    wake.acquire()
    back.acquire()
    released_at = [0.0]
    latencies: list[float] = []
    signals: list[float] = []
    slept: list[float] = []

    def sleeper() -> None:
        os.sched_setaffinity(0, {cpus[1]})
        for _ in range(rounds):
            asleep_at = time.perf_counter()
            wake.acquire()                       # asleep until the waker releases it
            latencies.append(time.perf_counter() - released_at[0])
            slept.append(released_at[0] - asleep_at)
            back.release()

    def waker() -> None:
        os.sched_setaffinity(0, {cpus[0]})
        spin = sleep_us * 1e-6
        for _ in range(rounds):
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < spin:   # the sleeper's CPU idles meanwhile
                pass
            released_at[0] = t1 = time.perf_counter()
            wake.release()
            signals.append(time.perf_counter() - t1)
            back.acquire()                       # the sleeper has run: next round

    threads = [threading.Thread(target=sleeper), threading.Thread(target=waker)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    quantiles = [latencies[round(q / 100 * (len(latencies) - 1))] for q in LATENCY_QUANTILES]
    return statistics.median(signals), quantiles, statistics.median(slept)


def measure(reuse: bool = False) -> None:
    if reuse and (common.results_dir() / f"{NAME}.csv").exists():
        print(f"reusing {common.results_dir() / NAME}.csv")
        return
    from tqdm import tqdm

    cpus = common.allowed_cpus()
    if len(cpus) < 2:
        # Not a failure: on one CPU no wake-up crosses CPUs, so there is nothing to measure, and
        # no multi-CPU point for the model to price. The model takes such wake-ups as free and
        # says so (experiments.predict); a CSV left from another machine must not stand in.
        stale = common.results_dir() / f"{NAME}.csv"
        print(f"not measured: the GIL hand-off needs 2 CPUs; this process may use only {cpus}"
              + (f" ({stale} is left from an earlier run)" if stale.exists() else ""))
        return
    trials = 3 if common.quick() else 9          # a noisy neighbour inflates single trials: take medians
    seconds = 0.1 if common.quick() else 0.3
    rounds = 100 if common.quick() else 300
    for work in (_held, _free, _both):          # warm-up
        rate(work, 1, cpus, 0.05)
    rows = []
    handoffs = [(spin, kib) for kib in FREE_KIB for spin in SPINS]
    steps = [(kind, x, trial) for trial in range(trials)
             for kind, xs in (("wakeup", SLEEPS_US), ("switch", SPINS), ("handoff", handoffs))
             for x in xs]
    for kind, x, trial in tqdm(steps, desc="wake-ups and GIL hand-offs", unit="run"):
        row = {"python": common.python_label(), "kind": kind, "trial": trial}
        if kind == "switch":
            one = held_times(x, 1, cpus[:1], seconds)
            two = held_times(x, 2, cpus[:2], seconds)
            row.update({"spin": x, "held_1_thread_s": one, "held_2_threads_s": two,
                        "switch_s": two - one})
        elif kind == "wakeup":
            signal, latency, slept = wake_costs_once(x, rounds, cpus[:2])
            row.update({"sleep_us": x, "slept_s": slept, "wake_signal_s": signal})
            row.update({f"wake_latency_p{q:02d}_s": v for q, v in zip(LATENCY_QUANTILES, latency)})
        else:
            _spin[0], kib = x
            _buf[0] = os.urandom(kib * 1024)
            h = 1.0 / rate(_held, 1, cpus[:1], seconds)
            f = 1.0 / rate(_free, 1, cpus[:1], seconds)
            r1 = rate(_both, 1, cpus[:1], seconds)
            r2 = rate(_both, 2, cpus[:2], seconds)
            # scale h and f so that one thread's rate is reproduced exactly; their ratio is measured
            scale = (1.0 / r1) / (h + f)
            row.update({"spin": x[0], "free_kib": kib, "held_s": h * scale, "free_s": f * scale,
                        "rate_1_thread": r1, "rate_2_threads": r2, "ratio": r2 / r1})
        rows.append(row)
    common.write_results(NAME, rows)
    print(f"taking the GIL from a thread on the other CPU: {switch_cost() * 1e6:.1f} µs more "
          f"interpreter work (median over {len(SPINS)} lengths of it)")
    for slept, signal, latency in wake_costs():
        print(f"cross-CPU wake-up after {slept * 1e6:6.0f} µs asleep: {signal * 1e6:5.1f} µs of the "
              f"waker's time, {latency[2] * 1e6:5.1f} µs until the sleeper runs "
              f"(5-95%: {latency[0] * 1e6:.1f}-{latency[-1] * 1e6:.1f})")


def wake_costs(results=None) -> tuple:
    """((slept_s, waker's cost s, (latency quantiles s, ...)), ...) per spin length, medians over
    the trials, keyed by how long the sleeper really slept; () if unmeasured."""
    from experiments import figlib

    df = figlib.read_csv(NAME, results)
    columns = ["wake_signal_s"] + [f"wake_latency_p{q:02d}_s" for q in LATENCY_QUANTILES]
    if df is None or not {"sleep_us", *columns} <= set(df.columns):
        return ()
    if "slept_s" not in df.columns:                  # rows from before it was measured
        df = df.assign(slept_s=df["sleep_us"] * 1e-6)
    med = (df.dropna(subset=["sleep_us", *columns]).groupby("sleep_us")[["slept_s", *columns]]
           .median().sort_index())
    return tuple((float(r["slept_s"]), float(r[columns[0]]), tuple(float(r[c]) for c in columns[1:]))
                 for _, r in med.iterrows())


def switch_cost(results=None) -> float:
    """Seconds of extra interpreter work when the GIL comes from a thread on another CPU: the
    median over the measured lengths of work of each length's median over trials (never below
    0); 0.0 if unmeasured."""
    from experiments import figlib

    df = figlib.read_csv(NAME, results)
    if df is None or not {"spin", "switch_s"} <= set(df.columns):
        return 0.0
    per_length = df.dropna(subset=["switch_s"]).groupby("spin")["switch_s"].median()
    return max(0.0, float(per_length.median())) if len(per_length) else 0.0


def handoff_points(results=None) -> list[dict]:
    """Per length of interpreter and of GIL-free work: median held_s, free_s, and the measured 1-
    and 2-thread rates."""
    from experiments import figlib

    df = figlib.read_csv(NAME, results)
    if df is None or "rate_2_threads" not in df.columns:
        return []
    df = df.dropna(subset=["rate_2_threads"]).copy()
    if "free_kib" not in df.columns:
        df["free_kib"] = 16
    out = []
    for (python, spin, kib), sub in df.groupby(["python", "spin", "free_kib"]):
        out.append({"python": str(python), "spin": int(spin), "free_kib": int(kib),
                    "held_s": float(sub["held_s"].median()), "free_s": float(sub["free_s"].median()),
                    "rates": {1: sub["rate_1_thread"].astype(float).tolist(),
                              2: sub["rate_2_threads"].astype(float).tolist()}})
    return out


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
