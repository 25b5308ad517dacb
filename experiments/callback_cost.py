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
# One colour per workload and Python: a modelled curve has its measured series' colour.
SERIES_COLORS = {("3.11", "sha256"): "#1f77b4", ("3.11", "chacha20poly1305"): "#2ca02c",
                 ("3.11", "chacha20poly1305_256k"): "#ff7f0e", ("3.11", "purepython"): "#d62728",
                 ("3.13t", "sha256"): "#17becf", ("3.13t", "chacha20poly1305"): "#bcbd22",
                 ("3.13t", "chacha20poly1305_256k"): "#e377c2", ("3.13t", "purepython"): "#8c564b"}
WORKLOAD_NAMES = {"sha256": "sha256 64 KiB", "chacha20poly1305": "ChaCha20-Poly1305 64 KiB",
                  "chacha20poly1305_256k": "ChaCha20-Poly1305 256 KiB", "purepython": "pure Python"}
COINCIDE = 0.03          # modelled curves closer than this everywhere are drawn one over the other


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
        for x, y, r in zip(xs, ys, rows):     # above the error bar's cap, not through it
            ax.annotate(f"{y:.1f}", (x, r["max"] / 1000), xytext=(0, 3), textcoords="offset points",
                        ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(paths)))
    ax.set_xticklabels([p.replace("_", " ") for p in paths])
    ax.set_ylabel("µs per callback (median; bars min..max)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.margins(y=0.12)
    ax.legend(fontsize=7, loc="upper left")


def plot(results: Path | None = None, figures: Path | None = None) -> list[Path]:
    dispatch = figlib.read_csv(DISPATCH, results)
    speed = figlib.read_csv(SPEEDUP, results)
    fig, (ax_cost, ax_speed) = figlib.new_figure("Runtime: cost of a callback, and colored speedup",
                                                 ncols=2, width=7.6, height=5.4)
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


def series_color(case) -> str:
    return SERIES_COLORS.get((case.python, case.group), "#000000")


def series_name(case) -> str:
    colors = "distinct colors" if case.mode == "distinct" else "one color"
    return f"{WORKLOAD_NAMES.get(case.group, case.group)}, {colors}, Py {case.python}"


def model_curves(cases, predicted) -> list[dict]:
    """The modelled curves drawn (distinct colors only: one color is 1.0x by construction), each
    as speedup vs 1 worker, with how it is drawn: a curve the model puts on top of an earlier one
    (within COINCIDE at every worker count) goes over it with dashes and markers of its own, the
    earlier one wide underneath, and both say so in the legend."""
    curves = []
    for case in cases:
        model = sorted((r for r in predicted if (r["python"], r["config"]) == (case.python, case.config)),
                       key=lambda r: r["cpus"])
        if not model or case.mode != "distinct":
            continue
        one = model[0]["modelled"]
        curves.append({"case": case, "xs": [r["cpus"] for r in model],
                       "ys": [r["modelled"] / one for r in model]})

    def same(a, b):
        return a["xs"] == b["xs"] and all(abs(y1 - y2) <= COINCIDE * max(y1, y2)
                                          for y1, y2 in zip(a["ys"], b["ys"]))

    def short(curve):
        case = curve["case"]
        return f"{WORKLOAD_NAMES.get(case.group, case.group)} {case.python}"

    for i, curve in enumerate(curves):
        name = series_name(curve["case"])
        under = [c for c in curves[i + 1:] if same(curve, c)]
        over = [c for c in curves[:i] if same(curve, c)]
        style = dict(figlib.MODELLED_STYLE, color=series_color(curve["case"]), zorder=3,
                     label=f"{name}: modelled")
        if over:
            style.update(linestyle=(0, (3, 1.5)), marker="v", markersize=4, zorder=6,
                         label=f"{name}: modelled (markers, over {short(over[0])})")
        elif under:
            style.update(linewidth=4.0, zorder=2.5, label=f"{name}: modelled (wide, under {short(under[0])})")
        curve["style"] = style
    return curves


def model_cases(df, results: Path | None = None) -> list:
    """The runtime workloads as the model sees them (modelled here for 1..8 workers), with the
    costs measured beside `results` (default: the results folder)."""
    from experiments import gil_handoff, gil_split

    return model_fit.runtime_cases(df, gil_handoff.wake_costs(results),
                                   model_fit.dispatch_cost(figlib.read_csv(DISPATCH, results)),
                                   gil_handoff.switch_cost(results), gil_split.held_in_call_table(results))


def _draw_speedup_only(ax, df) -> list[str]:
    """Measured speedups (solid: distinct colors, dotted: one color) and modelled ones (dashed, in
    the colour of the measured series) per workload, colors and Python."""
    from matplotlib.lines import Line2D

    cases = model_cases(df)
    predicted = model_fit.predictions(cases, cpus_list=model_fit.predict_cpus(up_to=8))
    for case in cases:
        pts = sorted(case.measured, key=lambda p: p["cpus"])
        base = next((p["median"] for p in pts if p["cpus"] == 1), None)
        if pts and base:
            ax.plot([p["cpus"] for p in pts], [p["median"] / base for p in pts], color=series_color(case),
                    marker="o" if not case.python.endswith("t") else "^",
                    linestyle="-" if case.mode == "distinct" else ":", label=f"{series_name(case)}: measured")
    for curve in model_curves(cases, predicted):
        ax.plot(curve["xs"], curve["ys"], **curve["style"])
    figlib.cpu_axis(ax, max_cpus=8, ylabel="speedup vs 1 worker (same workload, same colors)")
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: ": modelled" in labels[i])
    keys = [(Line2D([], [], color="black", marker="o", linestyle="-"), "solid: measured, one color per callback"),
            (Line2D([], [], color="black", marker="o", linestyle=":"), "dotted: measured, all on one color"),
            (Line2D([], [], color="black", **figlib.MODELLED_STYLE), "dashed: modelled (distinct colors)"),
            (Line2D([], [], color="black", marker="^", linestyle="none"), "triangles: Python 3.13t")]
    ax.legend([handles[i] for i in order] + [h for h, _ in keys], [labels[i] for i in order] + [l for _, l in keys],
              fontsize=6.5, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    return ["right: solid = one color per callback, dotted = all on one color (must stay near 1.0), "
            "dashed = modelled from the 1-worker GIL-held/GIL-free costs, in the colour of the measured "
            "series, for distinct colors only (the model keeps one color at 1.0x by construction); "
            "triangles = Python 3.13t"]


def main(argv=None) -> None:
    figlib.script_main(__doc__.splitlines()[0], measure, lambda: plot(), argv)


if __name__ == "__main__":
    main()
