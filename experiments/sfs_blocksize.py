"""Figure: SFS block-size sweep, i.e. where the crypto starts to outweigh the interpreter.

Coloring only pays for the part of a read that runs outside the GIL (cipher + MAC). Per read, the
interpreter's share is roughly constant and the crypto grows with the block, so small blocks are
interpreter-bound (no speedup on 3.11) and large blocks crypto-bound (speedup up to the CPU count).
Left: the two costs per read at 1 CPU, per suite. Right: the colored speedup over unmodified at
our CPU count (measured) and at 4 CPUs (modelled), against the paper's 2.5x on 4 CPUs.

Uses the same CSV as the SFS throughput figure (runs that benchmark only when the CSV is missing).

    python -m experiments.sfs_blocksize [--plot-only | --reuse]      (make fig-blocksize)
"""
from __future__ import annotations

import math
from pathlib import Path

from experiments import figlib, model_fit, sfs_throughput

NAME = "sfs_blocksize"
SOURCE = sfs_throughput.NAME
SUITE_COLORS = {"sfs2003": "#1f77b4", "modern": "#ff7f0e"}
MODEL_CPUS = 4


def measure(reuse: bool = False) -> None:
    sfs_throughput.measure(reuse=True)      # the sweep is in the SFS benchmark's rows


def crossover(block_costs: list[tuple[int, float, float]]) -> float | None:
    """The block size (KiB, interpolated on log2 scale) where crypto time first exceeds the rest."""
    pts = sorted((b, c, o) for b, c, o in block_costs if b > 0 and c > 0 and o > 0)
    if pts and pts[0][1] >= pts[0][2]:
        return float(pts[0][0])
    for (b0, c0, o0), (b1, c1, o1) in zip(pts, pts[1:]):
        if c1 >= o1:        # log(crypto/other) is close to linear in log(block): interpolate there
            d0, d1 = math.log(c0 / o0), math.log(c1 / o1)
            t = d0 / (d0 - d1)
            return float(2 ** (math.log2(b0) + t * (math.log2(b1) - math.log2(b0))))
    return None


def crossover_note(suite: str, blocks: list[int], x: float | None) -> str | None:
    """The figure's words for `crossover`: where crypto already outweighs the interpreter at the
    smallest block measured, the crossing is at or below it, not at it (a QUICK run measures
    one block of the modern suite)."""
    if x is None:
        return None
    smallest = min(blocks)
    if x <= smallest:
        if len(blocks) == 1:
            return f"{suite}: crypto outweighs the interpreter at the one block measured ({smallest} KiB)"
        return f"{suite}: crypto outweighs the interpreter at every block measured ({smallest} KiB and up)"
    return f"{suite}: crypto outweighs the interpreter from about {x:.0f} KiB per read"


def sweep_rows(df) -> list[dict]:
    """One row per suite and block: costs at 1 CPU, measured and modelled colored speedups."""
    rows = []
    top = int(df["cpus"].max())
    cases = {(c.python, c.group, c.mode): c for c in model_fit.sfs_cases(df)}
    for (python, group, mode), case in cases.items():
        off = cases.get((python, group, "colors_off"))
        if mode != "colors_on" or off is None:
            continue
        suite, block = group.split()[0], int(group.split()[1].rstrip("KiB"))
        sub = df[(df["suite"] == suite) & (df["block_kib"] == block) & (df["python"] == python)]
        med = sub.groupby(["mode", "cpus"])["mb_per_s"].median()
        base = med.get(("colors_off", 1))
        on_top = med.get(("colors_on", top))
        rows.append({"python": python, "suite": suite, "block_kib": block,
                     # the unmodified server's costs per read at 1 CPU
                     "crypto_s_per_read": off.free_s, "other_s_per_read": off.held_s,
                     "crypto_share": off.free_s / (off.free_s + off.held_s),
                     "measured_cpus": top,
                     "measured_speedup": (on_top / base) if base and on_top else float("nan"),
                     "modelled_cpus": MODEL_CPUS,
                     "modelled_speedup": case.predict(MODEL_CPUS) / off.predict(1)})
    return sorted(rows, key=lambda r: (r["python"], r["suite"], r["block_kib"]))


def plot(results: Path | None = None, figures: Path | None = None) -> list[Path]:
    import pandas as pd

    df = figlib.read_csv(SOURCE, results)
    fig, (ax_cost, ax_speed) = figlib.new_figure(
        "SFS-like server: block-size sweep (where crypto outweighs the interpreter)", ncols=2)
    notes = []
    if df is None:
        figlib.no_data(ax_cost, f"{SOURCE}.csv")
    else:
        rows = sweep_rows(df)
        table = pd.DataFrame(rows)
        if len(table):
            figlib.write_derived(NAME, rows, [SOURCE], results)
            for suite, sub in table.groupby("suite"):
                color = SUITE_COLORS.get(suite, None)
                ax_cost.plot(sub["block_kib"], sub["crypto_s_per_read"] * 1e6, color=color,
                             label=f"{suite}: cipher+MAC+send (GIL released), measured (solid, dots)",
                             **figlib.MEASURED_STYLE)
                # measured too, so solid as well (dashes mean modelled): told apart by hollow squares
                ax_cost.plot(sub["block_kib"], sub["other_s_per_read"] * 1e6, color=color,
                             label=f"{suite}: interpreter (GIL held), measured (solid, hollow squares)",
                             **{**figlib.MEASURED_STYLE, "marker": "s", "markerfacecolor": "white"})
                x = crossover(list(zip(sub["block_kib"], sub["crypto_s_per_read"], sub["other_s_per_read"])))
                if x is not None:
                    ax_cost.axvline(x, color=color, linestyle=":", linewidth=1)
                    notes.append(crossover_note(suite, [int(b) for b in sub["block_kib"]], x))
                top = int(sub["measured_cpus"].iloc[0])
                ax_speed.plot(sub["block_kib"], sub["measured_speedup"], color=color,
                              label=f"{suite}: colored vs unmodified, {top} CPUs, measured",
                              **figlib.MEASURED_STYLE)
                # hollow diamonds: the model is computed per measured block, and a series of one
                # block (a QUICK run's modern suite) would otherwise draw nothing
                ax_speed.plot(sub["block_kib"], sub["modelled_speedup"], color=color,
                              label=f"{suite}: colored vs unmodified, {MODEL_CPUS} CPUs, modelled",
                              **{**figlib.MODELLED_STYLE, "marker": "D", "markersize": 5,
                                 "markerfacecolor": "white"})
    ax_speed.axhline(figlib.PAPER_SFS_SPEEDUP[4], **{**figlib.PAPER_STYLE, "marker": None},
                     label="paper (abstract): 2.5x on 4 CPUs (large cached files)")
    blocks = sorted(set(int(b) for b in df["block_kib"])) if df is not None else []
    for ax in (ax_cost, ax_speed):
        ax.set_xscale("log", base=2)
        if blocks:
            ax.set_xticks(blocks)
            ax.set_xticklabels([str(b) for b in blocks])
            ax.minorticks_off()
        ax.set_xlabel("block size per read (KiB), log scale")
        ax.grid(True, alpha=0.3)
    ax_cost.set_yscale("log")
    ax_cost.set_ylabel("time per read at 1 CPU (µs), log scale")
    ax_speed.set_ylabel("speedup vs unmodified on 1 CPU")
    ax_speed.set_ylim(bottom=0)
    ax_cost.set_title("costs per read (what the model is given)", fontsize=10)
    ax_speed.set_title("what coloring buys", fontsize=10)
    # Headroom above the curves, so that the legends (upper left) cover none of them.
    def top(ax):
        ys = [y for line in ax.get_lines() for y in line.get_ydata() if y == y and y > 0]
        return max(ys) if ys else None
    if top(ax_cost):
        ax_cost.set_ylim(top=top(ax_cost) * 6)
    if top(ax_speed):
        ax_speed.set_ylim(top=top(ax_speed) * 1.5)
    if ax_cost.get_legend_handles_labels()[0]:
        ax_cost.legend(fontsize=7, loc="upper left")
    ax_speed.legend(fontsize=7, loc="upper left")
    notes.append(figlib.model_note(results))
    footer = figlib.machine_footer([figlib.read_machine(SOURCE, results)], notes)
    return figlib.finish(fig, NAME, footer, figures)


def main(argv=None) -> None:
    figlib.script_main(__doc__.splitlines()[0], measure, lambda: plot(), argv)


if __name__ == "__main__":
    main()
