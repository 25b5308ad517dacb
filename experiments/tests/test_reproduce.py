"""The reproduce driver: runs its steps as processes, keeps going past a failure, ends with claims."""
from experiments import reproduce


def test_plot_only_run_redraws_and_prints_the_claims(synthetic_results, tmp_path, capfd):
    status = reproduce.main(["--plot-only", "--skip-notebooks", "--only", "lines", "sched"])
    out = capfd.readouterr().out
    assert status == 0
    assert (tmp_path / "figures" / "lines_changed.png").exists()
    assert (tmp_path / "figures" / "sched_compare.pdf").exists()
    assert "claims met" in out and "lines changed to color the SFS crypto" in out
    assert (synthetic_results / "claims.csv").exists()


def test_a_failing_step_is_reported_and_the_run_goes_on(synthetic_results, monkeypatch, capfd):
    steps = [("broken", "experiments.no_such_module", "a step that cannot start"),
             ("lines", "experiments.lines_changed", "still runs")]
    monkeypatch.setattr(reproduce, "STEPS", steps)
    status = reproduce.main(["--plot-only", "--skip-notebooks"])
    out = capfd.readouterr().out
    assert status == 1
    assert "step broken failed" in out
    summary = next(line for line in out.splitlines() if line.startswith("steps: "))
    parts = dict(part.split(" ", 1) for part in summary[len("steps: "):].split(", "))
    assert parts["broken"].endswith("FAILED") and not parts["lines"].endswith("FAILED")
    assert "claims met" in out
