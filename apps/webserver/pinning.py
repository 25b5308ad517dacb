"""Running a program on given CPUs only: how the benchmark places servers and wrk."""
from __future__ import annotations

import shutil


def pinned(cmd: list[str], cpus) -> list[str]:
    """cmd run on `cpus` only (it and every process and thread it starts), through taskset.

    taskset rather than a preexec_fn: a preexec_fn is unsafe when the parent has threads, and
    the benchmark's driver may have some (tqdm's monitor).
    """
    if not cpus:
        return list(cmd)
    taskset = shutil.which("taskset")
    if taskset is None:
        raise RuntimeError("taskset (util-linux) is needed to pin servers and wrk to CPUs")
    return [taskset, "--cpu-list", ",".join(map(str, cpus)), *cmd]
