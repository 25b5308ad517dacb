"""Figure: hash placement vs work stealing, on color loads that hashing places badly.

libasync-smp had work stealing; the Mely paper (Gaud et al., ICDCS 2010) found that its stealing
could cost 33% on a web server (paper-notes.md). Our scheduler maps a color to one worker's queue
(`scheduler="hash"`) and optionally lets idle workers steal whole colors (`"steal"`). Which wins
depends on the load, so we run both on:

  collide      many colors that all hash to one worker (found by probing, not assumed), GIL-free work
  few_heavy    workers+1 equally heavy colors: hashing doubles up two of them on one worker
  uniform      many colors spread evenly: nothing to gain, stealing only adds its own cost
  short        many colors of tiny pure-Python callbacks: the scheduler's own overhead dominates

GIL-free work is hashlib.sha256 over a 64 KiB buffer (releases the GIL); throughput is callbacks per
second of wall time from the first callback's start to the last one's end.

    python -m experiments.sched_compare [--plot-only | --reuse]      (make fig-sched)
"""
from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

from experiments import common, figlib

NAME = "sched_compare"
SCHEDULERS = ("hash", "steal")
BUF = bytes(range(256)) * 256                       # 64 KiB
LOADS = ("collide", "few_heavy", "uniform", "short")
HEAVY_HASHES = 4                                    # sha256 calls per heavy callback (~0.1-0.3 ms)


def gil_free_work(n: int = 1) -> None:
    for _ in range(n):
        hashlib.sha256(BUF).digest()


def short_work() -> int:
    return sum(range(20))


def colliding_colors(workers: int, want: int) -> list[int]:
    """Colors that land on one worker under hash placement, found by running probe callbacks and
    recording which thread ran each (the runtime's public API only: no assumption on its hash)."""
    import runtime

    seen: dict[int, int] = {}
    lock = threading.Lock()

    def probe(color):
        with lock:
            seen[color] = threading.get_ident()

    candidates = list(range(1, 8 * want * workers + 1))
    with runtime.Loop(workers=workers, scheduler="hash") as loop:
        for c in candidates:
            loop.call_soon(probe, c, color=c)
        loop.call_soon(loop.stop, color=candidates[-1])
        loop.run()
    by_thread: dict[int, list[int]] = {}
    for c in candidates:
        if c in seen:
            by_thread.setdefault(seen[c], []).append(c)
    group = max(by_thread.values(), key=len)
    if len(group) < want:
        raise RuntimeError(f"probe found only {len(group)} colliding colors of {want} wanted")
    return group[:want]


def make_load(load: str, workers: int, quick: bool) -> list[tuple[object, object, tuple]]:
    """(color, fn, args) for every callback of one trial, in submission order."""
    scale = 1 if quick else 3              # about 0.15 s of work per trial (quick), 0.45 s (full)
    heavy = (HEAVY_HASHES,)
    if load == "collide":
        colors = colliding_colors(workers, 4 * workers)
        return [(c, gil_free_work, heavy) for _ in range(1800 * scale // len(colors)) for c in colors]
    if load == "few_heavy":
        colors = [("heavy", i) for i in range(workers + 1)]
        return [(c, gil_free_work, heavy) for _ in range(1800 * scale // len(colors)) for c in colors]
    if load == "uniform":
        colors = list(range(1, 8 * workers + 1))
        return [(c, gil_free_work, heavy) for _ in range(1800 * scale // len(colors)) for c in colors]
    if load == "short":
        colors = list(range(1, 64 + 1))
        return [(c, short_work, ()) for _ in range(16000 * scale // 64) for c in colors]
    raise ValueError(f"unknown load {load!r}; known: {LOADS}")


def run_trial(load_items, workers: int, scheduler: str) -> dict:
    import runtime

    remaining = [len(load_items)]
    lock = threading.Lock()
    span = [float("inf"), 0.0]

    def run(fn, args, loop):
        start = time.perf_counter()
        fn(*args)
        end = time.perf_counter()
        with lock:
            span[0] = min(span[0], start)
            span[1] = max(span[1], end)
            remaining[0] -= 1
            last = remaining[0] == 0
        if last:
            loop.stop()

    with runtime.Loop(workers=workers, scheduler=scheduler, pin=True) as loop:
        for color, fn, args in load_items:
            loop.call_soon(run, fn, args, loop, color=color)
        loop.run()
        stats = loop.stats()
    if remaining[0]:
        raise RuntimeError(f"{remaining[0]} callbacks did not run")
    seconds = span[1] - span[0]
    return {"seconds": seconds, "ops_per_s": len(load_items) / seconds, "steals": stats.get("steals", 0),
            "per_worker_callbacks": ";".join(str(w["callbacks"]) for w in stats["workers"])}


def measure(reuse: bool = False) -> None:
    if reuse and (common.results_dir() / f"{NAME}.csv").exists():
        print(f"reusing {common.results_dir() / NAME}.csv")
        return
    from tqdm import tqdm

    quick = common.quick()
    workers = max(2, len(common.allowed_cpus()))
    trials = 3 if quick else 7
    rows = []
    loads = {load: make_load(load, workers, quick) for load in LOADS}
    steps = [(load, t, s) for load in LOADS for t in range(trials) for s in SCHEDULERS]
    for load in LOADS:                                          # warm-up: one untimed run each
        for s in SCHEDULERS:
            run_trial(loads[load][: len(loads[load]) // 4], workers, s)
    for load, trial, scheduler in tqdm(steps, desc="scheduler comparison", unit="run"):
        items = loads[load]
        result = run_trial(items, workers, scheduler)
        rows.append({"python": common.python_label(), "load": load, "scheduler": scheduler,
                     "workers": workers, "colors": len({c for c, _, _ in items}),
                     "callbacks": len(items), "trial": trial, **result})
    common.write_results(NAME, rows)
    summary = figlib.summarize(figlib.read_csv(NAME), ["python", "load", "scheduler", "workers"], "ops_per_s")
    common.write_results(f"{NAME}_summary", summary.to_dict("records"))
    common.print_table(summary.to_dict("records"))


def steal_gain(df) -> dict[str, float]:
    """Median steal throughput / median hash throughput, per load (>1: stealing wins)."""
    med = df.groupby(["load", "scheduler"])["ops_per_s"].median()
    out = {}
    for load in df["load"].unique():
        if (load, "hash") in med and (load, "steal") in med:
            out[load] = float(med[(load, "steal")] / med[(load, "hash")])
    return out


def plot(results: Path | None = None, figures: Path | None = None) -> list[Path]:
    df = figlib.read_csv(NAME, results)
    fig, (ax,) = figlib.new_figure("Scheduler: hash placement vs work stealing (same run, same loads)",
                                   width=8.5, height=5.2)
    notes = ["paper: the 2003 abstract gives no number for scheduling, so no paper point is drawn; the dotted "
             "line at 0.67 is Mely (Gaud et al., ICDCS 2010) on libasync-smp: work stealing can cost 33% "
             "on a web server (a qualitative reference, not per load)"]
    if df is None:
        figlib.no_data(ax, f"{NAME}.csv")
    else:
        loads = [l for l in LOADS if l in set(df["load"])] + sorted(set(df["load"]) - set(LOADS))
        summary = figlib.summarize(df, ["load", "scheduler"], "ops_per_s")
        base = {r["load"]: r["median"] for r in summary.to_dict("records") if r["scheduler"] == "hash"}
        width = 0.38
        for i, scheduler in enumerate(SCHEDULERS):
            sub = summary[summary["scheduler"] == scheduler].set_index("load")
            xs, ys, lo, hi = [], [], [], []
            for j, load in enumerate(loads):
                if load in sub.index and base.get(load):
                    r = sub.loc[load]
                    xs.append(j + (i - 0.5) * width)
                    ys.append(r["median"] / base[load])
                    lo.append((r["median"] - r["min"]) / base[load])
                    hi.append((r["max"] - r["median"]) / base[load])
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3,
                   label=f"{scheduler}, measured (median, bars min..max)",
                   color="#1f77b4" if scheduler == "hash" else "#ff7f0e")
            for x, y in zip(xs, ys):
                ax.text(x, 0.04, f"{y:.2f}", ha="center", fontsize=9, color="white", fontweight="bold")
        ax.set_xticks(range(len(loads)))
        ax.set_xticklabels([f"{l}\n({int(base.get(l, 0)):,} cb/s hash)" for l in loads], fontsize=8)
        w = int(df["workers"].iloc[0])
        notes.append(f"{w} workers pinned to CPUs; loads: collide = colors probed to share one hash worker, "
                     "few_heavy = workers+1 heavy colors, uniform = colors spread evenly (sha256 on 64 KiB, "
                     "GIL released); short = tiny pure-Python callbacks on 64 colors")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.axhline(0.67, color="black", linestyle=":", linewidth=1.0,
               label="Mely: stealing cost up to 33% on a web server (reference)")
    ax.set_ylabel("throughput relative to hash placement")
    ax.set_ylim(bottom=0)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    footer = figlib.machine_footer([figlib.read_machine(NAME, results)], notes)
    return figlib.finish(fig, NAME, footer, figures)


def main(argv=None) -> None:
    figlib.script_main(__doc__.splitlines()[0], measure, lambda: plot(), argv)


if __name__ == "__main__":
    main()
