"""Run a benchmark module under the free-threaded CPython 3.13t, from a driver running on 3.11.

The experiments' drivers live on the stock 3.11 (pandas, matplotlib, cryptography have no 3.13t
build), but the web server's and the runtime's scaling only shows the GIL's absence when their
benchmark itself runs on 3.13t. So a driver asks this module to run `python -m <module> ... --json`
in the 3.13t venv (built by `make freethreaded` into build/py313t/) and gets the rows back, to
write them in the same CSV as its 3.11 rows, with a `python` column telling them apart.

The convention a benchmark module follows: with `--json`, its last line on stdout is one JSON list
of row dicts. Progress and logs go to stderr, which is passed through to ours.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from experiments.common import FREETHREADED_LABEL, FREETHREADED_VENV, REPO

FT_DIR = FREETHREADED_VENV.parent
FT_PYTHON = FREETHREADED_VENV / "bin" / "python"
BUILD_SCRIPT = REPO / "tools" / "freethreaded" / "build.sh"
FT_LABEL = FREETHREADED_LABEL


class FreeThreadedUnavailable(RuntimeError):
    """The 3.13t interpreter is not built and the caller did not ask to build it."""


class BenchmarkFailed(RuntimeError):
    """The module ran under 3.13t but exited with an error or printed no rows."""


def ft_python() -> Path | None:
    """The 3.13t venv's interpreter if `make freethreaded` finished, else None."""
    installed = FT_PYTHON.parent.parent / ".installed"   # written last by build.sh
    if FT_PYTHON.exists() and os.access(FT_PYTHON, os.X_OK) and installed.exists():
        return FT_PYTHON
    return None


def ensure_ft_python(build: bool) -> Path | None:
    """The 3.13t interpreter; build it first (a few minutes, once) when `build` is true.

    Returns None when it is missing and `build` is false, so a driver can skip its 3.13t rows and
    say so, instead of silently taking minutes.
    """
    python = ft_python()
    if python is not None or not build:
        return python
    print(f"== building the free-threaded CPython 3.13t ({BUILD_SCRIPT.relative_to(REPO)})",
          file=sys.stderr, flush=True)
    subprocess.run([str(BUILD_SCRIPT)], cwd=REPO, check=True)
    python = ft_python()
    if python is None:
        raise FreeThreadedUnavailable(f"{BUILD_SCRIPT} finished but {FT_PYTHON} is not usable")
    return python


def ft_env() -> dict[str, str]:
    """Environment for a 3.13t child: the GIL forced off, the repository importable.

    PYTHON_GIL=0 matters: without it, importing an extension module that does not declare
    free-threading support (Py_mod_gil) silently turns the GIL back on for the whole process.
    """
    env = dict(os.environ)
    env["PYTHON_GIL"] = "0"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def parse_rows(stdout: str, what: str) -> list[dict]:
    """The rows a module printed: its last non-empty stdout line, a JSON list of dicts."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise BenchmarkFailed(f"{what} printed nothing on stdout (expected a JSON list of rows)")
    try:
        rows = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise BenchmarkFailed(f"{what}: last stdout line is not JSON ({exc}): {lines[-1][:200]!r}")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BenchmarkFailed(f"{what}: expected a JSON list of row dicts, got {type(rows).__name__}")
    return rows


def run_module_json(module: str, args: list[str], cpus: list[int] | None = None,
                    timeout: float = 1800) -> list[dict]:
    """Run `python -m module *args --json` under 3.13t (GIL off) and return its rows.

    cpus: restrict the child (and every thread it starts) to these CPUs, as the 3.11 runs of the
    same benchmark are restricted. Each row gets `python: "3.13t"` unless the module set it.
    """
    python = ft_python()
    if python is None:
        raise FreeThreadedUnavailable(
            f"free-threaded CPython is not built ({FT_PYTHON} missing): run `make freethreaded`")
    cmd = [str(python), "-m", module, *args, "--json"]
    what = f"{module} under {FT_LABEL}"
    if cpus:   # taskset rather than a preexec_fn: the driver may have threads (tqdm's monitor)
        cmd = ["taskset", "--cpu-list", ",".join(str(c) for c in cpus), *cmd]
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=ft_env(), stdout=subprocess.PIPE, stderr=None,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise BenchmarkFailed(f"{what} did not finish within {timeout:.0f}s: {' '.join(cmd)}") from exc
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-10:])
        raise BenchmarkFailed(f"{what} exited with status {proc.returncode}: {' '.join(cmd)}\n{tail}")
    rows = parse_rows(proc.stdout, what)
    for row in rows:
        row.setdefault("python", FT_LABEL)
    return rows
