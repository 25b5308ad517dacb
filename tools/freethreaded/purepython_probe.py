"""Does pure-Python colored work run in parallel? 1 vs 2 workers, on whichever Python runs this.

On CPython 3.11 the GIL lets one thread at a time run bytecode, so callbacks of distinct colors on
two workers take as long as on one (ratio ~1.0x). On the free-threaded 3.13t (PYTHON_GIL=0) they
should take about half as long (goal: >= 1.8x). A single-color control must stay ~1.0x on both:
callbacks of one color never overlap, whatever the worker count.

The wall-clock ratio is what the goal is about, but on a shared 2-CPU machine any other busy
process eats into the 2-worker run. So each row also carries two numbers that such noise barely
moves: the process's CPU time over wall time while the loop ran (about 1 when one thread at a time
does the work, about 2 when two really run at once), and the thread CPU time one callback costs
(equal at 1 and 2 workers unless the threads slow each other down: shared reference counts,
cache lines, locks). Trials interleave the configurations so that noise hits them alike.

A second workload, `shared-constant`, is the same loop with its mask written as a constant: on
3.13t all threads then update that constant's reference count, and the per-task CPU time of two
workers rises towards twice that of one (see spin_shared_constant).

  .venv/bin/python -m tools.freethreaded.purepython_probe
  PYTHON_GIL=0 build/py313t/venv/bin/python -m tools.freethreaded.purepython_probe [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import sysconfig
import threading
import time

import runtime


def python_label() -> str:
    free = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    return f"{sys.version_info.major}.{sys.version_info.minor}{'t' if free else ''}"


def gil_enabled() -> bool:
    probe = getattr(sys, "_is_gil_enabled", None)
    return True if probe is None else bool(probe())


def spin(iterations: int, bits: int = 32) -> int:
    """Interpreter-bound work: nothing in here releases the GIL or touches a shared object.

    The mask is computed from an argument at run time, so each call makes its own int, owned by
    the calling thread. Written as `(1 << 32) - 1` it would be folded by the compiler into one
    constant of the code object, shared by every thread (see spin_shared_constant).
    """
    mask = (1 << bits) - 1
    acc = 0
    for i in range(iterations):
        acc = (acc * 31 + i) & mask
    return acc


def spin_shared_constant(iterations: int) -> int:
    """The same work with the mask as a constant: the 3.13t trap this probe also measures.

    In CPython 3.13.5t the int/float/bytes/tuple constants of code in an imported module are not
    immortal, so every thread that loads one updates its reference count; all threads but its
    owner do so atomically on one shared field, and two of them contend for that cache line.
    """
    acc = 0
    for i in range(iterations):
        acc = (acc * 31 + i) & 0xFFFFFFFF
    return acc


WORKLOADS = {"thread-local": spin, "shared-constant": spin_shared_constant}


def run_once(tasks: int, iterations: int, workers: int, distinct_colors: bool,
             workload: str = "thread-local") -> dict:
    """Run `tasks` callbacks on a loop of `workers` pinned workers; time them and check them."""
    spin = WORKLOADS[workload]
    results = [None] * tasks
    cpu_per_task = [0.0] * tasks
    lock = threading.Lock()
    state = {"left": tasks, "running": 0, "max_running": 0}
    expected = spin(iterations)

    def work(index: int, loop: runtime.Loop) -> None:
        with lock:
            state["running"] += 1
            state["max_running"] = max(state["max_running"], state["running"])
        started = time.thread_time()
        results[index] = spin(iterations)
        cpu_per_task[index] = time.thread_time() - started
        with lock:
            state["running"] -= 1
            state["left"] -= 1
            if state["left"] == 0:
                loop.stop()

    with runtime.Loop(workers=workers, pin=True) as loop:
        for i in range(tasks):
            loop.call_soon(work, i, loop, color=(i + 1) if distinct_colors else 1)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        loop.run()
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
    if results != [expected] * tasks:
        raise AssertionError("a callback was lost or computed a wrong result")
    if not distinct_colors and state["max_running"] != 1:
        raise AssertionError(f"one color ran {state['max_running']} callbacks at once")
    return {"python": python_label(), "gil": gil_enabled(), "workload": workload,
            "colors": "distinct" if distinct_colors else "single", "workers": workers,
            "tasks": tasks, "iterations": iterations, "seconds": wall, "tasks_per_s": tasks / wall,
            "cpu_per_wall": cpu / wall, "cpu_ms_per_task": 1e3 * statistics.median(cpu_per_task),
            "max_overlap": state["max_running"]}


CONFIGS = [("thread-local", "distinct"), ("thread-local", "single"),
           ("shared-constant", "distinct")]


def probe(tasks: int, iterations: int, trials: int) -> tuple[list[dict], list[dict]]:
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("this probe needs 2 CPUs; this process may use "
                         f"{sorted(os.sched_getaffinity(0))}")
    for workload in WORKLOADS:   # warm-up: imports, thread start-up
        run_once(tasks // 4 or 1, iterations, 1, True, workload)
    rows = []
    for trial in range(trials):
        for workload, colors in CONFIGS:
            for workers in (1, 2):
                row = run_once(tasks, iterations, workers, colors == "distinct", workload)
                row["trial"] = trial
                rows.append(row)
                print(f"trial {trial + 1}/{trials}: {workload:15s} {colors:8s} colors, "
                      f"{workers} worker(s): {row['seconds']:.3f}s, cpu/wall "
                      f"{row['cpu_per_wall']:.2f}, {row['cpu_ms_per_task']:.2f} ms cpu/task",
                      file=sys.stderr, flush=True)
    summary = []
    for workload, colors in CONFIGS:
        mine = [r for r in rows if r["workload"] == workload and r["colors"] == colors]

        def median(key, workers):
            return statistics.median(r[key] for r in mine if r["workers"] == workers)

        def fastest(workers):
            return min(r["seconds"] for r in mine if r["workers"] == workers)

        summary.append({"python": python_label(), "gil": gil_enabled(), "workload": workload,
                        "colors": colors,
                        "median_s_1_worker": median("seconds", 1),
                        "median_s_2_workers": median("seconds", 2),
                        "speedup_2_over_1": median("seconds", 1) / median("seconds", 2),
                        # fastest trial of each: the run least disturbed by other processes
                        "best_speedup_2_over_1": fastest(1) / fastest(2),
                        "cpu_per_wall_2_workers": median("cpu_per_wall", 2),
                        "cpu_per_task_2_over_1": median("cpu_ms_per_task", 2)
                        / median("cpu_ms_per_task", 1)})
    return rows, summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=64, help="callbacks per measurement")
    parser.add_argument("--iterations", type=int, default=40_000, help="loop turns per callback")
    parser.add_argument("--trials", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON line last")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    rows, summary = probe(args.tasks, args.iterations, args.trials)
    if load_before > 1.0:
        print(f"note: load average {load_before:.1f} on {os.cpu_count()} CPUs before this run: "
              "other processes competed for the CPUs, so the wall-clock ratios are unreliable; "
              "cpu/wall and cpu per task say whether the workers ran at once and slowed each other")
    for s in summary:
        print(f"Python {s['python']} (GIL {'on' if s['gil'] else 'off'}), {s['workload']}, "
              f"{s['colors']} colors: "
              f"2 workers {s['speedup_2_over_1']:.2f}x 1 worker "
              f"({s['median_s_1_worker']:.3f}s -> {s['median_s_2_workers']:.3f}s; fastest trials "
              f"{s['best_speedup_2_over_1']:.2f}x); at 2 workers "
              f"cpu/wall {s['cpu_per_wall_2_workers']:.2f}, "
              f"cpu per task x{s['cpu_per_task_2_over_1']:.2f}")
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
