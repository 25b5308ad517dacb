"""The claims table over our last full runs, as a markdown table for artifact/README.md (A.4).

One run's value says little on a shared, noisy machine; the spread over several full runs says
how far a reader's own run may land from ours. Each full `make reproduce` is committed with its
`artifact/results/claims.csv`, so git history holds every run's table: this reads the last N of
them (commits whose subject says "full make reproduce") and prints, per claim of the committed
table (HEAD's wording), the newest run's value, the range over the runs that had that claim, and
in how many of them it was met.
With `--model`, it prints instead the model's points (A.5) that missed its 15% goal in any of
those runs, with their error's range. Generated rather than typed, so the README's numbers cannot
drift from the CSVs.

    python tools/claims_history.py [--runs 8] [--model] [--repo .]
"""
from __future__ import annotations

import argparse
import csv
import io
import re
import subprocess
import sys
from pathlib import Path

CLAIMS_CSV = "artifact/results/claims.csv"
MODEL_CSV = "artifact/results/model_validation.csv"
MARKER = "full make reproduce"
GOAL_PCT = 15.0
# gil_handoff's points are labelled with each run's own measured lengths ("7 us held, 9 us free"
# in one run, "8 us held, 10 us free" in another); they are compared by the nominal lengths the
# step aims for: interpreter loops of about 3, 7, 14 and 40 us, sha256 over 16 or 32 KiB.
NOMINAL_HELD_US = (3, 7, 14, 40)
NOMINAL_FREE_US = (9, 18)
HANDOFF = re.compile(r"GIL hand-off, (\d+) us held, (\d+) us free")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


def full_runs(repo: Path, runs: int) -> list[tuple[str, str]]:
    """(commit, date) of the newest `runs` commits that committed a full run's claims table."""
    log = git(repo, "log", "--format=%h %ad %s", "--date=format:%Y-%m-%d %H:%M", "--", CLAIMS_CSV)
    found = []
    for line in log.splitlines():
        commit, day, clock, subject = line.split(" ", 3)
        if MARKER in subject and "QUICK" not in subject:
            found.append((commit, f"{day} {clock}"))
    return found[:runs]


def has_file(repo: Path, commit: str, path: str) -> bool:
    return subprocess.run(["git", "-C", str(repo), "cat-file", "-e", f"{commit}:{path}"],
                          capture_output=True).returncode == 0


def read_csv(repo: Path, commit: str, path: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(git(repo, "show", f"{commit}:{path}"))))


def read_claims(repo: Path, commit: str) -> dict[str, dict]:
    return {row["key"]: row for row in read_csv(repo, commit, CLAIMS_CSV)}


def nominal(config: str) -> str:
    """A point's name, with gil_handoff's measured lengths replaced by the nominal ones."""
    found = HANDOFF.fullmatch(config)
    if not found:
        return config
    held, free = (min(values, key=lambda v: abs(v - int(got)))
                  for values, got in ((NOMINAL_HELD_US, found[1]), (NOMINAL_FREE_US, found[2])))
    return f"GIL hand-off, about {held} us held, {free} us free"


def checked_points(rows: list[dict]) -> dict[tuple, float]:
    """One run's checked (non-calibration) points, by (app, python, nominal config, CPUs): error %."""
    return {(r["app"], r["python"], nominal(r["config"]), int(r["cpus"])): float(r["error_pct"])
            for r in rows if r["calibration"] != "True"}


def _pct(error: float) -> str:
    """A signed whole percentage; an error that rounds to 0 is "0%", not "-0%"."""
    return f"{round(error):+d}%" if round(error) else "0%"


def model_table(runs: list[list[dict]]) -> str:
    """The checked points that missed the goal in any run: newest run's error, range, and in how
    many runs the point was within the goal."""
    points = [checked_points(rows) for rows in runs]
    errors: dict[tuple, list[float]] = {}
    for run in points:
        for point, error in run.items():
            errors.setdefault(point, []).append(error)
    lines = ["| point | CPUs | last run | range over our runs | within 15% in |", "|---|---|---|---|---|"]
    for point, errs in errors.items():
        if all(abs(e) <= GOAL_PCT for e in errs):
            continue
        app, python, config, cpus = point
        last = _pct(points[0][point]) if point in points[0] else "-"
        within = sum(abs(e) <= GOAL_PCT for e in errs)
        lines.append(f"| {app} {python}: {config} | {cpus} | {last} | {_pct(min(errs))} .. "
                     f"{_pct(max(errs))} | {within} of {len(errs)} |")
    summary = ", ".join(f"{sum(abs(e) <= GOAL_PCT for e in run.values())} of {len(run)}" for run in points)
    return f"Points within 15%, newest run first: {summary}.\n\n" + "\n".join(lines)


def formatter(ours_text: str):
    """Format a range in the unit the claim's own value is written in ("1.88x", "4.18%", "58 of
    1386 (4.18%)": its first word)."""
    first = ours_text.split()[0] if ours_text.split() else ""
    if first.endswith("x"):
        return lambda v: f"{v:.2f}x"
    if first.endswith("%"):
        return lambda v: f"{v:.3g}%"
    return lambda v: f"{v:.0f}"


def table(wording: dict[str, dict], tables: list[dict[str, dict]]) -> str:
    """`wording`: the committed claims table (names, order, expected ranges); `tables`: the runs',
    newest first."""
    lines = ["| claim | expected | last run | range over our runs | met in |", "|---|---|---|---|---|"]
    for key, row in wording.items():
        values, met = [], 0
        newest = tables[0].get(key)
        for runs in tables:
            other = runs.get(key)
            if other is None or other["ours_value"] in ("", "nan"):
                continue
            values.append(float(other["ours_value"]))
            met += other["status"] == "met"
        fmt = formatter(row["ours"])
        spread = f"{fmt(min(values))} .. {fmt(max(values))}" if values else "-"
        last = newest["ours"] if newest else "-"
        lines.append(f"| {row['claim']} | {row['expected']} | {last} | {spread} | "
                     f"{met} of {len(values)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tools/claims_history.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=8, help="how many of the newest full runs (default 8)")
    parser.add_argument("--model", action="store_true",
                        help="the model's points that missed 15%% in any run, instead of the claims")
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    try:
        runs = full_runs(args.repo, args.runs)
    except (subprocess.CalledProcessError, FileNotFoundError) as err:
        print(f"claims_history: cannot read git history of {args.repo}: {err}", file=sys.stderr)
        return 1
    if not runs:
        print(f"claims_history: no commit of {CLAIMS_CSV} says '{MARKER}' (a shallow clone?)",
              file=sys.stderr)
        return 1
    print(f"Our {len(runs)} newest full runs (committed {runs[-1][1]} to {runs[0][1]} UTC: "
          f"{', '.join(c for c, _ in runs)}):\n")
    if args.model:
        tables = [read_csv(args.repo, c, MODEL_CSV) for c, _ in runs if has_file(args.repo, c, MODEL_CSV)]
        if not tables:
            print(f"claims_history: none of those runs committed {MODEL_CSV}", file=sys.stderr)
            return 1
        print(model_table(tables))
    else:
        print(table(read_claims(args.repo, "HEAD"), [read_claims(args.repo, c) for c, _ in runs]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
