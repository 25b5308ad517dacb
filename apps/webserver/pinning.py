"""Running a program on given CPUs only, or as a batch task: how the benchmark places servers and wrk."""
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


def as_batch(cmd: list[str]) -> list[str]:
    """cmd run under Linux's SCHED_BATCH policy (through chrt, for the same reason as taskset).

    A batch task is never woken *into* a CPU ahead of the task running there: when the load
    generator has to share the server's CPUs (a 2-CPU machine measuring a 2-CPU server), it no
    longer preempts a server thread each time a reply arrives, but runs when a server thread
    waits or its time slice ends, and then handles all the replies that came meanwhile. It keeps
    its full share of CPU time; it only stops cutting the server's callbacks in pieces.
    """
    chrt = shutil.which("chrt")
    if chrt is None:
        raise RuntimeError("chrt (util-linux) is needed to run the load generator as a batch task")
    return [chrt, "--batch", "0", *cmd]
