"""Table and figure: how many lines coloring the SFS-like server's crypto took.

The paper parallelised SFS's crypto by changing about 90 lines, in two modules, of about 12,000.
`apps.sfs_like.count_color_diff` counts ours: the lines that exist only to assign colors, against
the server's total. The claim to check is the proportion (a small, local change), not the count.

    python -m experiments.lines_changed [--plot-only | --reuse]      (make fig-lines)
"""
from __future__ import annotations

import importlib
from pathlib import Path

from experiments import common, figlib

NAME = "lines_changed"


def count() -> dict:
    """Ask the SFS-like server's own counter (it knows which lines are the coloring)."""
    module = importlib.import_module("apps.sfs_like.count_color_diff")
    for attr in ("count_color_diff", "count", "run"):
        fn = getattr(module, attr, None)
        if callable(fn):
            result = fn()
            break
    else:
        raise RuntimeError("apps.sfs_like.count_color_diff has no count_color_diff()/count() function")
    missing = {"changed_lines", "total_lines"} - set(result)
    if missing:
        raise RuntimeError(f"count_color_diff returned {sorted(result)}; missing {sorted(missing)}")
    return result


def measure(reuse: bool = False) -> None:
    if reuse and (common.results_dir() / f"{NAME}.csv").exists():
        print(f"reusing {common.results_dir() / NAME}.csv")
        return
    result = count()
    modules = result.get("modules", "")
    if isinstance(modules, dict):       # {module: {changed, total, lines}} or {module: n}
        parts = []
        for m, v in modules.items():
            if isinstance(v, dict):
                if v.get("changed"):
                    parts.append(f"{m} {v['changed']}/{v.get('total', '?')}")
            else:
                parts.append(f"{m} {v}")
        modules = "; ".join(parts)
    elif isinstance(modules, (list, tuple)):
        modules = ";".join(str(m) for m in modules)
    row = {"changed_lines": int(result["changed_lines"]), "total_lines": int(result["total_lines"]),
           "percent": 100.0 * int(result["changed_lines"]) / int(result["total_lines"]),
           "modules": modules,
           "paper_changed_lines": figlib.PAPER_LINES_CHANGED, "paper_total_lines": figlib.PAPER_LINES_TOTAL,
           "paper_percent": 100.0 * figlib.PAPER_LINES_CHANGED / figlib.PAPER_LINES_TOTAL}
    common.write_results(NAME, [row])
    common.print_table([row], ["changed_lines", "total_lines", "percent", "paper_changed_lines",
                               "paper_total_lines", "paper_percent"])


def plot(results: Path | None = None, figures: Path | None = None) -> list[Path]:
    df = figlib.read_csv(NAME, results)
    fig, (ax,) = figlib.new_figure("Lines changed to color the SFS server's crypto", width=8.5, height=3.6)
    notes = []
    paper_pct = 100.0 * figlib.PAPER_LINES_CHANGED / figlib.PAPER_LINES_TOTAL
    bars = [(f"{figlib.PAPER_LABEL}: SFS (C++)", paper_pct,
             f"about {figlib.PAPER_LINES_CHANGED} of about {figlib.PAPER_LINES_TOTAL:,} lines", "#444444")]
    if df is None:
        figlib.no_data(ax, f"{NAME}.csv")
    else:
        r = df.iloc[0]
        pct = 100.0 * r["changed_lines"] / r["total_lines"]
        bars.append(("ours, measured: SFS-like server (Python)", pct,
                     f"{int(r['changed_lines'])} of {int(r['total_lines']):,} lines", "#1f77b4"))
        if isinstance(r.get("modules"), str) and r["modules"]:
            notes.append(f"modules with changed lines (changed/module's lines): {r['modules']}; "
                         f"the server's other modules have none")
    ys = list(range(len(bars)))
    ax.barh(ys, [b[1] for b in bars], color=[b[3] for b in bars], height=0.55)
    for y, (_, pct, text, _) in zip(ys, bars):
        ax.text(pct, y, f"  {pct:.2f}%  ({text})", va="center", fontsize=9)
    ax.set_yticks(ys)
    ax.set_yticklabels([b[0] for b in bars], fontsize=9)
    ax.set_xlabel("lines changed, % of the server's lines")
    ax.set_xlim(0, max(b[1] for b in bars) * 2.2 + 0.1)
    ax.invert_yaxis()
    ax.grid(True, axis="x", alpha=0.3)
    notes.append("counted by apps.sfs_like.count_color_diff: lines that exist only to assign colors; "
                 "the paper's counts are the abstract's rounded numbers")
    footer = figlib.machine_footer([figlib.read_machine(NAME, results)], notes)
    return figlib.finish(fig, NAME, footer, figures)


def main(argv=None) -> None:
    figlib.script_main(__doc__.splitlines()[0], measure, lambda: plot(), argv)


if __name__ == "__main__":
    main()
