"""`make reproduce`: every experiment, every figure, the notebooks, then the claims table.

Each step runs as its own process (`python -m experiments.<step>`), so one failing benchmark is
reported and the others still run; the claims it feeds then say "not run". For that to be true in
a fresh clone, which holds our committed CSVs, a measuring run first moves the CSVs already in the
results folder to its `previous/` folder: a step that fails leaves no CSV, its figure is redrawn
as "no data", and no claim, figure, model input or notebook of this run reads another run's (or
another machine's) numbers as its own. The time of every step goes to
artifact/results/reproduce_steps.csv (the artifact README's timing table comes from it). QUICK=1
asks every step for its short version.

    python -m experiments.reproduce [--plot-only] [--only STEP ...] [--skip-notebooks]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from experiments import common

# (step, module, what it does). Order: the model's inputs (gil, gilsplit) first, since most figures
# draw the model beside the measurements; the steps that only model (blocksize, model) after every
# CSV they read.
STEPS = [
    ("gil", "experiments.gil_handoff", "model input: what a cross-CPU wake-up costs"),
    ("gilsplit", "experiments.gil_split", "model input: the GIL-held part of each GIL-releasing call"),
    ("lines", "experiments.lines_changed", "count the lines that color the SFS crypto"),
    ("callbacks", "experiments.callback_cost", "callback cost vs asyncio; runtime speedup (3.11, 3.13t if built)"),
    ("sched", "experiments.sched_compare", "hash placement vs work stealing on skewed colors"),
    ("sfs", "experiments.sfs_throughput", "SFS-like server: throughput vs CPUs, all block sizes"),
    ("web", "experiments.web_throughput", "web server vs CPUs: colorloop, N-copy, nginx, Apache, aiohttp"),
    ("blocksize", "experiments.sfs_blocksize", "SFS block-size sweep (from the SFS CSV, with the model's column)"),
    ("model", "experiments.model_validation", "model: validation per point, prediction 1..16 CPUs"),
]


def run_step(module: str, plot_only: bool) -> tuple[int, float]:
    args = [sys.executable, "-m", module]
    if plot_only:
        args.append("--plot-only")
    start = time.monotonic()
    proc = subprocess.run(args, cwd=common.REPO)
    return proc.returncode, time.monotonic() - start


PREVIOUS = "previous"        # under the results folder: the CSVs a measuring run found there


def set_aside_earlier_results(results: Path) -> int:
    """Move every CSV and machine description in `results` to `results/previous/` (replacing what
    an older run left there); how many files moved. Nothing is deleted: a step that fails this
    time leaves its old CSV there to compare with, or to copy back."""
    earlier = [p for p in sorted(results.glob("*")) if p.is_file()
               and (p.name.endswith(".csv") or p.name.endswith(".machine.json"))]
    if not earlier:
        return 0
    previous = results / PREVIOUS
    if previous.exists():
        shutil.rmtree(previous)
    previous.mkdir()
    for path in earlier:
        path.rename(previous / path.name)
    return len(earlier)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot-only", action="store_true", help="redraw from existing CSVs, measure nothing")
    parser.add_argument("--only", nargs="*", choices=[s for s, _, _ in STEPS], help="run only these steps")
    parser.add_argument("--skip-notebooks", action="store_true")
    args = parser.parse_args(argv)

    from tqdm import tqdm

    steps = [s for s in STEPS if not args.only or s[0] in args.only]
    print(f"== colorloop reproduce ({'QUICK' if common.quick() else 'full'}) on {common.machine_summary()}",
          flush=True)
    if not args.plot_only and not args.only:
        moved = set_aside_earlier_results(common.results_dir())
        if moved:
            print(f"moved the {moved} result files already in {common.results_dir()} to "
                  f"{common.results_dir() / PREVIOUS}/: this run reads only its own", flush=True)
    timings, failed = [], []
    total = tqdm(steps, desc="reproduce", unit="step", position=0, leave=True, file=sys.stdout)
    for name, module, what in total:
        total.set_postfix_str(name)
        tqdm.write(f"\n== [{name}] {what}  (python -m {module})", file=sys.stdout)
        rc, seconds = run_step(module, args.plot_only)
        timings.append({"step": name, "module": module, "seconds": round(seconds, 1), "returncode": rc,
                        "quick": common.quick(), "plot_only": args.plot_only})
        if rc != 0:
            failed.append(name)
            tqdm.write(f"!! step {name} failed with status {rc}; continuing", file=sys.stdout)
            if not args.plot_only:      # its figure, if any, must not stay an earlier run's
                run_step(module, plot_only=True)
    total.close()

    from experiments import claims

    table = claims.build()          # before the notebooks: the last one shows this run's claims
    claims.write(table)
    if not args.skip_notebooks:
        from experiments import notebooks

        start = time.monotonic()
        try:
            from experiments import figlib

            notebooks.execute(notebooks.notebook_paths(), figlib.results_dir(), notebooks.EXECUTED)
            rc = 0
        except Exception as exc:        # report which notebook broke, keep the claims table
            print(f"!! notebooks failed: {exc}")
            failed.append("notebooks")
            rc = 1
        timings.append({"step": "notebooks", "module": "experiments.notebooks",
                        "seconds": round(time.monotonic() - start, 1), "returncode": rc,
                        "quick": common.quick(), "plot_only": args.plot_only})

    if not args.only and not args.plot_only:
        common.write_results("reproduce_steps", timings)
    claims.print_claims(table)
    print("\nsteps: " + ", ".join(f"{t['step']} {t['seconds']:.0f}s" + ("" if t["returncode"] == 0 else " FAILED")
                                  for t in timings))
    print(f"figures: {common.figures_dir()}/   CSVs: {common.results_dir()}/   claims: artifact/claims.md")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
