"""What every benchmark shares: where results go, which CPUs each side gets, and what machine ran it.

A timing on a shared, noisy machine only means something as a ratio against another timing taken in
the same run, on the same machine. So every CSV is written together with a description of that
machine (`<name>.machine.json` beside it), and CPU placement is decided in one place.
"""
from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "artifact" / "results"
FIGURES = REPO / "artifact" / "figures"


def results_dir() -> Path:
    """Where CSVs are written and read: $COLORLOOP_RESULTS, else artifact/results. Measuring and
    drawing must agree on it (a measurement written to one folder and drawn from another drew
    "no data" over the committed figure)."""
    return Path(os.environ.get("COLORLOOP_RESULTS") or RESULTS)


def figures_dir() -> Path:
    """Where figures go: $COLORLOOP_FIGURES, else artifact/figures."""
    return Path(os.environ.get("COLORLOOP_FIGURES") or FIGURES)

_PACKAGES = ("cryptography", "httptools", "aiohttp", "pandas", "matplotlib", "numpy")


def quick() -> bool:
    """QUICK=1 (from `make reproduce QUICK=1`) asks every experiment for its short version."""
    return os.environ.get("QUICK", "") not in ("", "0")


def python_label() -> str:
    """'3.11' or '3.13t': the interpreter column every CSV carries."""
    free = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    return f"{sys.version_info.major}.{sys.version_info.minor}{'t' if free else ''}"


def gil_enabled() -> bool:
    probe = getattr(sys, "_is_gil_enabled", None)
    return True if probe is None else bool(probe())


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def allowed_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def machine_info() -> dict:
    packages = {}
    for name in _PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {
        "cpu_model": cpu_model(),
        "cpus_online": os.cpu_count(),
        "cpus_allowed": allowed_cpus(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "python_label": python_label(),
        "gil_enabled": gil_enabled(),
        "packages": packages,
        "hostname": platform.node(),
    }


FREETHREADED_LABEL = "3.13t"
FREETHREADED_VENV = REPO / "build" / "py313t" / "venv"      # made by `make freethreaded`


def freethreaded_version() -> str | None:
    """The version of the free-threaded build whose rows a CSV holds (from its venv's pyvenv.cfg:
    the 3.11 driver writes the CSV, so its own sys.version says nothing of the 3.13t rows)."""
    try:
        for line in (FREETHREADED_VENV / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "version":
                return value.strip()
    except OSError:
        pass
    return None


def tool_versions(names: tuple[str, ...]) -> dict[str, str]:
    """First line of `NAME -v` for each program installed (the web benchmark's wrk and peers):
    what the figure compares against is part of what was measured."""
    versions = {}
    for name in names:
        path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
        if not path:
            continue
        try:
            out = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        first = (out.stdout.strip() or out.stderr.strip()).splitlines()
        if first:
            versions[name] = first[0]
    return versions


def machine_summary(info: dict | None = None) -> str:
    """One line for a figure's footer: which machine, CPU, core count and Python(s) made it."""
    info = info or machine_info()
    ft = info.get("python_freethreaded")
    allowed = info.get("cpus_allowed")
    # a container's cpuset or taskset: the machine's count alone would overstate what was used
    cpus = (f"{info['cpus_online']} CPUs ({len(allowed)} allowed to this run)"
            if isinstance(allowed, list) and 0 < len(allowed) < (info.get("cpus_online") or 0)
            else f"{info['cpus_online']} CPUs")
    return (f"{info['cpu_model']}, {cpus}, Linux {info['kernel']}, "
            f"Python {info['python']}{' (free-threaded)' if not info['gil_enabled'] else ''}"
            + (f" and {ft} free-threaded ({FREETHREADED_LABEL})" if ft else "")
            + ("; QUICK run (short trials, not the full run's)" if info.get("quick") else ""))


def _cpu_ticks(stat: Path) -> tuple[int, int]:
    """(all ticks, idle ticks) summed over CPUs, from the first line of /proc/stat."""
    fields = [int(x) for x in stat.read_text().split("\n", 1)[0].split()[1:9]]
    return sum(fields), fields[3] + fields[4]          # idle + iowait


def busy_cpus(window_s: float = 1.0, stat: Path = Path("/proc/stat")) -> float | None:
    """How many CPUs other work keeps busy now, measured over a short window (None where
    /proc/stat cannot be read). The 1-minute load average is no guide before a benchmark that
    follows other steps: it still counts them, and warned of "other work" after every one."""
    try:
        total0, idle0 = _cpu_ticks(stat)
        time.sleep(window_s)                    # the measurement window itself
        total1, idle1 = _cpu_ticks(stat)
    except (OSError, ValueError, IndexError):
        return None
    total = total1 - total0
    return (os.cpu_count() or 1) * (1.0 - (idle1 - idle0) / total) if total > 0 else 0.0


def cpu_split(k: int) -> tuple[list[int], list[int], bool]:
    """CPUs for a server using k of them, CPUs for its load generator, and whether they are disjoint.

    The server gets the first k allowed CPUs. The load generator gets the rest; when nothing is left
    (k == every CPU we have) it shares all of them, and the caller must say so on its figure.
    """
    cpus = allowed_cpus()
    if not 1 <= k <= len(cpus):
        raise ValueError(f"asked for {k} CPUs, this process may use {len(cpus)}: {cpus}")
    server, rest = cpus[:k], cpus[k:]
    if rest:
        return server, rest, True
    return server, cpus, False


def cpu_counts() -> list[int]:
    """1..the number of CPUs this process may use: the sweep every scaling experiment makes."""
    return list(range(1, len(allowed_cpus()) + 1))


def write_results(name: str, rows: list[dict], *, extra: dict | None = None) -> Path:
    """Write rows to <results_dir()>/<name>.csv and the machine description beside it."""
    if not rows:
        raise ValueError(f"no rows to write for {name}")
    folder = results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.csv"
    fields: list[str] = []
    for row in rows:
        fields.extend(k for k in row if k not in fields)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    machine = machine_info()
    if any(row.get("python") == FREETHREADED_LABEL for row in rows):
        machine["python_freethreaded"] = freethreaded_version() or "unknown"
    meta = {"machine": machine, "quick": quick(), "argv": sys.argv}
    if extra:
        meta.update(extra)
    (folder / f"{name}.machine.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return path


def median_and_spread(values: list[float]) -> tuple[float, float, float]:
    """Median, minimum and maximum of the trials: what each summary row reports."""
    return statistics.median(values), min(values), max(values)


def print_table(rows: list[dict], columns: list[str] | None = None) -> None:
    if not rows:
        return
    columns = columns or list(rows[0])
    cells = [[_fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)
