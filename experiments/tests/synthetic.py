"""Small synthetic CSVs in the exact shape the benchmarks write, for drawing figures in tests.

The numbers are invented (and say so nowhere else because they never leave a temporary folder);
their shape (columns, modes, CPU counts, trials) is the contract the benchmark modules follow.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

MACHINE = {"machine": {"cpu_model": "Synthetic CPU", "cpus_online": 2, "cpus_allowed": [0, 1],
                       "kernel": "6.0-test", "os": "Linux", "python": "3.11.7", "python_label": "3.11",
                       "gil_enabled": True, "packages": {}, "hostname": "test"}}


def _write(folder: Path, name: str, rows: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{name}.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
        writer.writeheader()
        writer.writerows(rows)
    (folder / f"{name}.machine.json").write_text(json.dumps(MACHINE))


def sfs_rows() -> list[dict]:
    rows = []
    for suite, crypto_per_kib in (("sfs2003", 4e-6), ("modern", 1e-6)):
        for block in (8, 64, 256):
            crypto, other = crypto_per_kib * block, 60e-6
            for mode in ("colors_off", "colors_on"):
                for cpus in (1, 2):
                    per_read = crypto + other if (mode == "colors_off" or cpus == 1) else max(other, (crypto + other) / 1.8)
                    for trial in range(3):
                        reads = (1.0 + 0.02 * trial) / per_read
                        rows.append({"python": "3.11", "suite": suite, "block_kib": block, "mode": mode,
                                     "cpus": cpus, "clients": 8, "client_decrypts": False,
                                     "client_cpus_disjoint": cpus == 1, "trial": trial,
                                     "mb_per_s": reads * block * 1024 / 1e6, "speedup": 1.0,
                                     "crypto_s_per_read": crypto, "other_s_per_read": other,
                                     "send_s_per_read": 5e-6, "client_cpu_util": 0.05 * reads * 1e-4,
                                     "depth": 2, "scheduler": "steal"})
    return rows


def web_rows() -> list[dict]:
    rows = []
    servers = [("colorloop", "off", 3000, 1.0), ("colorloop", "on", 3000, 1.2),
               ("colorloop", "ncopy", 3000, 1.6), ("nginx", "workers", 30000, 1.3),
               ("apache", "mpm_event", 15000, 1.4), ("aiohttp", "reuseport", 4000, 1.0)]
    for python in ("3.11", "3.13t"):
        for server, mode, rate, gain in servers:
            if python == "3.13t" and server != "colorloop":
                continue
            for cpus in (1, 2):
                for trial in range(3):
                    r = rate * (gain if cpus == 2 else 1.0) * (1 + 0.01 * trial)
                    rows.append({"python": python, "server": server, "mode": mode, "cpus": cpus,
                                 "connections": 16, "client_cpus_disjoint": cpus == 1, "trial": trial,
                                 "requests_per_s": r, "errors": 0, "speedup": r / rate,
                                 "gil_free_s_per_request": 80e-6 if (server, mode, cpus) == ("colorloop", "off", 1) else "",
                                 "gil_held_s_per_request": 250e-6 if (server, mode, cpus) == ("colorloop", "off", 1) else ""})
    return rows


def dispatch_rows() -> list[dict]:
    rows = []
    for impl, base in (("colorloop", 3000.0), ("asyncio", 1500.0)):
        for path, factor in (("same_thread", 1.0), ("cross_thread", 4.0)):
            for trial in range(3):
                rows.append({"python": "3.11", "impl": impl, "path": path, "callbacks": 10000,
                             "trial": trial, "ns_per_callback": base * factor * (1 + 0.05 * trial)})
    return rows


def speedup_rows() -> list[dict]:
    rows = []
    for workload, held, free in (("sha256", 5e-6, 100e-6), ("chacha20poly1305", 5e-6, 60e-6),
                                 ("purepython", 100e-6, 0.0)):
        for colors in ("distinct", "single"):
            for workers in (1, 2):
                for trial in range(2):
                    par = workers if (colors == "distinct" and free > 0) else 1
                    ops = par / (held + free) * 0.95 if par > 1 else 1 / (held + free)
                    rows.append({"python": "3.11", "workload": workload, "colors": colors,
                                 "workers": workers, "trial": trial, "ops_per_s": ops,
                                 "speedup": ops * (held + free), "gil_free_s_per_op": free,
                                 "gil_held_s_per_op": held})
    for colors in ("distinct", "single"):             # the free-threaded build: no GIL to share
        for workers in (1, 2):
            for trial in range(2):
                par = workers if colors == "distinct" else 1
                ops = par / 100e-6 * (0.95 if par > 1 else 1.0)
                rows.append({"python": "3.13t", "workload": "purepython", "colors": colors,
                             "workers": workers, "trial": trial, "ops_per_s": ops,
                             "speedup": ops * 100e-6, "gil_free_s_per_op": 0.0,
                             "gil_held_s_per_op": 100e-6})
    return rows


def sched_rows() -> list[dict]:
    rows = []
    for load in ("collide", "few_heavy", "uniform", "short"):
        for scheduler, rate in (("hash", 100.0), ("steal", 150.0)):
            for trial in range(3):
                rows.append({"python": "3.11", "load": load, "scheduler": scheduler, "workers": 2,
                             "colors": 8, "callbacks": 64, "trial": trial, "ops_per_s": rate + trial,
                             "steals": 10 if scheduler == "steal" else 0, "seconds": 0.5})
    return rows


def lines_rows() -> list[dict]:
    return [{"changed_lines": 42, "total_lines": 2100, "modules": "server.py;crypto.py"}]


def gil_rows() -> list[dict]:
    wake = [{"python": "3.11", "kind": "wakeup", "trial": t, "sleep_us": us, "wake_signal_s": sig,
             **{f"wake_latency_p{q:02d}_s": lat * (0.8 + q / 250) for q in (5, 25, 50, 75, 95)}}
            for us, sig, lat in ((5, 10e-6, 20e-6), (500, 14e-6, 40e-6)) for t in range(2)]
    handoff = [{"python": "3.11", "kind": "handoff", "trial": t, "spin": spin, "held_s": h,
                "free_s": 9e-6, "rate_1_thread": 1 / (h + 9e-6), "rate_2_threads": 0.8 / (h + 9e-6),
                "ratio": 0.8} for spin, h in ((400, 3e-6), (1500, 15e-6)) for t in range(2)]
    switch = [{"python": "3.11", "kind": "switch", "trial": t, "spin": spin, "held_1_thread_s": h,
               "held_2_threads_s": h + 1.5e-6, "switch_s": 1.5e-6}
              for spin, h in ((400, 3e-6), (1500, 15e-6)) for t in range(2)]
    return wake + switch + handoff


def write_all(folder: Path) -> Path:
    _write(folder, "gil_handoff", gil_rows())
    _write(folder, "sfs_throughput", sfs_rows())
    _write(folder, "web_throughput", web_rows())
    _write(folder, "runtime_dispatch", dispatch_rows())
    _write(folder, "runtime_speedup", speedup_rows())
    _write(folder, "sched_compare", sched_rows())
    _write(folder, "lines_changed", lines_rows())
    return folder
