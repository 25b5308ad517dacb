"""`python -m apps.webserver.bench [--quick]`: requests/s of every server on 1..N CPUs, one run.

Configurations (server, mode): colorloop off / on / ncopy, nginx, Apache (mpm_event) and aiohttp,
each on k = 1..os.cpu_count() CPUs (experiments.common.cpu_split: the server gets the first k
CPUs, wrk the rest, or shares all of them when none remain: column `client_cpus_disjoint`). Every
server is started once and stays up; after a warm-up, trials go round all configurations in turn
(rotating the order), so the configurations are measured side by side on this noisy machine.
wrk's threads and connections are the same for every configuration.

Any wrk error (socket error, or a reply >= 400), or a trial in which no request was answered, makes
the run fail loudly after the CSV is written. wrk takes any other reply as served, so every server
is first checked to answer a sample of the files (every 100th) with 200 and their bytes.

wrk runs as a SCHED_BATCH task (`client_sched` column; `--client-sched normal` for the default
policy): where it must share the server's CPUs, it then stops preempting a server thread at every
reply and handles the replies in batches (pinning.as_batch). On this 2-vCPU VM that raised the
2-CPU throughput of every multi-threaded server we measured, e.g. colors-on under 3.13t from
1.1x to 1.4x and N-copy from 1.3x to 1.6x its 1-CPU rate; where wrk has CPUs of its own, it
changes nothing. wrk's latencies then include its own waits for a CPU.

`client_cpu_s_per_request` is wrk's own CPU time (getrusage of the waited-for child) per request:
what the load generator takes from the server when they share CPUs (a model input).

The model's inputs (colors off, 1 CPU): a separate run with `--profile-io` measures the CPU time
per request spent inside socket recv/send, calls that release the GIL (`gil_free_s_per_request`,
from time.thread_time() around each call, so time the thread spends preempted does not count),
and the rest of the server's CPU time per request (`gil_held_s_per_request`: process CPU time
while serving minus that; it also holds the small select() time, which releases the GIL too).
The profiling run's throughput is not reported.

`--servers colorloop --json` drives only our server (no aiohttp, pandas or tqdm needed) and
prints the rows as JSON instead of writing the CSV: how the free-threaded 3.13t run is driven
from 3.11.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from experiments.common import (busy_cpus, cpu_counts, cpu_split, median_and_spread, print_table,
                                python_label, quick, write_results)

from . import loadgen, peers
from .make_files import PATHS_FILE, make_files

CONFIGS = [("colorloop", "off"), ("colorloop", "on"), ("colorloop", "ncopy"),
           ("nginx", "workers"), ("apache", "mpm_event"), ("aiohttp", "reuseport")]
SERVERS = ("colorloop", "nginx", "apache", "aiohttp")
WRK_THREADS = 2
WRK_CONNECTIONS = 32
CLIENT_SCHED = ("batch", "normal")


class BenchmarkErrors(RuntimeError):
    """Some measurement saw wrk errors or no answer at all; `rows` still holds every measurement."""

    def __init__(self, rows, failures):
        super().__init__("failed measurements:\n  " + "\n  ".join(failures))
        self.rows = rows


class Progress:
    """tqdm when it is installed, otherwise one line per step on stderr (free-threaded venv)."""

    def __init__(self, total: int, desc: str):
        try:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, unit="run", file=sys.stderr)
        except ImportError:
            self.bar = None
        self.total, self.done, self.desc = total, 0, desc

    def step(self, note: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix_str(note)
            self.bar.update(1)
        else:
            print(f"{self.desc} {self.done}/{self.total}: {note}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _settings(quick_mode: bool, n_configs: int) -> dict:
    """Trial lengths. Full runs share a fixed measuring budget (about 5 minutes) among the
    configurations, 3 to 8 s per trial, so a machine with many CPUs still finishes in time."""
    if quick_mode:      # two trials: QUICK=1 must finish within 5 minutes, set-up included
        return {"trials": 2, "duration_s": 1.0, "warmup_s": 0.3, "profile_s": 1.0}
    trials = 3
    duration = min(8.0, max(3.0, round(300.0 / (trials * max(1, n_configs)))))
    return {"trials": trials, "duration_s": duration, "warmup_s": 2.0, "profile_s": 5.0}


def run_benchmark(quick: bool, servers=None, cpus=None, *, progress: bool = True,
                  client_sched: str = "batch") -> list[dict]:
    """Measure every (server, mode) on each CPU count; returns one row per trial.

    Raises BenchmarkErrors (carrying the rows) if any measurement saw an error.
    """
    if client_sched not in CLIENT_SCHED:
        raise ValueError(f"client_sched must be one of {CLIENT_SCHED}, not {client_sched!r}")
    batch = client_sched == "batch"
    servers = tuple(servers or SERVERS)
    unknown = set(servers) - set(SERVERS)
    if unknown:
        raise ValueError(f"unknown servers {sorted(unknown)}; choose from {SERVERS}")
    ks = list(cpus or cpu_counts())
    configs = [(s, m, k) for s, m in CONFIGS if s in servers for k in ks]
    settings = _settings(quick, len(configs))
    workdir = tempfile.mkdtemp(prefix="colorloop-web-")
    os.chmod(workdir, 0o755)                 # Apache's www-data workers must read the files
    root = os.path.join(workdir, "files")
    paths = make_files(root)
    paths_file = os.path.join(root, PATHS_FILE)
    total = len(configs) * (1 + settings["trials"]) + (1 if "colorloop" in servers else 0)
    bar = Progress(total, "web bench") if progress else None
    rows: list[dict] = []
    failures: list[str] = []
    try:
        with ExitStack() as stack:
            running = {}
            for server, mode, k in configs:
                running[(server, mode, k)] = stack.enter_context(
                    peers.start(server, mode, k, cpu_split(k)[0], root))
                peers.check_serves(running[(server, mode, k)].url, root, paths[::100])
            for cfg in configs:      # warm-up: caches filled, workers spawned; not recorded
                result = _measure(running[cfg], cfg, paths_file, settings["warmup_s"], batch)
                if result.fault:
                    failures.append(f"{_name(cfg)} warm-up: {result.fault}")
                if bar:
                    bar.step(f"warm-up {_name(cfg)}")
            for trial in range(settings["trials"]):
                shift = trial % len(configs)
                for cfg in configs[shift:] + configs[:shift]:
                    server, mode, k = cfg
                    if not running[cfg].alive():
                        raise RuntimeError(f"{_name(cfg)} died during the benchmark")
                    result = _measure(running[cfg], cfg, paths_file, settings["duration_s"], batch)
                    disjoint = cpu_split(k)[2]
                    rows.append({
                        "python": python_label(), "server": server, "mode": mode, "cpus": k,
                        "connections": WRK_CONNECTIONS, "wrk_threads": WRK_THREADS,
                        "client_cpus_disjoint": disjoint, "client_sched": client_sched,
                        "trial": trial,
                        "requests_per_s": round(result.requests_per_s, 1),
                        "errors": result.errors, "latency_p50_us": result.latency_p50_us,
                        "latency_p99_us": result.latency_p99_us,
                        "client_cpu_s_per_request": (round(result.cpu_s / result.requests, 9)
                                                     if result.requests else ""),
                    })
                    if result.fault:
                        failures.append(f"{_name(cfg)} trial {trial}: {result.fault}")
                    if bar:
                        bar.step(f"{_name(cfg)} {result.requests_per_s:,.0f}/s")
        split = {}
        if "colorloop" in servers and 1 in ks:
            split = _gil_split(root, paths_file, settings["profile_s"], batch)
            if bar:
                bar.step("profiled colors off, 1 CPU")
    finally:
        if bar:
            bar.close()
        shutil.rmtree(workdir, ignore_errors=True)
    _add_speedups(rows)
    for row in rows:
        here = row["server"] == "colorloop" and row["mode"] == "off" and row["cpus"] == 1
        row["gil_free_s_per_request"] = split.get("gil_free_s_per_request", "") if here else ""
        row["gil_held_s_per_request"] = split.get("gil_held_s_per_request", "") if here else ""
    if failures:
        raise BenchmarkErrors(rows, failures)
    return rows


def _name(cfg) -> str:
    server, mode, k = cfg
    return f"{server}/{mode}/{k}cpu"


def _measure(proc: peers.ServerProcess, cfg, paths_file: str, duration_s: float, batch: bool):
    client = cpu_split(cfg[2])[1]
    return loadgen.run_wrk(proc.url, paths_file, threads=WRK_THREADS, connections=WRK_CONNECTIONS,
                           duration_s=duration_s, cpus=client, batch=batch)


def _add_speedups(rows: list[dict]) -> None:
    """speedup = requests/s over the median of the same server and mode on 1 CPU; none when that
    median is 0 (trials nothing answered, failures already: they raised ZeroDivisionError, and
    the rows were lost)."""
    base: dict = {}
    for row in rows:
        if row["cpus"] == 1:
            base.setdefault((row["server"], row["mode"]), []).append(row["requests_per_s"])
    for row in rows:
        one = median_and_spread(base.get((row["server"], row["mode"])) or [0.0])[0]
        row["speedup"] = round(row["requests_per_s"] / one, 3) if one else ""


def _gil_split(root: str, paths_file: str, duration_s: float, batch: bool) -> dict:
    """Colors off on 1 CPU with --profile-io: seconds per request inside and outside socket calls."""
    server_cpus, client_cpus, _ = cpu_split(1)
    stats_file = os.path.join(os.path.dirname(root), "profile.json")
    proc = peers.start_colorloop("off", 1, server_cpus, root,
                                 extra=["--profile-io", "--stats-file", stats_file])
    try:
        loadgen.run_wrk(proc.url, paths_file, threads=WRK_THREADS, connections=WRK_CONNECTIONS,
                        duration_s=duration_s, cpus=client_cpus,
                        batch=batch).require_clean("profiling run")
    finally:
        proc.stop()
    counts = json.loads(Path(stats_file).read_text())
    if not counts["requests"]:
        return {}
    free = counts["io_s"] / counts["requests"]
    held = max(0.0, counts["cpu_s_serving"] - counts["io_s"]) / counts["requests"]
    return {"gil_free_s_per_request": f"{free:.3e}", "gil_held_s_per_request": f"{held:.3e}"}


def summarize(rows: list[dict]) -> list[dict]:
    """Median (min-max) requests/s per server, mode and CPU count, for the printed table."""
    groups: dict = {}
    for row in rows:
        groups.setdefault((row["python"], row["server"], row["mode"], row["cpus"]), []).append(row)
    out = []
    for (py, server, mode, k), rs in groups.items():
        med, lo, hi = median_and_spread([r["requests_per_s"] for r in rs])
        speed = [r["speedup"] for r in rs if r["speedup"] != ""]
        out.append({"python": py, "server": server, "mode": mode, "cpus": k,
                    "req_per_s": med, "min": lo, "max": hi,
                    "speedup": median_and_spread(speed)[0] if speed else "",
                    "errors": sum(r["errors"] for r in rs),
                    "disjoint": rs[0]["client_cpus_disjoint"]})
    return out


def _check_choices(p: argparse.ArgumentParser, args) -> tuple[list[str], list[int] | None]:
    """--servers and --cpus, checked before anything starts: a typo is the user's to fix, with
    one line naming the choices, not a ValueError traceback from inside the run."""
    servers = [s for s in args.servers.split(",") if s]
    unknown = [s for s in servers if s not in SERVERS]
    if unknown:
        p.error(f"--servers: unknown {','.join(unknown)}; choose from {','.join(SERVERS)}")
    possible = cpu_counts()
    try:
        ks = [int(k) for k in args.cpus.split(",") if k]
    except ValueError:
        p.error(f"--cpus {args.cpus!r}: expected CPU counts, e.g. 1,2")
    wrong = [k for k in ks if k not in possible]
    if wrong:
        p.error(f"--cpus {args.cpus}: this process may use 1 to {possible[-1]} CPUs, not "
                f"{','.join(map(str, wrong))}")
    return servers, ks or None


def load_before_run() -> dict:
    """How busy the machine was before a run: the load average, and the CPUs other work kept busy
    in the second before it (a warning when over half a CPU, since the rates will be noisy).
    Recorded in the CSV's machine.json, so that a noisy run says why."""
    busy = busy_cpus()
    if busy is not None and busy > 0.5:
        print(f"warning: other work keeps {busy:.1f} of {os.cpu_count()} CPUs busy: the numbers "
              "will be noisy", file=sys.stderr)
    return {"loadavg_before": os.getloadavg(), "busy_cpus_before": busy}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m apps.webserver.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="2 trials of 1 s (about 40 s) instead of 3 of 3-8 s (about 6 minutes)")
    p.add_argument("--servers", default=",".join(SERVERS), help=f"subset of {','.join(SERVERS)}")
    p.add_argument("--cpus", default="", help="CPU counts to measure, e.g. 1,2 (default 1..all)")
    p.add_argument("--json", action="store_true", help="print rows as JSON, write no CSV")
    p.add_argument("--client-sched", choices=CLIENT_SCHED, default="batch",
                   help="scheduling policy of wrk (default batch: see above)")
    args = p.parse_args(argv)
    servers, ks = _check_choices(p, args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # so every server gets stopped
    status = 0
    before = load_before_run()
    try:
        rows = run_benchmark(args.quick or quick(), servers, ks, client_sched=args.client_sched)
    except BenchmarkErrors as exc:
        rows, status = exc.rows, 1
        print(f"FAILED: {exc}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows))
        return status
    path = write_results("web_throughput", rows, extra={
        **before, "loadavg_after": os.getloadavg(),
        "wrk": {"threads": WRK_THREADS, "connections": WRK_CONNECTIONS,
                "sched": args.client_sched}})
    print_table(summarize(rows))
    print(f"wrote {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
