"""The model against every measured point, then its predictions for 1..16 CPUs.

Validation: each measured configuration (SFS suite x block x mode, web mode, runtime workload x
colors; every CPU count; 3.11 and 3.13t) is simulated with its own 1-CPU costs and its measured
CPU placement (load generator on its own CPU, or sharing the server's), and the relative error per
point goes to artifact/results/model_validation.csv (goal: within 15%). Predictions for 1..16 CPUs
go to model_predictions.csv. The figure: modelled vs measured per point, and the headline
speedups, modelled (dashed) beside measured points and the paper's 4-CPU results.

    python -m experiments.model_validation [--plot-only]        (make fig-model)
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from experiments import (callback_cost, figlib, gil_handoff, gil_split, model_fit, sfs_throughput,
                         web_throughput)

NAME = "model_validation"
PREDICTIONS = "model_predictions"
SOURCES = ("sfs_throughput", "web_throughput", "runtime_speedup", "gil_handoff", "gil_split")
GOAL_PCT = 15.0
APP_MARKERS = {"sfs": "o", "web": "s", "runtime": "^"}
APP_COLORS = {"sfs": "#1f77b4", "web": "#2ca02c", "runtime": "#9467bd"}
FREE_THREADED_COLORS = {"sfs": "#17becf", "web": "#d62728", "runtime": "#8c564b"}


def _cpus_allowed(name: str, results: Path | None) -> int:
    info = figlib.read_machine(name, results) or {}
    allowed = info.get("cpus_allowed")
    return len(allowed) if isinstance(allowed, list) and allowed else int(info.get("cpus_online") or 2)


def all_cases(results: Path | None = None) -> dict[str, list]:
    table = gil_handoff.wake_costs(results)
    switch = gil_handoff.switch_cost(results)
    dispatch = model_fit.dispatch_cost(figlib.read_csv("runtime_dispatch", results))
    held = gil_split.held_in_call_table(results)
    return {
        "sfs_throughput": model_fit.sfs_cases(figlib.read_csv("sfs_throughput", results), table,
                                              dispatch, switch, held),
        "web_throughput": model_fit.web_cases(figlib.read_csv("web_throughput", results), table,
                                              switch),
        "runtime_speedup": model_fit.runtime_cases(figlib.read_csv("runtime_speedup", results), table,
                                                   dispatch, switch, held),
        "gil_handoff": model_fit.handoff_cases(gil_handoff.handoff_points(results), table, switch,
                                               held),
    }


def headline_cases(results: Path | None = None) -> list:
    """What the prediction panel draws: SFS (paper's suite, large blocks) and the web server."""
    out = []
    wake = gil_handoff.wake_costs(results)
    switch = gil_handoff.switch_cost(results)
    dispatch = model_fit.dispatch_cost(figlib.read_csv("runtime_dispatch", results))
    sfs = figlib.read_csv("sfs_throughput", results)
    if sfs is not None:
        block = sfs_throughput.headline_block(sfs, sfs_throughput.HEADLINE_SUITE)
        if block is not None:
            sub = sfs[(sfs["suite"] == sfs_throughput.HEADLINE_SUITE) & (sfs["block_kib"] == block)]
            out.extend(model_fit.sfs_cases(sub, wake, dispatch, switch,
                                           gil_split.held_in_call_table(results)))
    web = model_fit.web_cases(figlib.read_csv("web_throughput", results), wake, switch)
    out.extend(web)
    if web and not any(c.python.endswith("t") for c in web):
        base = [c for c in web if c.mode == "colors_off" and c.python == "3.11"]
        on = [c for c in web if c.mode == "colors_on" and c.python == "3.11"]
        out.extend(model_fit.replace_python(c, "3.13t") for c in base + on)
    return out


def prediction_cases(results: Path | None = None) -> list:
    """Every modelled curve a figure draws, for model_predictions.csv: the headline cases (this
    figure; the web figure's), then every other SFS suite at its headline block (the SFS figure)
    and the runtime workloads (the callback-cost figure, which draws 1..8 of the 1..16 workers)."""
    cases = headline_cases(results)
    wake = gil_handoff.wake_costs(results)
    switch = gil_handoff.switch_cost(results)
    dispatch = model_fit.dispatch_cost(figlib.read_csv("runtime_dispatch", results))
    sfs = figlib.read_csv("sfs_throughput", results)
    others = sfs[sfs["suite"] != sfs_throughput.HEADLINE_SUITE] if sfs is not None else None
    if others is not None and len(others):
        cases.extend(sfs_throughput.headline_cases(others, wake_costs=wake, dispatch_s=dispatch, switch_s=switch,
                                                   held_in_call=gil_split.held_in_call_table(results)))
    cases.extend(callback_cost.model_cases(figlib.read_csv(callback_cost.SPEEDUP, results), results))
    return cases


def validate(results: Path | None = None) -> list[dict]:
    rows = []
    for source, cases in all_cases(results).items():
        rows.extend(model_fit.validate(cases, _cpus_allowed(source, results)))
    return rows


def plot(results: Path | None = None, figures: Path | None = None) -> list[Path]:
    rows = validate(results)
    cases = headline_cases(results)
    every = prediction_cases(results)            # starts with `cases`: the panel draws that part
    every_predicted = model_fit.predictions(every)
    drawn = {(c.app, c.python, c.config) for c in cases}
    predicted = [r for r in every_predicted if (r["app"], r["python"], r["config"]) in drawn]
    if rows:
        figlib.write_derived(NAME, rows, list(SOURCES), results)
    if every_predicted:
        figlib.write_derived(PREDICTIONS, every_predicted, list(SOURCES) + ["runtime_dispatch"], results)

    fig, (ax_val, ax_pred) = figlib.new_figure("Model: validation on every measured point, and prediction",
                                               ncols=2, width=7.2, height=5.4)
    notes = []
    if not rows:
        figlib.no_data(ax_val, "sfs_throughput.csv / web_throughput.csv / runtime_speedup.csv")
    else:
        df = pd.DataFrame(rows)
        for (app, python), sub in df.groupby(["app", "python"]):
            colors = FREE_THREADED_COLORS if str(python).endswith("t") else APP_COLORS
            for calib, part in sub.groupby("calibration"):
                ax_val.scatter(part["measured"], part["modelled"], marker=APP_MARKERS.get(app, "o"),
                               facecolors="none" if calib else colors.get(app),
                               edgecolors=colors.get(app), s=36,
                               label=f"{app}, Python {python}" + (" (calibration point)" if calib else ""))
        lo, hi = float(min(df["measured"].min(), df["modelled"].min())), float(max(df["measured"].max(), df["modelled"].max()))
        xs = [lo * 0.7, hi * 1.4]
        ax_val.plot(xs, xs, color="black", linewidth=0.8, label="modelled = measured")
        ax_val.fill_between(xs, [x * (1 - GOAL_PCT / 100) for x in xs], [x * (1 + GOAL_PCT / 100) for x in xs],
                            color="#cccccc", alpha=0.4, label=f"within ±{GOAL_PCT:.0f}% (goal)")
        ax_val.set_xscale("log")
        ax_val.set_yscale("log")
        ax_val.set_xlabel("measured (MB/s, requests/s or ops/s; median of trials)")
        ax_val.set_ylabel("modelled (same unit)")
        ax_val.legend(fontsize=6, loc="lower right")      # the diagonal leaves that corner empty
        ax_val.grid(True, alpha=0.3)
        checked = df[~df["calibration"].astype(bool)]
        within = (checked["error_pct"].abs() <= GOAL_PCT).sum()
        worst = checked.loc[checked["error_pct"].abs().idxmax()] if len(checked) else None
        title = f"{within} of {len(checked)} points within ±{GOAL_PCT:.0f}%"
        if worst is not None:
            title += f"; worst {worst['error_pct']:+.0f}% ({worst['app']} {worst['config']}, {worst['cpus']} CPUs)"
        ax_val.set_title(title, fontsize=8.5)
        notes.extend(sorted({n for cs in all_cases(results).values() for c in cs for n in c.notes}))

    def color_of(case):
        """Each series in the colour its own figure gives it."""
        if case.app == "sfs":
            return sfs_throughput.color_of(case)
        return web_throughput.COLORS.get((case.python, case.mode), "#000000")

    def label_of(case):
        app = "SFS " + case.config.replace("colors_on", "colored").replace("colors_off", "unmodified") \
            if case.app == "sfs" else "web " + case.config.replace("colorloop ", "")
        return f"{app}, Py {case.python}"

    shown = [c for c in cases if c.mode != "colors_off"]
    if shown:
        figlib.draw_scaling(None, ax_pred, cases, [r for r in predicted if r["mode"] != "colors_off"],
                            color_of, label_of=label_of,
                            model_style_of=lambda c: web_throughput.model_style(c, label_of(c))
                            if c.app == "web" else {})
    figlib.plot_paper_points(ax_pred, figlib.PAPER_SFS_SPEEDUP, label="paper (abstract): SFS")
    ax_pred.plot([1, 4], [figlib.PAPER_WEB_SPEEDUP[1], figlib.PAPER_WEB_SPEEDUP[4]], marker="P",
                 linestyle=":", color="black", markersize=10, label="paper (abstract): web server")
    figlib.cpu_axis(ax_pred, ylabel="speedup vs the same app uncolored on 1 CPU")
    figlib.speedup_axis(ax_pred)
    figlib.legend_outside(ax_pred, fontsize=6.5)
    ax_pred.set_title("prediction, 1..16 CPUs (dashed = modelled)", fontsize=10)
    if rows and not gil_split.held_in_call_table(results):
        note = ("GIL-held part of GIL-releasing calls not measured (gil_split: "
                f"{gil_split.unmeasured_reason(results)}): whole calls counted as GIL-free")
        print(f"note: {note}", file=sys.stderr)
        notes.append(note)
    notes.append(figlib.model_note(results))
    footer = figlib.machine_footer([figlib.read_machine(s, results) for s in SOURCES], notes)
    return figlib.finish(fig, NAME, footer, figures)


def main(argv=None) -> None:
    figlib.script_main(__doc__.splitlines()[0], lambda reuse=False: None, lambda: plot(), argv)


if __name__ == "__main__":
    main()
