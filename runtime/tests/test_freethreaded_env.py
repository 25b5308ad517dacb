"""The free-threaded track only means something if the GIL is really off while the tests run.

A free-threaded (3.13t) interpreter turns the GIL back on, for the whole process and with only a
warning, when it imports an extension module that does not declare free-threading support. Then
the runtime's tests would pass on 3.13t while proving nothing about races. These tests check the
GIL's state under a free-threaded build and are skipped under a GIL build (the stock 3.11).

The last tests check the bridge the 3.11 experiment drivers use to run benchmarks on 3.13t
(experiments/freethreaded.py); they run under 3.11 when `make freethreaded` has been done.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap

import pytest

FREE_THREADED_BUILD = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
needs_free_threaded = pytest.mark.skipif(
    not FREE_THREADED_BUILD,
    reason=f"Python {sys.version.split()[0]} is a GIL build; run `make test-freethreaded` for 3.13t")


@needs_free_threaded
def test_gil_is_disabled_in_this_process():
    assert sys._is_gil_enabled() is False


@needs_free_threaded
def test_gil_stays_off_after_importing_what_the_runtime_and_web_server_use():
    """Imports in a fresh child without PYTHON_GIL=0: an unprepared C extension re-enables the GIL."""
    code = textwrap.dedent("""
        import importlib, json, sys
        report = {}
        for name in ("runtime", "httptools", "selectors", "socket", "ssl", "hashlib", "zlib"):
            try:
                importlib.import_module(name)
            except ImportError as exc:
                report[name] = f"import failed: {exc}"
                continue
            report[name] = sys._is_gil_enabled()
        print(json.dumps(report))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}
    env["PYTHONPATH"] = os.getcwd()
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], env=env, check=True,
                         capture_output=True, text=True, timeout=60).stdout
    report = json.loads(out.strip().splitlines()[-1])
    reenabled_by = [name for name, gil in report.items() if gil is True]
    failed = {name: v for name, v in report.items() if isinstance(v, str)}
    assert not failed, failed
    assert not reenabled_by, f"importing {reenabled_by[0]} re-enabled the GIL (full: {report})"


def test_rows_of_a_module_are_its_last_stdout_line():
    from experiments.freethreaded import BenchmarkFailed, parse_rows

    out = "warming up\n" + json.dumps([{"cpus": 1, "rps": 10.5}, {"cpus": 2, "rps": 19.0}]) + "\n\n"
    assert parse_rows(out, "bench") == [{"cpus": 1, "rps": 10.5}, {"cpus": 2, "rps": 19.0}]
    with pytest.raises(BenchmarkFailed, match="nothing on stdout"):
        parse_rows("\n", "bench")
    with pytest.raises(BenchmarkFailed, match="not JSON"):
        parse_rows('[{"cpus": 1}]\ndone', "bench")
    with pytest.raises(BenchmarkFailed, match="list of row dicts"):
        parse_rows('{"cpus": 1}', "bench")


def test_run_module_json_runs_the_module_on_free_threaded_python_on_the_given_cpus(tmp_path, monkeypatch):
    from experiments import freethreaded

    if freethreaded.ft_python() is None:
        pytest.skip("free-threaded CPython not built (make freethreaded)")
    cpu = sorted(os.sched_getaffinity(0))[0]
    probe = tmp_path / "ft_probe_mod.py"
    probe.write_text(textwrap.dedent("""
        import json, os, sys, sysconfig
        assert sys.argv[1:] == ["--n", "3", "--json"], sys.argv
        print("progress line")
        print(json.dumps([{"i": i, "gil": sys._is_gil_enabled(),
                           "free": sysconfig.get_config_var("Py_GIL_DISABLED"),
                           "cpus": sorted(os.sched_getaffinity(0))} for i in range(3)]))
    """))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    rows = freethreaded.run_module_json("ft_probe_mod", ["--n", "3"], cpus=[cpu], timeout=60)
    assert [r["i"] for r in rows] == [0, 1, 2]
    assert all(r["python"] == "3.13t" and r["gil"] is False and r["free"] == 1 for r in rows)
    assert all(r["cpus"] == [cpu] for r in rows)


def test_run_module_json_reports_a_failing_module():
    from experiments import freethreaded

    if freethreaded.ft_python() is None:
        pytest.skip("free-threaded CPython not built (make freethreaded)")
    with pytest.raises(freethreaded.BenchmarkFailed, match="exited with status"):
        freethreaded.run_module_json("no_such_module_for_colorloop", [], timeout=60)
