"""The reproduce driver: runs its steps as processes, keeps going past a failure, ends with claims."""
import pytest

from experiments import common, reproduce


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


def test_every_step_has_a_make_target_and_a_row_in_the_artifact_readme():
    makefile = (common.REPO / "mk" / "experiments.mk").read_text()
    targets = next(line for line in makefile.splitlines() if line.startswith("EXP_FIGS :=")).split()[2:]
    readme = (common.REPO / "artifact" / "README.md").read_text()
    for step, module, _ in reproduce.STEPS:
        assert step in targets, f"make fig-{step} is missing"
        assert f"EXP_MOD_{step}" in makefile and module.split(".")[-1] in makefile
        assert f"| {step} | `{module}` |" in readme, f"artifact/README.md's step table lacks {step}"


def test_steps_that_model_run_after_the_model_inputs_of_the_same_run():
    order = [step for step, _, _ in reproduce.STEPS]
    for modelling in ("callbacks", "sfs", "web", "blocksize", "model"):     # their figures draw the model
        for source in ("gil", "gilsplit"):
            assert order.index(source) < order.index(modelling), (source, modelling)
    for modelling in ("blocksize", "model"):
        for source in ("sfs", "web", "callbacks"):
            assert order.index(source) < order.index(modelling), (source, modelling)


@pytest.mark.parametrize("target, before, after", [
    ("fig-lines", "experiments.lines_changed", "experiments.claims"),
    ("fig-web", "experiments.web_throughput", "experiments.claims"),
    ("notebooks", "experiments.claims", "experiments.notebooks"),
])
def test_figure_steps_and_notebooks_leave_the_claims_table_current(target, before, after):
    """After `make fig-web`, claims.md still held the last full run's numbers, and `make notebooks`
    showed that stale table beside the new figures; the table is rebuilt in both now."""
    import subprocess
    shown = subprocess.run(["make", "-n", "--no-print-directory", target], cwd=common.REPO,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    ran = [line.split("-m", 1)[1].split()[0] for line in shown if " -m experiments." in line]
    assert ran == [before, after], ran


def test_a_measuring_run_reads_none_of_an_earlier_runs_csvs(synthetic_results, monkeypatch, capfd):
    """A fresh clone holds our committed CSVs: a step that failed on the user's machine (no wrk,
    one CPU) left ours in place, and the claims, the model and the notebooks read them as the
    user's own. Now they are moved to previous/ first, and the failed step's figure is redrawn."""
    import pandas as pd

    calls = []

    def fake_step(module, plot_only):
        calls.append((module, plot_only))
        if module == "experiments.fresh" and not plot_only:
            common.write_results("fresh_thing", [{"x": 1}])
            return 0, 0.1
        return (1 if module == "experiments.broken" and not plot_only else 0), 0.1

    monkeypatch.setattr(reproduce, "run_step", fake_step)
    monkeypatch.setattr(reproduce, "STEPS", [("fresh", "experiments.fresh", "writes its CSV"),
                                             ("broken", "experiments.broken", "fails")])
    earlier = sorted(p.name for p in synthetic_results.glob("*.csv"))
    assert "sfs_throughput.csv" in earlier
    (synthetic_results / "previous").mkdir()
    (synthetic_results / "previous" / "older.csv").write_text("x\n1\n")
    status = reproduce.main(["--skip-notebooks"])
    out = capfd.readouterr().out
    assert status == 1 and "step broken failed" in out
    assert ("experiments.broken", True) in calls          # its figure redrawn from what is left
    assert ("experiments.fresh", True) not in calls
    previous = synthetic_results / "previous"
    assert sorted(p.name for p in previous.glob("*.csv")) == earlier    # moved, not lost; older gone
    assert (synthetic_results / "fresh_thing.csv").exists()
    assert not (synthetic_results / "sfs_throughput.csv").exists()
    claims = pd.read_csv(synthetic_results / "claims.csv")
    sfs = claims[claims["key"].str.startswith("sfs")]
    assert len(sfs) and (sfs["status"] != "met").all(), sfs


def test_plot_only_and_single_steps_keep_the_csvs_where_they_are(synthetic_results):
    before = sorted(p.name for p in synthetic_results.glob("*.csv"))
    assert reproduce.main(["--plot-only", "--skip-notebooks", "--only", "lines"]) == 0
    assert not (synthetic_results / "previous").exists()
    assert set(before) <= {p.name for p in synthetic_results.glob("*.csv")}
