"""Figure: the web server's throughput on small cached files against CPUs, with N-copy and the peers.

The paper's web server gained 1.5x on 4 CPUs: little computation per request, so the serial parts
and the kernel bound it. Ours runs its callbacks in Python, so on 3.11 the GIL bounds colored
threads; N-copy (one process per CPU) and the free-threaded 3.13t show what is left without it.
nginx, Apache and aiohttp are measured in the same run as reference points (not modelled).

    python -m experiments.web_throughput [--plot-only | --reuse]      (make fig-web)
"""
from __future__ import annotations

import os

import sys
from pathlib import Path

from experiments import common, figlib, model_fit

NAME = "web_throughput"
# One colour per series in every figure (model_validation draws these too, beside the SFS
# server's blue and grey: so no web series is blue or grey).
COLORS = {("3.11", "colors_off"): "#bcbd22", ("3.11", "colors_on"): "#2ca02c",
          ("3.11", "ncopy"): "#17becf", ("3.13t", "colors_on"): "#d62728",
          ("3.13t", "colors_off"): "#e377c2", ("3.13t", "ncopy"): "#8c564b",
          "nginx": "#9467bd", "apache": "#393b79", "aiohttp": "#ff7f0e"}


def measure(reuse: bool = False) -> None:
    """The web benchmark on 3.11 (every server), then the colorloop server on 3.13t if it is built."""
    if reuse and (common.results_dir() / f"{NAME}.csv").exists():
        print(f"reusing {common.results_dir() / NAME}.csv")
        return
    from apps.webserver import bench

    failed = None
    before = bench.load_before_run()
    try:
        rows = list(bench.run_benchmark(common.quick()))
    except bench.BenchmarkErrors as exc:      # keep every measurement; say which had errors
        rows, failed = list(exc.rows), exc
    rows.extend(_freethreaded_rows())
    common.write_results(NAME, rows, extra={"tools": common.tool_versions(("wrk", "nginx", "apache2")),
                                            **before, "loadavg_after": os.getloadavg()})
    df = figlib.read_csv(NAME)
    keys = [k for k in ("python", "server", "mode", "cpus", "connections", "client_cpus_disjoint")
            if k in df.columns]
    common.write_results(f"{NAME}_summary", figlib.summarize(df, keys, "requests_per_s").to_dict("records"))
    if failed is not None:
        raise SystemExit(f"web benchmark saw errors (rows kept in {NAME}.csv): {failed}")


def _freethreaded_rows() -> list[dict]:
    from experiments import freethreaded

    if freethreaded.ft_python() is None:
        print("3.13t not built (make freethreaded): the figure shows 3.13t as modelled only",
              file=sys.stderr)
        return []
    args = ["--servers", "colorloop"] + (["--quick"] if common.quick() else [])
    try:
        return freethreaded.run_module_json("apps.webserver.bench", args)
    except (freethreaded.FreeThreadedUnavailable, freethreaded.BenchmarkFailed) as exc:
        print(f"3.13t web benchmark failed, drawn as modelled only: {exc}", file=sys.stderr)
        return []


def _label(case) -> str:
    if case.app == "peer":
        return case.config
    mode = {"colors_off": "colors off (unmodified)", "colors_on": "colored",
            "ncopy": "N-copy (N processes)"}.get(case.mode, case.mode)
    return f"colorloop {mode}, Python {case.python}"


# The model puts the colored 3.13t server exactly on the N-copy one (no GIL: both are the same work
# run in parallel), so drawn alike one would hide the other: N-copy goes underneath, wide, and the
# colored curve on top of it, with its own dash pattern and a marker at each modelled point.
UNDER = ("3.13t", "ncopy")
OVER = ("3.13t", "colors_on")
# Both uncolored servers are 1.0x in the speedup panel: 3.11's goes wide underneath 3.13t's.
UNDER_OFF = ("3.11", "colors_off")


def model_style(case, name: str | None = None) -> dict:
    """What changes in a web case's modelled line (figlib.draw_scaling's model_style_of); `name`:
    the case's legend label (default: this figure's)."""
    key = (case.python, case.mode)
    name = name or _label(case)
    if key == UNDER:
        return {"linewidth": 4.0, "zorder": 2.5, "label": f"{name}, modelled (wide, under the colored one)"}
    if key == UNDER_OFF:
        return {"linewidth": 4.0, "zorder": 2.4, "label": f"{name}, modelled (wide: at 1.0x it lies "
                                                          "under 3.13t's colors off)"}
    if key == OVER:
        return {"linestyle": (0, (3, 1.5)), "linewidth": 1.4, "marker": "v", "markersize": 4,
                "zorder": 6, "label": f"{name}, modelled (markers, drawn over N-copy)"}
    return {}


def _color(case) -> str:
    if case.app == "peer":
        return COLORS.get(case.config.split()[0], "#000000")
    return COLORS.get((case.python, case.mode), "#000000")


def peer_cases(df) -> list:
    cases = []
    for (python, server), sub in df[df["server"] != "colorloop"].groupby(["python", "server"]):
        name = f"{server}" + ("" if python == "3.11" else f" ({python})")
        cases.append(model_fit.Case(app="peer", python=str(python), config=name, mode="peer",
                                    held_s=0.0, free_s=0.0, clients=1, unit="requests/s",
                                    baseline=name, group=name,
                                    measured=model_fit._measured_points(sub, "requests_per_s")))
    return cases


def plot(results: Path | None = None, figures: Path | None = None) -> list[Path]:
    df = model_fit.normalise_web_modes(figlib.read_csv(NAME, results))
    fig, (ax_abs, ax_speed) = figlib.new_figure(
        "Web server: small cached files, throughput vs CPUs", ncols=2, width=7.4, height=5.6)
    notes, shared = [], False
    if df is None:
        figlib.no_data(ax_abs, f"{NAME}.csv")
    else:
        cases = model_fit.web_cases(df)
        if cases and not any(c.python.endswith("t") for c in cases):
            # No 3.13t measurement: draw what the model says the same costs give without the GIL.
            mine = [c for c in cases if c.mode in ("colors_off", "colors_on") and c.python == "3.11"]
            cases.extend(model_fit.replace_python(c, "3.13t") for c in mine)
            notes.append("Python 3.13t curve: modelled only (3.11's measured costs with no GIL), "
                         "no 3.13t measurement in the CSV")
        predicted = model_fit.predictions(cases)
        shared = figlib.draw_scaling(ax_abs, ax_speed, cases + peer_cases(df), predicted, _color,
                                     label_of=_label, model_style_of=model_style)
        notes.extend(sorted({n for c in cases for n in c.notes}))
        conns = sorted(set(int(x) for x in df["connections"].dropna())) if "connections" in df else []
        notes.append(f"connections: {conns}; speedup = vs the same server (colorloop: colors off) on 1 CPU "
                     "of the same Python; peers are measured only")
    figlib.plot_paper_points(ax_speed, figlib.PAPER_WEB_SPEEDUP,
                             label="paper (abstract): libasync-smp web server, 1 and 4 CPUs")
    if df is not None:
        ax_abs.set_yscale("log")
    figlib.cpu_axis(ax_abs, ylabel="requests/s, median of trials")
    figlib.cpu_axis(ax_speed, ylabel="speedup vs 1 CPU")
    figlib.speedup_axis(ax_speed)
    ax_abs.set_title("absolute, log scale", fontsize=10)
    ax_speed.set_title("normalised: comparable to the paper", fontsize=10)
    figlib.legend_outside(ax_speed, with_paper=True, fontsize=6.5)      # one legend for both panels
    notes.append(figlib.model_note(results))
    if shared:
        notes.append(figlib.SHARED_NOTE)
    footer = figlib.machine_footer([figlib.read_machine(NAME, results)], notes)
    return figlib.finish(fig, NAME, footer, figures)


def main(argv=None) -> None:
    figlib.script_main(__doc__.splitlines()[0], measure, lambda: plot(), argv)


if __name__ == "__main__":
    main()
