"""Figure: what a colored callback costs, and how colored work scales in the runtime alone.

Left: ns per callback, colorloop against asyncio, scheduled from the loop's own thread and from
another thread (runtime/benchmarks/dispatch.py). Right: speedup of N workers over 1 on work that
releases the GIL (sha256, ChaCha20-Poly1305) and on pure Python, with one color per callback
("distinct") or all callbacks on one color ("single"), on 3.11 and, when built, 3.13t
(runtime/benchmarks/speedup.py), with the model's prediction from the 1-worker costs.
The abstract gives no callback-cost number, so the paper has no point on this figure.

    python -m experiments.callback_cost [--plot-only | --reuse]      (make fig-callbacks)
"""
from __future__ import annotations

import sys
from pathlib import Path

from experiments import common, figlib, model_fit

DISPATCH = "runtime_dispatch"
SPEEDUP = "runtime_speedup"
NAME = "callback_cost"
WORKLOAD_COLORS = {"sha256": "#1f77b4", "chacha20poly1305": "#2ca02c", "purepython": "#d62728"}


def measure(reuse: bool = False) -> None:
    if not (reuse and (common.results_dir() / f"{DISPATCH}.csv").exists()):
        from runtime.benchmarks import dispatch

        common.write_results(DISPATCH, dispatch.run_benchmark(common.quick()))
    if not (reuse and (common.results_dir() / f"{SPEEDUP}.csv").exists()):
        from runtime.benchmarks import speedup

        rows = list(speedup.run_benchmark(common.quick()))
        rows.extend(_freethreaded_rows())
        common.write_results(SPEEDUP, rows)
    _write_summaries()


def _write_summaries() -> None:
    """Median, min, max and trial count per configuration, beside the per-trial CSVs."""
    for name, keys, value in ((DISPATCH, ["python", "impl", "path"], "ns_per_callback"),
                              (SPEEDUP, ["python", "workload", "colors", "workers"], "ops_per_s")):
        df = figlib.read_csv(name)
        if df is not None:
            common.write_results(f"{name}_summary", figlib.summarize(df, keys, value).to_dict("records"))


def _freethreaded_rows() -> list[dict]:
    from experiments import freethreaded

    if freethreaded.ft_python() is None:
        print("3.13t not built (make freethreaded): runtime speedup on 3.11 only", file=sys.stderr)
        return []
    try:
        return freethreaded.run_module_json("runtime.benchmarks.speedup",
                                            ["--quick"] if common.quick() else [])
    except (freethreaded.FreeThreadedUnavailable, freethreaded.BenchmarkFailed) as exc:
        print(f"3.13t runtime speedup failed, 3.11 only: {exc}", file=sys.stderr)
        return []


def _draw_dispatch(ax, df) -> None:
    summary = figlib.summarize(df, ["python", "impl", "path"], "ns_per_callback")
    paths = [p for p in ("same_thread", "cross_thread") if p in set(summary["path"])]
    impls = [i for i in ("colorloop", "asyncio") if i in set(summary["impl"])]
    pythons = sorted(summary["python"].unique())
    groups = [(py, impl) for py in pythons for impl in impls]
    width = 0.8 / max(1, len(groups))
    for i, (py, impl) in enumerate(groups):
        sub = summary[(summary["python"] == py) & (summary["impl"] == impl)].set_index("path")
        xs = [j + (i - (len(groups) - 1) / 2) * width for j, p in enumerate(paths) if p in sub.index]
        rows = [sub.loc[p] for p in paths if p in sub.index]
        ys = [r["median"] / 1000 for r in rows]
        err = [[(r["median"] - r["min"]) / 1000 for r in rows], [(r["max"] - r["median"]) / 1000 for r in rows]]
        ax.bar(xs, ys, width, yerr=err, capsize=3, label=f"{impl}, Python {py}, measured",
               color={"colorloop": "#1f77b4", "asyncio": "#7f7f7f"}[impl],
               alpha=1.0 if i < len(impls) else 0.6, hatch=None if py == pythons[0] else "//")
        for x, y in zip(xs, ys):
            ax.text(x, y, f"{y:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(paths)))
    ax.set_xticklabels([p.replace("_", " ") for p in paths])
    ax.set_ylabel("µs per callback (median; bars min..max)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)


def plot(results: Path | None = None, figures: Path | None = None) -> list[Path]:
    dispatch = figlib.read_csv(DISPATCH, results)
    speed = figlib.read_csv(SPEEDUP, results)
    fig, (ax_cost, ax_speed) = figlib.new_figure("Runtime: cost of a callback, and colored speedup",
                                                 ncols=2, height=5.0)
    notes = ["the abstract gives no callback-cost or runtime-speedup number: no paper point on this figure"]
    if dispatch is None:
        figlib.no_data(ax_cost, f"{DISPATCH}.csv")
    else:
        _draw_dispatch(ax_cost, dispatch)
    if speed is None:
        figlib.no_data(ax_speed, f"{SPEEDUP}.csv")
    else:
        notes.extend(_draw_speedup_only(ax_speed, speed))
    ax_cost.set_title("dispatch cost (lower is better)", fontsize=10)
    ax_speed.set_title("N workers vs 1, distinct vs single color", fontsize=10)
    footer = figlib.machine_footer([figlib.read_machine(DISPATCH, results),
                                    figlib.read_machine(SPEEDUP, results)], notes)
    return figlib.finish(fig, NAME, footer, figures)


def _draw_speedup_only(ax, df) -> list[str]:
    """Measured speedups (solid) and modelled ones (dashed) per workload, colors and Python."""
    cases = model_fit.runtime_cases(df, dispatch_s=model_fit.dispatch_cost(figlib.read_csv(DISPATCH)))
    predicted = model_fit.predictions(cases, cpus_list=list(range(1, 9)))
    one = {(r["python"], r["config"]): r["modelled"] for r in predicted if r["cpus"] == 1}
    for case in cases:
        color = WORKLOAD_COLORS.get(case.group, "#000000")
        style = "-" if case.mode == "distinct" else ":"
        label = f"{case.config}, Py {case.python}"
        pts = sorted(case.measured, key=lambda p: p["cpus"])
        base = next((p["median"] for p in pts if p["cpus"] == 1), None)
        if pts and base:
            ax.plot([p["cpus"] for p in pts], [p["median"] / base for p in pts], color=color,
                    marker="o" if not case.python.endswith("t") else "^", linestyle=style,
                    label=label)
        model = sorted((r for r in predicted if (r["python"], r["config"]) == (case.python, case.config)),
                       key=lambda r: r["cpus"])
        if model and case.mode == "distinct":
            ax.plot([r["cpus"] for r in model], [r["modelled"] / one[(case.python, case.config)] for r in model],
                    color=color, alpha=0.7, **figlib.MODELLED_STYLE)
    figlib.cpu_axis(ax, max_cpus=8, ylabel="speedup vs 1 worker (same workload, same colors)")
    figlib.style_legend(ax, fontsize=6.5)
    return ["right: solid = one color per callback, dotted = all on one color (must stay near 1.0), "
            "dashed = modelled from the 1-worker GIL-held/GIL-free costs; triangles = Python 3.13t"]


def main(argv=None) -> None:
    figlib.script_main(__doc__.splitlines()[0], measure, lambda: plot(), argv)


if __name__ == "__main__":
    main()
