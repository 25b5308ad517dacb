"""What every figure shares: where CSVs are read from, how trials are summarised, the paper's points,
and the footer that says which machine made the numbers.

Figures are drawn only from CSVs (never from in-memory benchmark results), so a figure can always be
redrawn from `artifact/results/` alone, and the tests can draw every figure from small synthetic CSVs.
`COLORLOOP_RESULTS` / `COLORLOOP_FIGURES` point the scripts (and the notebooks) at other folders.
"""
from __future__ import annotations

import io
import json
import math
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from experiments import common  # noqa: E402

# The paper's side: only the abstract's numbers are known (see /work/shared/paper-notes.md).
PAPER_LABEL = "paper (abstract)"
PAPER_SFS_SPEEDUP = {1: 1.0, 4: 2.5}       # libasync-smp SFS on 4 CPUs vs unmodified SFS on 1 CPU
PAPER_WEB_SPEEDUP = {1: 1.0, 4: 1.5}       # event-driven web server, 4 CPUs
PAPER_LINES_CHANGED = 90                   # "about 90 lines" ...
PAPER_LINES_TOTAL = 12000                  # ... "of about 12,000"

MODE_NAMES = {"off": "colors_off", "on": "colors_on"}

MEASURED_STYLE = dict(marker="o", linestyle="-", linewidth=1.8, markersize=6)
MODELLED_STYLE = dict(linestyle="--", linewidth=1.4)
PAPER_STYLE = dict(marker="*", linestyle=":", color="black", markersize=13, linewidth=1.0)


results_dir = common.results_dir      # the scripts measure into the folder they draw from
figures_dir = common.figures_dir


def read_csv(name: str, folder: Path | None = None) -> pd.DataFrame | None:
    """The CSV `name` from the results folder, or None when that experiment has not run yet (or
    its file is empty or unreadable: a step killed before it wrote anything), said on stderr so
    that a figure drawn without its data is never a silent surprise. A last line cut short is
    left out, also with a note, rather than read as a row of half a measurement."""
    path = (folder or results_dir()) / f"{name}.csv"
    if not path.exists():
        print(f"note: {path} is missing (its step has not run): read as no data", file=sys.stderr)
        return None
    text = path.read_text(errors="replace")
    if text and not text.endswith("\n"):
        print(f"note: {path} ends in a line cut short (its step stopped while writing): that line "
              "is left out", file=sys.stderr)
        text = text[: text.rfind("\n") + 1]
    try:
        df = pd.read_csv(io.StringIO(text), dtype={"python": str})  # "3.11" must stay a string
    except pd.errors.EmptyDataError:
        print(f"note: {path} is empty: treated as missing (run that step again)", file=sys.stderr)
        return None
    except pd.errors.ParserError as exc:
        print(f"note: {path} cannot be read ({str(exc).strip()}): treated as missing (run that "
              "step again)", file=sys.stderr)
        return None
    if "mode" in df.columns:                           # the benchmarks write off/on
        df["mode"] = df["mode"].replace(MODE_NAMES)
    return df if len(df) else None


def read_machine(name: str, folder: Path | None = None) -> dict | None:
    """The machine that measured CSV `name`, with `quick: True` when that was a QUICK run: a
    figure or table from short trials must say so, since it overwrites the full run's files."""
    path = (folder or results_dir()) / f"{name}.machine.json"
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text())
    except (ValueError, OSError):
        return None
    info = meta.get("machine")
    if info and meta.get("quick"):
        info = {**info, "quick": True}
    return info


def summarize(df: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """Median, min, max and trial count of `value` for each combination of `keys`."""
    grouped = df.groupby(keys, dropna=False)[value]
    out = grouped.agg(median="median", min="min", max="max", trials="count").reset_index()
    return out.sort_values(keys).reset_index(drop=True)


def machine_footer(machines: list[dict | None], notes: list[str] = ()) -> str:
    """Which machine(s), CPU, core count and Python made the CSVs behind a figure."""
    summaries = []
    for info in machines:
        line = common.machine_summary(info) if info else None
        if line and line not in summaries:
            summaries.append(line)
    # a CSV of the same machine that names fewer Pythons adds nothing to one naming more
    summaries = [s for s in summaries if not any(o != s and o.startswith(s) for o in summaries)]
    lines = [("measured on: " if i == 0 else "and on: ") + s for i, s in enumerate(summaries)]
    if not lines:
        lines.append("measured on: (no machine description found beside the CSV)")
    lines.extend(notes)
    return "\n".join(textwrap.fill(l, 150) for l in lines)


def new_figure(title: str, ncols: int = 1, width: float = 6.2, height: float = 4.6):
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    fig.suptitle(title, fontsize=12, fontweight="bold")
    return fig, list(axes[0])


def finish(fig, name: str, footer: str, folder: Path | None = None) -> list[Path]:
    """Put the machine footer under the axes and write <name>.png and <name>.pdf."""
    n_lines = footer.count("\n") + 1
    height_in = fig.get_size_inches()[1]
    bottom = min(0.45, (0.12 + 0.13 * n_lines) / height_in)
    fig.text(0.01, 0.01, footer, fontsize=7.5, va="bottom", ha="left", color="#333333")
    fig.tight_layout(rect=(0, bottom, 1, 0.95))
    folder = folder or figures_dir()
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png", folder / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=130)
    # No creation date in the PDF: redrawing from the same CSVs gives the same bytes, so a redraw
    # leaves a clean git tree and a changed PDF always means a changed figure.
    fig.savefig(paths[1], metadata={"CreationDate": None})
    plt.close(fig)
    return paths


def plot_paper_points(ax, points: dict[int, float], label: str = PAPER_LABEL) -> None:
    xs = sorted(points)
    ax.plot(xs, [points[x] for x in xs], label=label, zorder=5, **PAPER_STYLE)


def no_data(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no data yet:\n{what}", ha="center", va="center", transform=ax.transAxes,
            fontsize=10, color="#aa0000")


def draw_scaling(ax_abs, ax_speed, cases, predicted: list[dict], color_of, *,
                 label_of=lambda case: f"{case.config} ({case.python})", model_style_of=None) -> bool:
    """Measured medians (bars: min..max of trials) and modelled curves for model_fit.Case objects.

    model_style_of(case), if given, returns what to change in a case's modelled line (MODELLED_STYLE
    plus a zorder, a dash pattern, a marker, a width, a `label` of its own): how a curve that the
    model puts on top of another's is kept visible and told apart in the legend.

    ax_abs (absolute values) or ax_speed (speedups) may be None to draw only the other. Speedups
    are against each case's baseline measured at 1 CPU (modelled curves: against the modelled
    baseline at 1 CPU). Hollow rings: the load generator shared the server's CPUs.
    Returns whether any point was drawn with a shared load generator.
    """
    by_config = {(c.app, c.python, c.group, c.config): c for c in cases}
    shared_any = False
    for case in cases:
        color, label = color_of(case), label_of(case)
        base_case = by_config.get((case.app, case.python, case.group, case.baseline))
        base = next((p["median"] for p in (base_case.measured if base_case else []) if p["cpus"] == 1), None)
        pts = sorted(case.measured, key=lambda p: p["cpus"])
        panels = [(ax_abs, 1.0)] + ([(ax_speed, 1.0 / base)] if base else [])
        for ax, scale in panels:
            if ax is None or not pts:
                continue
            xs = [p["cpus"] for p in pts]
            ax.errorbar(xs, [p["median"] * scale for p in pts],
                        yerr=[[(p["median"] - p["min"]) * scale for p in pts],
                              [(p["max"] - p["median"]) * scale for p in pts]],
                        label=label, color=color, capsize=3, **MEASURED_STYLE)
            for p in pts:
                if not p["disjoint"]:
                    shared_any = True
                    ax.plot([p["cpus"]], [p["median"] * scale], marker="o", markersize=10,
                            markerfacecolor="white", markeredgecolor=color, linestyle="none", zorder=4)
        model = sorted((r for r in predicted if (r["app"], r["python"], r["config"]) ==
                        (case.app, case.python, case.config)), key=lambda r: r["cpus"])
        if not model:
            continue
        xs = [r["cpus"] for r in model]
        style = {"label": None if pts else label, **MODELLED_STYLE,
                 **(model_style_of(case) if model_style_of else {})}
        if ax_abs is not None:
            ax_abs.plot(xs, [r["modelled"] for r in model], color=color, **style)
        if ax_speed is not None and not any(math.isnan(r["speedup"]) for r in model):
            ax_speed.plot(xs, [r["speedup"] for r in model], color=color, **style)
    return shared_any


def speedup_axis(ax) -> None:
    """Speedups on a log2 axis: 1x..16x evenly spaced, so measured 1-2x stay readable."""
    from matplotlib.ticker import FixedLocator, NullLocator

    ys = [y for line in ax.get_lines() for y in line.get_ydata() if y is not None and y == y and y > 0]
    lo, hi = (min(ys + [1.0]) / 1.25, max(ys + [2.0]) * 1.25)
    ax.set_yscale("log", base=2)
    ax.set_ylim(lo, hi)
    ticks = [t for t in (0.25, 0.5, 1, 1.5, 2, 2.5, 3, 4, 6, 8, 12, 16, 24, 32) if lo * 0.9 <= t <= hi * 1.1]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_yticklabels([f"{t:g}x" for t in ticks])


def cpu_axis(ax, max_cpus: int = 16, ylabel: str = "") -> None:
    """CPUs on a log2 axis, so that the measured 1..2 are not squeezed against the modelled 16."""
    ax.set_xlabel("server CPUs (= worker threads), log scale")
    ax.set_ylabel(ylabel)
    ax.set_xscale("log", base=2)
    ticks = [t for t in (1, 2, 3, 4, 6, 8, 12, 16) if t <= max_cpus]
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlim(0.85, max_cpus * 1.15)
    if ax.get_yscale() == "linear":
        ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)


SHARED_NOTE = ("hollow rings: the load generator had no CPU of its own at that point and shared the "
               "server's CPUs (this machine has too few CPUs to keep them apart)")
MODEL_NOTE = ("dashed = modelled (discrete-event model, parameters measured at 1 CPU, cross-CPU wake-ups "
              "and GIL switches priced as measured on this machine; beyond it the load generator is assumed to have its own CPUs)")
UNPRICED_MODEL_NOTE = (
    "dashed = modelled (discrete-event model, parameters measured at 1 CPU; cross-CPU wake-ups and GIL "
    "switches NOT measured on this machine (no gil_handoff.csv: that step needs 2 CPUs), so taken as free, "
    "which makes every multi-CPU curve optimistic; the load generator is assumed to have its own CPUs)")


def model_note(results: Path | None = None) -> str:
    """The footer's line on the dashed curves: whether this machine priced its wake-ups."""
    from experiments import gil_handoff

    return MODEL_NOTE if gil_handoff.wake_costs(results) else UNPRICED_MODEL_NOTE


def script_main(description: str, measure, plot, argv=None) -> None:
    """The command line every figure script shares.

    default: measure (unless --reuse and the CSV is there), then draw;  --plot-only: just draw.
    """
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--plot-only", action="store_true", help="redraw from the CSVs already there")
    parser.add_argument("--reuse", action="store_true",
                        help="measure only when the CSV this figure needs is missing")
    args = parser.parse_args(argv)
    if not args.plot_only:
        measure(reuse=args.reuse)
    for path in plot():
        print(f"wrote {path}")


def style_legend(ax, loc: str = "upper left", with_paper: bool = False, with_model: bool = True,
                 fontsize: float = 7, target=None, **legend_kw) -> None:
    """The axes' own entries (one per curve, by colour) plus what each line style means.
    legend_kw go to Axes.legend (e.g. bbox_to_anchor, to put the legend beside the axes)."""
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    # a modelled curve with an entry of its own comes after the measured ones, not first
    order = sorted(range(len(labels)), key=lambda i: ", modelled" in labels[i])
    handles, labels = [handles[i] for i in order], [labels[i] for i in order]
    handles.append(Line2D([], [], color="black", **MEASURED_STYLE))
    labels.append("solid, dots: measured (median)")
    if with_model:
        handles.append(Line2D([], [], color="black", **MODELLED_STYLE))
        labels.append("dashed: modelled")
    if with_paper and PAPER_LABEL not in " ".join(labels):
        handles.append(Line2D([], [], **PAPER_STYLE))
        labels.append(PAPER_LABEL)
    (target or ax).legend(handles, labels, fontsize=fontsize, loc=loc, **legend_kw)


def legend_outside(ax, **kw) -> None:
    """style_legend beside `ax`, right of it, so that the legend covers no data."""
    style_legend(ax, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **kw)


def write_derived(name: str, rows: list[dict], sources: list[str], folder: Path | None = None) -> Path:
    """A CSV computed from other CSVs (not measured now): written beside them, with the machine
    description of the measurement it came from, so it never claims a machine it did not run on."""
    folder = folder or results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    meta = {"derived_from": [f"{s}.csv" for s in sources],
            "machine": next((m for m in (read_machine(s, folder) for s in sources) if m), None)}
    (folder / f"{name}.machine.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return path
