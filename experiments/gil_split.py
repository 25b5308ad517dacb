"""Model input: how much of a GIL-releasing call still holds the GIL.

The model splits every callback into a GIL-held and a GIL-free part, and takes the GIL-free part
from timing whole calls: a sha256, a ChaCha20-Poly1305 `encrypt`, an SFS suite's `seal`. But such
a call releases the GIL only in its middle. On its way in and out it holds the GIL to parse its
arguments, to allocate and fill its result (an AEAD's 64 KiB output is zero-filled first; the
modern suite joins a reply's pieces into one buffer), and after the release it runs interpreter
code whose data the call's buffers have pushed out of the caches. Counting all of that as GIL-free
makes two threads look more parallel than they are.

So we measure the split itself. CPython releases the GIL in `PyEval_SaveThread` and takes it back
in `PyEval_RestoreThread`; perf uprobes on both timestamp every release while a child process
loops one call. Per call, the time outside the Save->Restore windows held the GIL. From it we
subtract, per release, what the same loop around a call that does nothing but release the GIL
(`os.sched_yield`) holds: the loop itself and the probes' own cost. What is left,
`held_in_call_s`, is moved from the GIL-free part to the GIL-held part in model_fit.

This needs perf (Debian's linux-perf, which `make setup` installs) and the right to place uprobes
(root). Without them each row says why in `status`, and the model counts whole calls as GIL-free.
On a build without a GIL nothing is measured: nothing would use it.

    python -m experiments.gil_split           (make fig-gilsplit; writes artifact/results/gil_split.csv)
"""
from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from experiments import common

NAME = "gil_split"
BASELINE = "yield"
SFS_SUITES = ("sfs2003", "modern")
SFS_BLOCKS_KIB = (8, 16, 32, 64, 128, 256)      # apps.sfs_like.bench's READ sizes
HANDOFF_KIB = (16, 32)                           # experiments.gil_handoff's GIL-free sha256
SPEEDUP_WORKLOADS = ("sha256", "chacha20poly1305", "chacha20poly1305_256k")
MAX_CALLS = 5000                                 # bounds the perf data of the shortest calls


class ProbesUnavailable(Exception):
    """perf or uprobes cannot be used here; the message says why, for the CSV."""


# ---------------------------------------------------------------------------------------------
# The calls, by name. Each factory returns a no-argument callable; the child process loops it.


def _sha256(kib: int):
    data = os.urandom(kib * 1024)
    return lambda: hashlib.sha256(data).digest()


def _speedup(workload: str):
    from runtime.benchmarks import speedup

    return speedup.WORKLOADS[workload]()


def _seal(suite: str, kib: int):
    """One READ reply as the SFS server seals it: a short reply header and the block. (Measured
    in a process with the server's malloc settings: see `uses_server_heap`.)"""
    from apps.sfs_like import suites

    spec = suites.SUITES[suite]
    channel = suites.make_channel(suite, os.urandom(spec.key_bytes), os.urandom(spec.key_bytes))
    parts = [os.urandom(16), os.urandom(kib * 1024)]
    return lambda: channel.send.seal(parts)


def _spin_then_yield(iterations: int = 20000):
    """A call with a known, long GIL-held part (the tests' check that held time is found)."""
    def call():
        for _ in range(iterations):
            pass
        os.sched_yield()
    return call


def calls() -> dict:
    """name -> factory of every call this step can measure."""
    table = {BASELINE: lambda: os.sched_yield, "sha256_1k": lambda: _sha256(1),
             "spin_then_yield": _spin_then_yield}
    table.update({f"speedup/{w}": (lambda w=w: _speedup(w)) for w in SPEEDUP_WORKLOADS})
    table.update({f"handoff/sha256_{k}k": (lambda k=k: _sha256(k)) for k in HANDOFF_KIB})
    table.update({f"seal/{s}/{k}k": (lambda s=s, k=k: _seal(s, k))
                  for s in SFS_SUITES for k in SFS_BLOCKS_KIB})
    return table


def uses_server_heap(name: str) -> bool:
    """The seals run in a child with the SFS server's malloc settings, as in the server (without
    them a 256 KiB reply's buffers go back to the kernel at every free and fault in again:
    apps/sfs_like/heap.py); the other calls with glibc's defaults, as in their benchmarks."""
    return name.startswith("seal/")


def measured_calls() -> list[str]:
    """What the model uses, in the order they are measured."""
    names = [f"speedup/{w}" for w in SPEEDUP_WORKLOADS] + [f"handoff/sha256_{k}k" for k in HANDOFF_KIB]
    names += [f"seal/{s}/{k}k" for s in SFS_SUITES for k in SFS_BLOCKS_KIB]
    try:
        import cryptography  # noqa: F401
    except ImportError:
        names = [n for n in names if n.startswith("handoff/") or n == "speedup/sha256"]
    return names


def child(names: list[str], trials: int, seconds: float, server_heap: bool = False) -> list[dict]:
    """In the probed process: per trial and call, loop the call for about `seconds` between two
    clock readings taken on the clock perf stamps its events with (CLOCK_MONOTONIC, `perf record
    -k mono`). Trials go round all calls, so a noisy moment spoils one trial of each, not all of
    one."""
    os.sched_setaffinity(0, common.allowed_cpus()[:1])     # one CPU: no migrations in a loop
    if server_heap:
        from apps.sfs_like import heap

        heap.keep_freed_memory()
    made = {name: calls()[name]() for name in names}
    sizes = {}
    for name, call in made.items():             # warm-up, and how many calls fill `seconds`
        call()
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < min(0.02, seconds):
            call()
            n += 1
        sizes[name] = int(min(MAX_CALLS, max(50, n * seconds / (time.perf_counter() - start))))
    loops = []
    for trial in range(trials):
        for name, call in made.items():
            n = sizes[name]
            t0 = time.clock_gettime(time.CLOCK_MONOTONIC)
            for _ in range(n):
                call()
            t1 = time.clock_gettime(time.CLOCK_MONOTONIC)
            loops.append({"call": name, "trial": trial, "t0": t0, "t1": t1, "n": n})
    return [dict(loop, tid=threading.get_native_id()) for loop in loops]


# ---------------------------------------------------------------------------------------------
# perf: placing the probes, recording a child, reading the events back.


def interpreter_binary() -> Path:
    """The ELF file whose PyEval_SaveThread this interpreter runs: the libpython it has mapped
    (pyenv's builds), else the interpreter itself. (Debian's python3.11 links libpython in
    statically although its sysconfig says shared and a libpython3.11.so may be installed: a
    probe there would see nothing.)"""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                if "/libpython3" in path and ".so" in path:
                    return Path(path).resolve()
    except OSError:
        pass
    return Path(sys.executable).resolve()


GROUP_PREFIX = "colorloop_"


class Probes:
    """Two uprobes named after this process (perf wants event names unique across groups, so the
    pid is in both the group's and the events' names: two runs at once never collide), removed
    again on exit. Probes left by a run that was killed outright are removed first."""

    def __init__(self) -> None:
        pid = os.getpid()
        self.group = f"{GROUP_PREFIX}{pid}"
        self.events = (f"{self.group}:save_{pid}", f"{self.group}:restore_{pid}")

    def __enter__(self) -> "Probes":
        if shutil.which("perf") is None:
            raise ProbesUnavailable("perf not installed (Debian: linux-perf)")
        if os.geteuid() != 0:
            raise ProbesUnavailable("placing uprobes needs root")
        remove_stale_probes()
        binary = interpreter_binary()
        proc = subprocess.run(["perf", "probe", "-x", str(binary),
                               "-a", f"{self.events[0]}=PyEval_SaveThread",
                               "-a", f"{self.events[1]}=PyEval_RestoreThread"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            self.__exit__()
            raise ProbesUnavailable(f"perf probe on {binary} failed: {_perf_error(proc.stderr)}")
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run(["perf", "probe", "-q", "-d", f"{self.group}:*"], capture_output=True)

    def record(self, names: list[str], trials: int, seconds: float, server_heap: bool,
               workdir: Path) -> tuple[list, str]:
        """Run the child under perf; its loops and the events as `perf script` text."""
        data = workdir / "perf.data"
        cmd = ["perf", "record", "-q", "-k", "mono", "-o", str(data),
               "-e", self.events[0], "-e", self.events[1], "--",
               sys.executable, "-m", "experiments.gil_split", "--child", json.dumps(
                   {"names": names, "trials": trials, "seconds": seconds, "server_heap": server_heap})]
        # perf and the child in a process group of their own: an interrupted run takes both down
        # (killing perf alone would leave the child looping for seconds)
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=common.REPO, start_new_session=True) as proc:
            try:
                out, err = proc.communicate()
            except BaseException:
                os.killpg(proc.pid, signal.SIGKILL)
                raise
        lines = [ln for ln in out.splitlines() if ln.startswith("[")]
        if proc.returncode != 0 or not lines:
            raise ProbesUnavailable(f"perf record failed: {_perf_error(err)}")
        script = subprocess.run(["perf", "script", "-i", str(data), "-F", "tid,time,event", "--ns"],
                                capture_output=True, text=True)
        if script.returncode != 0:
            raise ProbesUnavailable(f"perf script failed: {script.stderr.strip()[:200]}")
        return json.loads(lines[-1]), script.stdout


def _perf_error(stderr: str) -> str:
    """perf's own reason: its 'Error:' line if it printed one, else its last line."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error")]
    return (errors or lines or ["no message"])[0 if errors else -1][:300]


def remove_stale_probes() -> list[str]:
    """Delete the probe groups of runs whose process is gone (killed before it could clean up);
    returns the groups removed."""
    listed = subprocess.run(["perf", "probe", "-l"], capture_output=True, text=True).stdout
    stale = set()
    for line in listed.splitlines():
        group = line.strip().split(":", 1)[0]
        pid = group[len(GROUP_PREFIX):]
        if group.startswith(GROUP_PREFIX) and pid.isdigit() and not _alive(int(pid)):
            stale.add(group)
    for group in sorted(stale):
        subprocess.run(["perf", "probe", "-q", "-d", f"{group}:*"], capture_output=True)
    return sorted(stale)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def parse_events(text: str, tid: int) -> list[tuple[float, str]]:
    """(time, 'save' | 'restore') of one thread's events, in time order. perf script lines look
    like `  1234 65301.605990345: colorloop_99:save: `."""
    events = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or not fields[0].isdigit() or int(fields[0]) != tid:
            continue
        try:
            stamp = float(fields[1].rstrip(":"))
        except ValueError:
            continue
        event = fields[2].rstrip(":").rsplit(":", 1)[-1]          # save_<pid> or restore_<pid>
        kind = event.split("_", 1)[0]
        if kind in ("save", "restore"):
            events.append((stamp, kind))
    events.sort()
    return events


def split(events: list[tuple[float, str]], t0: float, t1: float, n: int) -> dict:
    """Per call of a loop of n calls from t0 to t1: seconds without the GIL (the Save->Restore
    windows), seconds with it (the rest of the loop's time) and GIL releases. A window cut by t0
    or t1 counts only inside them."""
    lo, hi = bisect.bisect_left(events, (t0, "")), bisect.bisect_right(events, (t1, "~"))
    free, releases, saved_at = 0.0, 0, None
    if lo > 0 and events[lo - 1][1] == "save":
        saved_at = t0
    for stamp, kind in events[lo:hi]:
        if kind == "save":
            saved_at, releases = stamp, releases + 1
        elif saved_at is not None:
            free += stamp - saved_at
            saved_at = None
    if saved_at is not None:
        free += t1 - saved_at
    total = t1 - t0
    return {"loop_s_per_call": total / n, "free_s_per_call": free / n,
            "held_s_per_call": (total - free) / n, "releases_per_call": releases / n}


def held_in_call(row: dict, baseline: dict) -> float:
    """GIL-held seconds of one call beyond what a bare release in the same loop holds."""
    extra = row["held_s_per_call"] - row["releases_per_call"] * baseline["held_s_per_call"]
    return max(0.0, extra)


def measure_calls(names: list[str], trials: int, seconds: float) -> list[dict]:
    """One row per call and trial: the split, and held_in_call_s against the baseline's loop of
    the same trial and process (one process for the seals, with the server's malloc settings,
    one for the rest)."""
    rows = []
    with Probes() as probes, tempfile.TemporaryDirectory(prefix="gil_split_") as tmp:
        for server_heap in (False, True):
            group = [n for n in names if n != BASELINE and uses_server_heap(n) == server_heap]
            if not group and server_heap:
                continue
            loops, text = probes.record([BASELINE] + group, trials, seconds, server_heap, Path(tmp))
            events = parse_events(text, loops[0]["tid"]) if loops else []
            if not events:
                raise ProbesUnavailable(f"the probes on {interpreter_binary()} saw no GIL release")
            base = {}
            for loop in loops:
                row = {"python": common.python_label(), "call": loop["call"], "trial": loop["trial"],
                       "server_heap": server_heap, "calls": loop["n"],
                       **split(events, loop["t0"], loop["t1"], loop["n"])}
                base.setdefault(loop["trial"], row)
                row["held_in_call_s"] = held_in_call(row, base[loop["trial"]])
                row["status"] = "measured"
                rows.append(row)
    return rows


def measure(reuse: bool = False) -> None:
    if reuse and (common.results_dir() / f"{NAME}.csv").exists():
        print(f"reusing {common.results_dir() / NAME}.csv")
        return
    names = measured_calls()
    if not common.gil_enabled():
        rows = [{"python": common.python_label(), "call": n, "status": "no GIL: nothing to split"}
                for n in names]
    else:
        trials, seconds = (1, 0.04) if common.quick() else (3, 0.1)
        print(f"timing the GIL's releases in {len(names) + 1} calls x {trials} trials under perf "
              f"uprobes (about {int(len(names) * trials * seconds * 1.5 + 4)} s)", flush=True)
        try:
            rows = measure_calls(names, trials, seconds)
        except ProbesUnavailable as exc:
            print(f"gil_split: {exc}; the model counts whole calls as GIL-free", file=sys.stderr)
            rows = [{"python": common.python_label(), "call": n, "status": f"unavailable: {exc}"}
                    for n in names]
    common.write_results(NAME, rows)
    table = held_in_call_table(rows=rows)
    for call in names:
        held = table.get((common.python_label(), call))
        if held is None:
            continue
        loop = statistics.median(r["loop_s_per_call"] for r in rows if r["call"] == call)
        print(f"{call:30s} {loop * 1e6:7.1f} µs a call under the probes, of which "
              f"{held * 1e6:5.2f} µs hold the GIL")


def held_in_call_table(results: Path | None = None, rows: list[dict] | None = None) -> dict:
    """{(python, call): median seconds over the trials} of the measured rows; empty if none."""
    import pandas as pd

    from experiments import figlib

    df = pd.DataFrame(rows) if rows is not None else figlib.read_csv(NAME, results)
    if df is None or not {"python", "call", "status", "held_in_call_s"} <= set(df.columns):
        return {}
    df = df[(df["status"] == "measured") & (df["call"] != BASELINE)].dropna(subset=["held_in_call_s"])
    medians = df.groupby(["python", "call"])["held_in_call_s"].median()
    return {(str(python), str(call)): float(v) for (python, call), v in medians.items()}


def unmeasured_reason(results: Path | None = None) -> str:
    """Why gil_split.csv has no measured row: its own status, or that it is missing."""
    from experiments import figlib

    df = figlib.read_csv(NAME, results)
    if df is None or "status" not in df.columns:
        return "its CSV is missing; make fig-gilsplit"
    return str(df["status"].iloc[0])


def main(argv=None) -> None:
    # SIGTERM (a `timeout`, a killed make) unwinds like Ctrl-C, so the probes and the temporary
    # perf data are removed on the way out
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--plot-only", action="store_true", help="(no figure: a model input table)")
    parser.add_argument("--child", help=argparse.SUPPRESS)     # JSON: names, trials, seconds
    args = parser.parse_args(argv)
    if args.child:
        job = json.loads(args.child)
        print(json.dumps(child(job["names"], int(job["trials"]), float(job["seconds"]),
                               bool(job.get("server_heap")))), flush=True)
    elif not args.plot_only:
        measure(reuse=args.reuse)


if __name__ == "__main__":
    main()
