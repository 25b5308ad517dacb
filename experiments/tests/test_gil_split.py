"""The GIL-held part of GIL-releasing calls: reading perf's events, and what the model does with it."""
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from experiments import common, gil_split, model_fit

PERF_TEXT = """\
   77 100.000000100: colorloop_5:save_5:
   99 100.000000150: colorloop_5:save_5:
   77 100.000001100: colorloop_5:restore_5:
   77 100.000003100: colorloop_5:save_5:
   77 100.000007100: colorloop_5:restore_5:
   77 100.000009000: colorloop_5:save_5:
garbage line
"""


def test_only_the_measured_threads_events_are_read_in_time_order():
    events = gil_split.parse_events(PERF_TEXT, 77)
    assert [kind for _, kind in events] == ["save", "restore", "save", "restore", "save"]
    assert events == sorted(events)


def test_time_between_release_and_retake_is_gil_free_the_rest_held():
    events = gil_split.parse_events(PERF_TEXT, 77)
    # a loop of 2 calls from t=100.000000600 to t=100.000009600: the first window is cut at the
    # loop's start (0.5 us inside it), the one still open at the end counts to the end (0.6 us)
    t0, t1 = 100.0000006, 100.0000096
    got = gil_split.split(events, t0, t1, 2)
    free = 0.5e-6 + 4e-6 + 0.6e-6
    assert got["free_s_per_call"] == pytest.approx(free / 2, rel=1e-6)
    assert got["held_s_per_call"] == pytest.approx((9e-6 - free) / 2, rel=1e-6)
    assert got["releases_per_call"] == 1.0        # the saves at 3.1 and 9.0 us
    assert got["loop_s_per_call"] == pytest.approx(4.5e-6, rel=1e-6)


def test_perfs_own_error_line_is_what_the_csv_says():
    stderr = "Warning: something\nError: event \"save\" already exists.\n  Hint: use -f\n"
    assert gil_split._perf_error(stderr) == 'Error: event "save" already exists.'
    assert gil_split._perf_error("only a line\n") == "only a line"
    assert gil_split._perf_error("") == "no message"


def test_held_in_call_subtracts_a_bare_release_per_release():
    base = {"held_s_per_call": 0.7e-6, "releases_per_call": 1.0}
    two = {"held_s_per_call": 5e-6, "releases_per_call": 2.0}
    assert gil_split.held_in_call(two, base) == pytest.approx(3.6e-6)
    assert gil_split.held_in_call({"held_s_per_call": 0.5e-6, "releases_per_call": 1.0}, base) == 0.0


def test_the_table_is_the_median_over_trials_of_measured_rows_only(tmp_path):
    rows = [{"python": "3.11", "call": "speedup/sha256", "trial": t, "held_in_call_s": v,
             "status": "measured"} for t, v in enumerate((1e-6, 9e-6, 2e-6))]
    rows.append({"python": "3.11", "call": gil_split.BASELINE, "trial": 0, "held_in_call_s": 0.0,
                 "status": "measured"})
    rows.append({"python": "3.11", "call": "seal/modern/8k", "status": "unavailable: needs root"})
    pd.DataFrame(rows).to_csv(tmp_path / "gil_split.csv", index=False)
    assert gil_split.held_in_call_table(tmp_path) == {("3.11", "speedup/sha256"): pytest.approx(2e-6)}
    assert gil_split.held_in_call_table(tmp_path / "nothing-here") == {}


def test_every_call_the_model_uses_can_be_made():
    made = gil_split.calls()
    for name in gil_split.measured_calls():
        call = made[name]()
        call()


def _speedup_df():
    return pd.DataFrame([{"python": "3.11", "workload": "chacha20poly1305", "colors": "distinct",
                          "workers": w, "trial": 0, "ops_per_s": 40000.0 * w,
                          "gil_free_s_per_op": 20e-6} for w in (1, 2)])


def test_the_model_moves_the_held_part_of_a_call_from_free_to_held():
    table = {("3.11", "speedup/chacha20poly1305"): 2e-6}
    (before,) = model_fit.runtime_cases(_speedup_df(), (), 0.0, 0.0, {})
    (after,) = model_fit.runtime_cases(_speedup_df(), (), 0.0, 0.0, table)
    assert after.held_s == pytest.approx(before.held_s + 2e-6)
    assert after.free_s == pytest.approx(before.free_s - 2e-6)
    (other_python,) = model_fit.runtime_cases(_speedup_df().assign(python="3.13t"), (), 0.0, 0.0, table)
    assert other_python.free_s == pytest.approx(before.free_s)     # measured on 3.11 only


def test_the_sfs_and_hand_off_cases_move_it_too():
    from experiments.tests.synthetic import sfs_rows

    sfs = pd.DataFrame(sfs_rows())
    table = {("3.11", "seal/modern/64k"): 10e-6}
    before = {c.config: c for c in model_fit.sfs_cases(sfs, (), 1e-6, 0.0, {})}
    after = {c.config: c for c in model_fit.sfs_cases(sfs, (), 1e-6, 0.0, table)}
    for config, case in after.items():
        moved = 10e-6 if config.startswith("modern 64KiB") else 0.0
        # split_service scales by the 1-CPU wall time, which equals held + free here
        assert case.held_s + case.free_s == pytest.approx(before[config].held_s + before[config].free_s)
        assert (case.held_s > before[config].held_s) == (moved > 0)
    point = {"python": "3.11", "spin": 400, "free_kib": 32, "held_s": 3e-6, "free_s": 17e-6,
             "rates": {1: [50e3], 2: [80e3]}}
    (case,) = model_fit.handoff_cases([point], (), 0.0, {("3.11", "handoff/sha256_32k"): 1e-6})
    assert (case.held_s, case.free_s) == (pytest.approx(4e-6), pytest.approx(16e-6))
    (case,) = model_fit.handoff_cases([point], (), 0.0, {("3.11", "handoff/sha256_32k"): 1.0})
    assert case.free_s == 0.0 and case.held_s == pytest.approx(20e-6)     # never more than the call


def _probes_usable() -> bool:
    return shutil.which("perf") is not None and os.geteuid() == 0 and common.gil_enabled()


@pytest.mark.skipif(not _probes_usable(), reason="needs perf, root and a GIL")
def test_uprobes_count_each_release_and_find_a_calls_held_work():
    rows = gil_split.measure_calls(["sha256_1k", "spin_then_yield"], trials=1, seconds=0.02)
    by_call = {r["call"]: r for r in rows}
    assert by_call[gil_split.BASELINE]["releases_per_call"] == 1.0
    assert by_call["sha256_1k"]["releases_per_call"] == 0.0       # under 2 KiB: no release
    assert by_call["spin_then_yield"]["releases_per_call"] == 1.0
    # 20000 empty loop iterations hold the GIL for 100-400 us; a bare release, for about none
    assert by_call["spin_then_yield"]["held_in_call_s"] > 20e-6
    assert by_call[gil_split.BASELINE]["held_in_call_s"] == 0.0
    listed = subprocess.run(["perf", "probe", "-l"], capture_output=True, text=True).stdout
    assert f"colorloop_{os.getpid()}" not in listed               # the probes are gone again


def test_without_perf_the_csv_says_why_and_the_model_uses_whole_calls(tmp_path, monkeypatch):
    monkeypatch.setattr(gil_split.shutil, "which", lambda name: None)
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(common, "gil_enabled", lambda: True)
    gil_split.measure()
    df = pd.read_csv(tmp_path / "gil_split.csv")
    assert set(df["call"]) == set(gil_split.measured_calls())
    assert df["status"].str.contains("perf not installed").all()
    assert gil_split.held_in_call_table(tmp_path) == {}


def _groups() -> str:
    return subprocess.run(["perf", "probe", "-l"], capture_output=True, text=True).stdout


def _place(group: str, pid: int) -> None:
    subprocess.run(["perf", "probe", "-q", "-x", str(gil_split.interpreter_binary()),
                    "-a", f"{group}:save_{pid}=PyEval_SaveThread"], check=True, capture_output=True)


@pytest.mark.skipif(not _probes_usable(), reason="needs perf, root and a GIL")
def test_a_run_beside_another_and_after_a_killed_one_still_measures():
    dead = subprocess.Popen(["true"])
    dead.wait()
    alive = subprocess.Popen(["sleep", "60"])
    try:
        _place(f"colorloop_{dead.pid}", dead.pid)        # left by a run killed outright
        _place(f"colorloop_{alive.pid}", alive.pid)      # a run going on at the same time
        rows = gil_split.measure_calls(["sha256_1k"], trials=1, seconds=0.01)
        assert {r["call"] for r in rows} == {gil_split.BASELINE, "sha256_1k"}
        listed = _groups()
        assert f"colorloop_{dead.pid}:" not in listed
        assert f"colorloop_{alive.pid}:" in listed
    finally:
        alive.kill()
        subprocess.run(["perf", "probe", "-q", "-d", f"colorloop_{alive.pid}:*"], capture_output=True)
        subprocess.run(["perf", "probe", "-q", "-d", f"colorloop_{dead.pid}:*"], capture_output=True)


@pytest.mark.skipif(not _probes_usable(), reason="needs perf, root and a GIL")
def test_sigterm_mid_run_removes_the_probes_and_the_perf_data(tmp_path):
    script = ("import sys; from pathlib import Path; from experiments import common, gil_split; "
              f"common.RESULTS = Path({str(tmp_path / 'results')!r}); gil_split.main([])")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=common.REPO,
                            env={**os.environ, "TMPDIR": str(scratch)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while f"colorloop_{proc.pid}:" not in _groups():      # wait until its probes are placed
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        proc.kill()
    assert f"colorloop_{proc.pid}:" not in _groups()
    assert list(scratch.iterdir()) == []                     # no perf.data left behind
    assert not (tmp_path / "results" / "gil_split.csv").exists()


def test_the_model_figure_says_when_the_split_was_not_measured(synthetic_results, capsys):
    from experiments import model_validation

    model_validation.plot()
    assert "GIL-held part of GIL-releasing calls not measured" in capsys.readouterr().err
    pd.DataFrame([{"python": "3.11", "call": "speedup/sha256", "status": "unavailable: needs root"}]
                 ).to_csv(synthetic_results / "gil_split.csv", index=False)
    model_validation.plot()
    assert "unavailable: needs root" in capsys.readouterr().err
    pd.DataFrame([{"python": "3.11", "call": "speedup/sha256", "trial": 0, "held_in_call_s": 1e-6,
                   "status": "measured"}]).to_csv(synthetic_results / "gil_split.csv", index=False)
    model_validation.plot()
    assert "not measured" not in capsys.readouterr().err
