"""Running wrk with `wrk/mix.lua` and reading what it measured; errors are never averaged away.

wrk counts a reply with status >= 400 as a status error and reports connect, read, write and
timeout errors separately; `mix.lua` prints all of them as one JSON line. A run with any of them
is a failed run, as is one in which no request was answered: `WrkResult.fault` says why, and
`require_clean` raises.
"""
from __future__ import annotations

import json
import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .pinning import as_batch, pinned

MIX_LUA = Path(__file__).resolve().parent / "wrk" / "mix.lua"
ERROR_KINDS = ("connect", "read", "write", "status", "timeout")


class LoadError(RuntimeError):
    pass


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    bytes: int
    error_kinds: dict
    latency_p50_us: int
    latency_p99_us: int
    cpu_s: float = 0.0           # wrk's user + system CPU time over the run (the model's client cost)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def errors(self) -> int:
        return sum(self.error_kinds.values())

    @property
    def fault(self) -> str:
        """Why this run measured nothing to keep ('' if nothing): wrk's errors, or no request
        answered at all, which wrk does not count as an error when the run is shorter than its
        --timeout (a server that accepts connections and never answers)."""
        if self.errors:
            return f"errors {self.error_kinds}"
        return "" if self.requests else "no request was answered"

    def require_clean(self, what: str) -> "WrkResult":
        if self.fault:
            raise LoadError(f"{what}: {self.requests} requests, {self.fault}")
        return self


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise LoadError("wrk is not installed: run `make setup` (it apt-installs wrk)")
    return path


def run_wrk(url: str, paths_file: str | Path, *, threads: int = 2, connections: int = 32,
            duration_s: float = 5.0, cpus: list[int] | None = None,
            timeout_s: float = 5.0, batch: bool = False) -> WrkResult:
    """Run wrk against `url` with the mix of `paths_file`, pinned to `cpus` when given, and as a
    SCHED_BATCH task when `batch` (pinning.as_batch: what the benchmark does)."""
    cmd = [wrk_binary(), "-t", str(threads), "-c", str(connections),
           "-d", f"{max(1, round(duration_s))}s", "--timeout", f"{timeout_s:g}s",
           "-s", str(MIX_LUA), url.rstrip("/"), "--", str(paths_file)]
    if batch:
        cmd = as_batch(cmd)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(pinned(cmd, cpus), capture_output=True, text=True,
                          timeout=duration_s + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)      # wrk was waited for: it is counted
    line = next((l for l in proc.stdout.splitlines() if l.startswith("WRK_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise LoadError(f"wrk failed (exit {proc.returncode}) against {url}:\n"
                        f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    data = json.loads(line[len("WRK_JSON "):])
    return WrkResult(
        requests=data["requests"], duration_s=data["duration_us"] / 1e6, bytes=data["bytes"],
        error_kinds={k: data[k] for k in ERROR_KINDS if data[k]},
        latency_p50_us=data["latency_p50_us"], latency_p99_us=data["latency_p99_us"],
        cpu_s=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime))
