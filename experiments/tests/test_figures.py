"""Every figure script draws PNG and PDF from small synthetic CSVs, and says so when data is missing."""
import os

import pandas as pd
import pytest

from experiments import (callback_cost, common, lines_changed, model_validation, sched_compare,
                         sfs_blocksize, sfs_throughput, web_throughput)

SCRIPTS = [sfs_throughput, web_throughput, sfs_blocksize, lines_changed, callback_cost, sched_compare,
           model_validation]


def _check_outputs(paths):
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    png, pdf = (p.read_bytes() for p in paths)
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
    assert pdf.startswith(b"%PDF")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda m: m.__name__.split(".")[-1])
def test_figure_from_synthetic_csvs(script, synthetic_results, tmp_path):
    paths = script.plot()
    _check_outputs(paths)
    assert all(p.parent == tmp_path / "figures" for p in paths)


def test_redrawing_from_the_same_csvs_gives_the_same_pdf(synthetic_results, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000000000")     # matplotlib's clock for PDF dates
    first = [p.read_bytes() for p in lines_changed.plot()]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "2000000000")
    second = [p.read_bytes() for p in lines_changed.plot()]
    assert first[1] == second[1]       # no creation date: a redraw leaves a clean git tree


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda m: m.__name__.split(".")[-1])
def test_figure_without_csvs_still_draws(script, tmp_path, monkeypatch):
    monkeypatch.setenv("COLORLOOP_RESULTS", str(tmp_path / "empty"))
    monkeypatch.setenv("COLORLOOP_FIGURES", str(tmp_path / "figures"))
    _check_outputs(script.plot())


def test_derived_csvs_land_beside_their_sources_not_in_artifact(synthetic_results):
    model_validation.plot()
    sfs_blocksize.plot()
    validation = pd.read_csv(synthetic_results / "model_validation.csv", dtype={"python": str})
    assert set(validation.columns) >= {"app", "python", "config", "cpus", "measured", "modelled", "error_pct"}
    assert (synthetic_results / "model_predictions.csv").exists()
    assert (synthetic_results / "sfs_blocksize.csv").exists()
    assert not common.RESULTS.exists() or not any(common.RESULTS.iterdir())
    assert not common.FIGURES.exists() or not any(common.FIGURES.iterdir())


def test_validation_covers_every_measured_point(synthetic_results):
    rows = model_validation.validate()
    sfs = pd.read_csv(synthetic_results / "sfs_throughput.csv")
    expected = len(sfs.groupby(["suite", "block_kib", "mode", "cpus"]))
    assert sum(r["app"] == "sfs" for r in rows) == expected
    web = pd.read_csv(synthetic_results / "web_throughput.csv", dtype={"python": str})
    ours = web[web["server"] == "colorloop"]
    assert sum(r["app"] == "web" for r in rows) == len(ours.groupby(["python", "mode", "cpus"]))
    # 1-CPU points follow from the measured costs alone: the model must get them nearly right
    one = [r for r in rows if r["app"] == "sfs" and r["cpus"] == 1]
    assert all(abs(r["error_pct"]) < 10 for r in one)


def test_blocksize_crossover_is_interpolated_between_measured_blocks():
    # crypto 32 < 60 at 8 KiB, 256 > 60 at 64 KiB; linear in block -> crosses at 15 KiB
    assert sfs_blocksize.crossover([(8, 32e-6, 60e-6), (64, 256e-6, 60e-6)]) == pytest.approx(15, rel=0.05)
    assert sfs_blocksize.crossover([(8, 1e-6, 60e-6), (64, 2e-6, 60e-6)]) is None
    assert sfs_blocksize.crossover([(8, 90e-6, 60e-6), (64, 300e-6, 60e-6)]) == 8


def test_blocksize_note_does_not_call_the_smallest_block_measured_the_crossing():
    note = sfs_blocksize.crossover_note
    assert note("modern", [8, 64], 15.2) == "modern: crypto outweighs the interpreter from about 15 KiB per read"
    assert note("sfs2003", [8, 64], 8.0) == ("sfs2003: crypto outweighs the interpreter at every block "
                                             "measured (8 KiB and up)")
    assert note("modern", [64], 64.0) == ("modern: crypto outweighs the interpreter at the one block "
                                          "measured (64 KiB)")
    assert note("modern", [8, 64], None) is None


def test_a_missing_or_empty_csv_reads_as_no_data_and_says_so(tmp_path, capsys):
    from experiments import figlib
    assert figlib.read_csv("sched_compare", tmp_path) is None
    assert "sched_compare.csv is missing" in capsys.readouterr().err
    (tmp_path / "sched_compare.csv").write_text("")
    assert figlib.read_csv("sched_compare", tmp_path) is None     # not pandas' EmptyDataError
    assert "sched_compare.csv is empty" in capsys.readouterr().err


def test_a_csv_cut_short_loses_only_its_last_line_and_says_so(tmp_path, capsys):
    from experiments import figlib
    (tmp_path / "sched_compare.csv").write_text('python,load,ops_per_s\n3.11,uniform,100.5\n3.11,"unif')
    df = figlib.read_csv("sched_compare", tmp_path)
    assert df is not None and list(df["ops_per_s"]) == [100.5] and list(df["python"]) == ["3.11"]
    assert "cut short" in capsys.readouterr().err
    (tmp_path / "sched_compare.csv").write_text('python,load\n3.11,"a\n')    # unterminated quote
    assert figlib.read_csv("sched_compare", tmp_path) is None
    assert "cannot be read" in capsys.readouterr().err


def test_a_failed_sfs_benchmark_is_one_line_of_error_not_a_traceback(monkeypatch, tmp_path):
    """`make fig-sfs` showed bench's error, which names the configuration and the server's fate,
    under a traceback; it is the script's one-line error now, and no CSV is claimed written."""
    from apps.sfs_like import bench
    from experiments import sfs_throughput

    def fails(quick):
        raise bench.BenchError("trial 0, sfs2003 8 KiB READs, colors on, 1 CPU: the server was "
                               "killed by SIGKILL")
    monkeypatch.setattr(bench, "run_benchmark", fails)
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    with pytest.raises(SystemExit) as exit_:
        sfs_throughput.main([])
    assert exit_.value.code == ("python -m experiments.sfs_throughput: error: trial 0, sfs2003 8 KiB "
                                "READs, colors on, 1 CPU: the server was killed by SIGKILL")
    assert not (tmp_path / "results").exists()


def test_the_web_step_records_how_busy_the_machine_was_and_warns(monkeypatch, tmp_path, capsys):
    """`make reproduce` measures through experiments.web_throughput, which recorded neither the
    load nor the busy CPUs before the run, nor warned: only `python -m apps.webserver.bench` did."""
    import json
    from apps.webserver import bench
    from experiments import web_throughput
    row = {"python": "3.11", "server": "colorloop", "mode": "colors_off", "cpus": 1,
           "connections": 32, "client_cpus_disjoint": True, "trial": 0, "requests_per_s": 1000.0}
    monkeypatch.setattr(bench, "busy_cpus", lambda: 1.4)
    monkeypatch.setattr(bench, "run_benchmark", lambda quick: [row])
    monkeypatch.setattr(web_throughput, "_freethreaded_rows", lambda: [])
    monkeypatch.setenv("COLORLOOP_RESULTS", str(tmp_path))
    web_throughput.measure()
    machine = json.loads((tmp_path / "web_throughput.machine.json").read_text())
    assert machine["busy_cpus_before"] == 1.4
    assert len(machine["loadavg_before"]) == 3 and len(machine["loadavg_after"]) == 3
    assert "other work keeps 1.4 of" in capsys.readouterr().err


def test_colorloop_results_is_where_a_script_measures_and_draws_from(tmp_path, monkeypatch, capsys):
    """With COLORLOOP_RESULTS set, a figure script wrote its CSV to artifact/results/ and then drew
    from the other folder: "no data", over the committed figure. One folder for both now."""
    from experiments import lines_changed
    monkeypatch.setattr(common, "RESULTS", tmp_path / "artifact-results-must-stay-empty")
    monkeypatch.setattr(common, "FIGURES", tmp_path / "artifact-figures-must-stay-empty")
    monkeypatch.setenv("COLORLOOP_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("COLORLOOP_FIGURES", str(tmp_path / "figures"))
    lines_changed.main([])
    assert (tmp_path / "results" / "lines_changed.csv").exists()
    assert (tmp_path / "results" / "lines_changed.machine.json").exists()
    assert (tmp_path / "figures" / "lines_changed.png").exists()
    assert "no data" not in capsys.readouterr().err
    assert not (tmp_path / "artifact-results-must-stay-empty").exists()
    assert not (tmp_path / "artifact-figures-must-stay-empty").exists()


def test_a_csv_with_3_13t_rows_records_that_interpreter_and_its_footer_says_so(tmp_path, monkeypatch):
    """The 3.11 driver writes the web and runtime CSVs, 3.13t rows included: their machine
    description, and so the figures' footers, named Python 3.11 only."""
    import json

    from experiments import figlib
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text("home = /x\nversion = 3.13.5\n")
    monkeypatch.setattr(common, "FREETHREADED_VENV", venv)
    monkeypatch.setenv("COLORLOOP_RESULTS", str(tmp_path / "results"))
    common.write_results("both", [{"python": "3.11", "x": 1}, {"python": "3.13t", "x": 2}])
    common.write_results("only311", [{"python": "3.11", "x": 1}])
    both = json.loads((tmp_path / "results" / "both.machine.json").read_text())["machine"]
    assert both["python_freethreaded"] == "3.13.5"
    assert "and 3.13.5 free-threaded (3.13t)" in figlib.machine_footer([both])
    only = json.loads((tmp_path / "results" / "only311.machine.json").read_text())["machine"]
    assert "python_freethreaded" not in only
    assert "3.13t" not in figlib.machine_footer([only])
    # one machine's CSVs, one naming both Pythons: the footer says the machine once, with both
    footer = figlib.machine_footer([only, both, only])
    assert footer.count("measured on") == 1 and "and on" not in footer
    assert "Python 3.11" in footer and "3.13t" in footer
    every = dict(only, cpus_online=2, cpus_allowed=[0, 1])
    assert "allowed" not in figlib.machine_footer([every])
    pinned = dict(only, cpus_online=2, cpus_allowed=[0])      # taskset -c 0, a 1-CPU cpuset
    assert "2 CPUs (1 allowed to this run)" in figlib.machine_footer([pinned])
    other = dict(only, cpu_model="Another CPU")
    assert figlib.machine_footer([both, other]).splitlines()[1].startswith("and on: Another CPU")


def test_tool_versions_names_installed_programs_and_skips_missing_ones(tmp_path, monkeypatch):
    tool = tmp_path / "sometool"           # says its version on stderr, as nginx does
    tool.write_text("#!/bin/sh\necho 'sometool version: 1.2.3' >&2\necho second line >&2\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    versions = common.tool_versions(("sometool", "no-such-program-colorloop"))
    assert versions == {"sometool": "sometool version: 1.2.3"}


def test_a_quick_run_predicts_fewer_cpu_counts_from_1_to_16(synthetic_results, monkeypatch):
    """QUICK=1 must finish within 5 minutes: its modelled curves are predicted at 8 CPU counts
    (1 to 16) instead of 16, and the callback-cost figure's at those up to 8."""
    from experiments import figlib, model_fit
    cases = model_fit.web_cases(figlib.read_csv("web_throughput"))[:1]
    monkeypatch.setenv("QUICK", "1")
    assert sorted({r["cpus"] for r in model_fit.predictions(cases)}) == [1, 2, 3, 4, 6, 8, 12, 16]
    assert model_fit.predict_cpus(up_to=8) == [1, 2, 3, 4, 6, 8]
    monkeypatch.setenv("QUICK", "")
    assert sorted({r["cpus"] for r in model_fit.predictions(cases)}) == list(range(1, 17))


def test_predictions_csv_holds_every_modelled_curve_a_figure_draws(synthetic_results):
    from experiments import figlib, model_fit

    model_validation.plot()
    pred = pd.read_csv(synthetic_results / "model_predictions.csv", dtype={"python": str})
    have = {(r.app, r.python, r.config, int(r.cpus)): r.modelled for r in pred.itertuples()}
    # the SFS figure's curves (every suite at its headline block) and the callback-cost figure's,
    # with the very values those figures draw
    drawn = (sfs_throughput.headline_cases(figlib.read_csv("sfs_throughput"))
             + callback_cost.model_cases(figlib.read_csv("runtime_speedup")))
    assert {c.config.split()[0] for c in drawn if c.app == "sfs"} == {"sfs2003", "modern"}
    for row in model_fit.predictions(drawn, cpus_list=list(range(1, 9))):
        key = (row["app"], row["python"], row["config"], row["cpus"])
        assert key in have and have[key] == pytest.approx(row["modelled"], rel=1e-9), key
    web = model_fit.web_cases(figlib.read_csv("web_throughput"))      # the web figure's curves
    assert web and all((c.app, c.python, c.config, 16) in have for c in web)


def test_the_colored_313t_web_model_is_drawn_over_ncopy_and_told_apart(synthetic_results):
    import matplotlib.pyplot as plt

    from experiments import figlib, model_fit

    cases = model_fit.web_cases(figlib.read_csv("web_throughput"))
    fig, ax = plt.subplots()
    figlib.draw_scaling(None, ax, cases, model_fit.predictions(cases, cpus_list=[1, 2, 4]),
                        web_throughput._color, label_of=web_throughput._label,
                        model_style_of=web_throughput.model_style)
    lines = {line.get_label(): line for line in ax.get_lines()}
    plt.close(fig)
    over = [line for label, line in lines.items() if "colored, Python 3.13t, modelled" in label]
    under = [line for label, line in lines.items() if "N-copy (N processes), Python 3.13t, modelled" in label]
    assert len(over) == len(under) == 1, sorted(lines)
    over, under = over[0], under[0]
    assert over.get_zorder() > under.get_zorder()
    assert over.get_linestyle() != under.get_linestyle() or over.get_marker() not in (None, "None", "")
    assert over.get_linewidth() < under.get_linewidth()
    assert over.get_color() != under.get_color()


def test_coinciding_runtime_models_are_drawn_apart(synthetic_results):
    from experiments import figlib, model_fit

    cases = callback_cost.model_cases(figlib.read_csv("runtime_speedup"))
    curves = callback_cost.model_curves(cases, model_fit.predictions(cases, cpus_list=list(range(1, 9))))
    assert all(c["style"]["color"] == callback_cost.series_color(c["case"]) for c in curves)
    assert len({c["style"]["color"] for c in curves}) == len(curves)
    assert len({c["style"]["label"] for c in curves}) == len(curves)


def test_busy_cpus_reads_other_work_from_proc_stat_over_its_window(tmp_path, monkeypatch):
    """The web benchmark warned of other work whenever the steps before it had raised the load
    average; it now measures the CPUs busy right before it starts."""
    import time
    stat = tmp_path / "stat"
    ticks = iter([
        "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3\n",        # user nice system idle iowait ...
        "cpu  250 0 150 900 100 0 0 0 0 0\ncpu0 1 2 3\n",      # +200 busy, +200 idle of 400
    ])

    def sleep(_):
        stat.write_text(next(ticks))
    stat.write_text(next(ticks))
    monkeypatch.setattr(time, "sleep", sleep)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert common.busy_cpus(0.5, stat) == pytest.approx(1.0)
    assert common.busy_cpus(0.5, tmp_path / "missing") is None
