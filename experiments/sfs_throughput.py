"""Figure: the SFS-like server's read throughput against CPUs, unmodified (colors off) vs colored.

The paper's headline: libasync-smp SFS on 4 CPUs serves cached large files 2.5x as fast as
unmodified SFS on 1 CPU, because the per-connection crypto runs in parallel. We measure 1..(our
CPUs), model 1..16 from the 1-CPU costs, and draw the abstract's two points beside both.

    python -m experiments.sfs_throughput [--plot-only | --reuse]      (make fig-sfs)
"""
from __future__ import annotations

from pathlib import Path

from experiments import common, figlib, model_fit

NAME = "sfs_throughput"
CEILING = "sfs_crypto_ceiling"
HEADLINE_SUITE = "sfs2003"
COLORS = {(True, "colors_off"): "#7f7f7f", (True, "colors_on"): "#1f77b4",
          (False, "colors_off"): "#bcbd22", (False, "colors_on"): "#ff7f0e"}


def color_of(case) -> str:
    return COLORS[(case.config.startswith(HEADLINE_SUITE), case.mode)]


def measure(reuse: bool = False) -> None:
    """Run apps.sfs_like.bench once; its rows feed this figure and the block-size sweep."""
    if reuse and (common.results_dir() / f"{NAME}.csv").exists():
        print(f"reusing {common.results_dir() / NAME}.csv")
        return
    from apps.sfs_like import bench

    try:
        bench.run_benchmark(common.quick())   # writes sfs_throughput.csv and sfs_crypto_ceiling.csv
    except bench.BenchError as exc:           # it already names the configuration and the server's fate
        raise SystemExit(f"python -m experiments.{NAME}: error: {exc}") from None
    write_summary(figlib.read_csv(NAME))


def write_summary(df) -> None:
    """Median and spread of the trials per configuration, beside the per-trial CSV."""
    if df is None:
        return
    keys = [k for k in ("python", "suite", "block_kib", "mode", "cpus", "clients",
                        "client_cpus_disjoint") if k in df.columns]
    summary = figlib.summarize(df, keys, "mb_per_s")
    common.write_results(f"{NAME}_summary", summary.to_dict("records"))


def headline_block(df, suite: str) -> int | None:
    """The block size measured at the most CPU counts (ties: the largest): 'large cached files'."""
    sub = df[df["suite"] == suite]
    if not len(sub):
        return None
    counts = sub.groupby("block_kib")["cpus"].nunique()
    best = counts.max()
    return int(max(b for b, n in counts.items() if n == best))


def headline_cases(df, **costs) -> list:
    """What this figure models: each suite (the paper's first) at its headline block, both modes.
    `costs`: model_fit.sfs_cases's measured costs (default: read from the results folder)."""
    if df is None:
        return []
    suites = [HEADLINE_SUITE] + sorted(s for s in df["suite"].unique() if s != HEADLINE_SUITE)
    cases = []
    for suite in suites:
        block = headline_block(df, suite)
        if block is None:
            continue
        cases.extend(model_fit.sfs_cases(df[(df["suite"] == suite) & (df["block_kib"] == block)], **costs))
    return cases


def plot(results: Path | None = None, figures: Path | None = None) -> list[Path]:
    df = figlib.read_csv(NAME, results)
    fig, (ax_abs, ax_speed) = figlib.new_figure(
        "SFS-like server: throughput reading cached files vs CPUs", ncols=2, width=7.2)
    notes = []
    shared = False
    if df is None:
        figlib.no_data(ax_abs, f"{NAME}.csv")
    else:
        cases = headline_cases(df)
        predicted = model_fit.predictions(cases)
        shared = figlib.draw_scaling(ax_abs, ax_speed, cases, predicted, color_of,
                                     label_of=lambda c: c.config.replace("colors_off", "unmodified")
                                     .replace("colors_on", "colored"))
        notes.extend(sorted({n for c in cases for n in c.notes}))
        clients = sorted({c.clients for c in cases})
        notes.append(f"clients (one connection and one color each): {clients}; speedup = vs the same "
                     "suite/block uncolored on 1 CPU; bars = min..max of trials")
    figlib.plot_paper_points(ax_speed, figlib.PAPER_SFS_SPEEDUP,
                             label="paper (abstract): libasync-smp SFS vs unmodified, 1 and 4 CPUs")
    figlib.cpu_axis(ax_abs, ylabel="throughput (MB/s), median of trials")
    figlib.cpu_axis(ax_speed, ylabel="speedup vs unmodified on 1 CPU")
    figlib.speedup_axis(ax_speed)
    ax_abs.set_title("absolute, ours only", fontsize=10)
    ax_speed.set_title("normalised: comparable to the paper", fontsize=10)
    # Beside the axes: inside either panel it would cover measured points or the paper's star.
    figlib.legend_outside(ax_speed, with_paper=True)      # one legend for both panels
    notes.append(figlib.model_note(results))
    if shared:
        notes.append(figlib.SHARED_NOTE)
    footer = figlib.machine_footer([figlib.read_machine(NAME, results)], notes)
    return figlib.finish(fig, NAME, footer, figures)


def main(argv=None) -> None:
    figlib.script_main(__doc__.splitlines()[0], measure, lambda: plot(), argv)


if __name__ == "__main__":
    main()
