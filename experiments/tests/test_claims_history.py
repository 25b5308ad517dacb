"""tools/claims_history.py: the README's table of our full runs, read from git history."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "claims_history.py"
FIELDS = ["key", "claim", "paper", "ours", "ours_value", "expected", "status", "evidence"]


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                   check=True, capture_output=True)


def commit_claims(repo: Path, rows: list[dict], subject: str) -> None:
    path = repo / "artifact" / "results" / "claims.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({"paper": "-", "evidence": "make x", **row})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", subject)


def speedup(value: float, met: bool, claim: str = "speedup on 2 CPUs") -> dict:
    return {"key": "speed", "claim": claim, "ours": f"{value:.2f}x", "ours_value": value,
            "expected": "1.5 .. 2", "status": "met" if met else "NOT met"}


def lines(count: int, share: float) -> dict:
    return {"key": "lines", "claim": "lines changed", "ours": f"{count} of 1000 ({share}%)",
            "ours_value": count, "expected": "<= 100", "status": "met"}


def run(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), "--repo", str(repo), *args],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def repo(tmp_path):
    git(tmp_path, "init", "-q")
    commit_claims(tmp_path, [speedup(1.40, False)], "results: full make reproduce of the oldest run")
    commit_claims(tmp_path, [speedup(1.70, True), lines(60, 6.0)], "results: full make reproduce, run 2")
    commit_claims(tmp_path, [speedup(9.99, True), lines(1, 0.1)], "results: make reproduce QUICK=1, full make reproduce's short form")
    commit_claims(tmp_path, [speedup(1.60, True), lines(58, 5.8)], "results: full make reproduce, run 3")
    commit_claims(tmp_path, [speedup(1.60, True, "speedup, reworded"), lines(58, 5.8)], "claims: wording")
    return tmp_path


def row_of(out: str, claim: str) -> list[str]:
    found = [line for line in out.splitlines() if line.startswith(f"| {claim} |")]
    assert len(found) == 1, out
    return [cell.strip() for cell in found[0].strip("|").split("|")]


def test_ranges_span_the_full_runs_only_with_the_committed_wording(repo):
    out = run(repo).stdout
    assert "Our 3 newest full runs" in out
    # HEAD's wording; the newest run's value; QUICK's 9.99x is no full run
    assert row_of(out, "speedup, reworded") == ["speedup, reworded", "1.5 .. 2", "1.60x", "1.40x .. 1.70x", "2 of 3"]
    # a claim the oldest run lacked counts only the runs that had it; a count stays a count
    assert row_of(out, "lines changed") == ["lines changed", "<= 100", "58 of 1000 (5.8%)", "58 .. 60", "2 of 2"]


def test_runs_limits_the_history(repo):
    out = run(repo, "--runs", "1").stdout
    assert row_of(out, "speedup, reworded")[3:] == ["1.60x .. 1.60x", "1 of 1"]


def test_no_full_run_in_history_is_one_line_of_error(tmp_path):
    git(tmp_path, "init", "-q")
    commit_claims(tmp_path, [speedup(1.5, True)], "claims: only wording")
    done = run(tmp_path)
    assert done.returncode == 1
    assert "no commit of artifact/results/claims.csv says 'full make reproduce'" in done.stderr
    assert "Traceback" not in done.stderr


def commit_model(repo: Path, errors: dict[str, float], subject: str, speed: float) -> None:
    path = repo / "artifact" / "results" / "model_validation.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, ["app", "python", "config", "cpus", "calibration", "error_pct"])
        writer.writeheader()
        writer.writerow({"app": "web", "python": "3.11", "config": "colored", "cpus": 1,
                         "calibration": True, "error_pct": 90.0})     # a calibration point never counts
        for config, error in errors.items():
            writer.writerow({"app": "runtime", "python": "3.11", "config": config, "cpus": 2,
                             "calibration": False, "error_pct": error})
    commit_claims(repo, [speedup(speed, True)], subject)


def test_model_lists_the_points_that_ever_missed_by_their_nominal_lengths(tmp_path):
    git(tmp_path, "init", "-q")
    commit_model(tmp_path, {"GIL hand-off, 8 us held, 10 us free": -25.0, "sha256": 3.0,
                            "chacha": -20.0}, "results: full make reproduce, run 1", 1.6)
    commit_model(tmp_path, {"GIL hand-off, 7 us held, 9 us free": -12.0, "sha256": -16.0,
                            "chacha": -0.3}, "results: full make reproduce, run 2", 1.7)
    out = run(tmp_path, "--model").stdout
    assert "Points within 15%, newest run first: 2 of 3, 1 of 3." in out
    assert row_of(out, "runtime 3.11: chacha") == ["runtime 3.11: chacha", "2", "0%", "-20% .. 0%", "1 of 2"]
    assert row_of(out, "runtime 3.11: GIL hand-off, about 7 us held, 9 us free") == [
        "runtime 3.11: GIL hand-off, about 7 us held, 9 us free", "2", "-12%", "-25% .. -12%", "1 of 2"]
    assert row_of(out, "runtime 3.11: sha256") == ["runtime 3.11: sha256", "2", "-16%", "-16% .. +3%", "1 of 2"]
    assert "| web 3.11: colored |" not in out
