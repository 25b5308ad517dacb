"""tools/diagnostics/ scripts run and print what their READMEs say they print."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools" / "diagnostics"


def run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(TOOLS / script), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_callback_gaps_reports_both_worker_counts():
    out = run("callback_gaps.py", "--workload", "sha256", "--seconds", "0.02")
    assert "sha256, 1 worker(s)" in out and "sha256, 2 worker(s)" in out
    assert out.count("gap between calls median") == 3      # one worker, then two


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="aead_gil.py needs 2 CPUs")
def test_aead_gil_compares_the_three_calls():
    out = run("aead_gil.py", "--seconds", "0.02")
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == ["encrypt", "encrypt_into", "sha256-32k"]
    assert all(line.endswith("x") for line in lines)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_sfs_faults_measures_both_thresholds_on_each_cpu_count():
    out = run("sfs_faults.py", "--block-kib", "64")
    lines = out.splitlines()
    assert len(lines) == 2 * len({line.split(", ")[2] for line in lines})
    assert all("page faults per READ" in line for line in lines)
    assert sum("glibc's thresholds" in line for line in lines) == len(lines) // 2


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="gil_trace.py needs 2 CPUs")
def test_gil_trace_reports_ratio_hand_offs_and_free_parts():
    out = run("gil_trace.py", "--spin", "400", "--kib", "16", "--ops", "400")
    lines = out.splitlines()
    assert lines[0].startswith("h = 400 loop iterations, f = sha256 over 16 KiB: 2 threads vs 1 ")
    share = float(lines[1].split("on ")[1].split(" of")[0])
    assert 0.0 <= share <= 1.0
    assert "GIL-free part alone: median" in lines[2] and lines[2].endswith("no longer than alone + 3 us")


def test_gil_trace_refuses_too_few_ops():
    done = subprocess.run([sys.executable, str(TOOLS / "gil_trace.py"), "--ops", "10"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "--ops must be at least 50" in done.stderr
