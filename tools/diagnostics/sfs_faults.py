"""Page faults per READ of the SFS server, with its fixed malloc thresholds and with glibc's own.

Starts the uncolored server (`--colors off`) on 1 and on 2 CPUs as `make fig-sfs` does (the load
generator on the other CPU, or sharing both), reads one block size with the load generator, and
counts the server's minor page faults (/proc/PID/stat) over the measured second. With glibc's own
thresholds (`--default-malloc`) a 256 KiB READ of the modern suite took about 98 faults on 1 CPU
here (2026-11-27; 6-23 on 2 CPUs) and its cipher 188 us per READ; with the server's
(apps/sfs_like/heap.py), none and 90 us. Not part of `make reproduce`.

    .venv/bin/python tools/diagnostics/sfs_faults.py [--block-kib 256] [--suite modern]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from apps.sfs_like import bench  # noqa: E402
from apps.sfs_like.keys import load_or_create  # noqa: E402
from apps.sfs_like.suites import SUITES  # noqa: E402

WARMUP_S, MEASURED_S = 0.3, 1.0


def minor_faults(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def measure(folder: Path, suite: str, k: int, block: int, default_malloc: bool) -> str:
    server = bench.ServerProc(folder / "export", folder / "server.key", folder / "server.log", suite,
                              "off", k, extra=("--default-malloc",) if default_malloc else ())
    try:
        server.wait_ready()
        load = bench.LoadProc(server)
        try:
            load.run(block, WARMUP_S, 0.5)                   # the block cache and the heap settle
            before = minor_faults(server.proc.pid)
            result = load.run(block, WARMUP_S, MEASURED_S)
            faults = minor_faults(server.proc.pid) - before
        finally:
            load.stop()
    finally:
        server.stop()
    reads = result["mb_per_s"] * 1e6 / block * (WARMUP_S + MEASURED_S)
    return (f"{result['mb_per_s']:6.0f} MB/s, {faults / reads:5.1f} page faults per READ, "
            f"cipher {result['crypto_s_per_read'] * 1e6:4.0f} us per READ")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--block-kib", type=int, default=256)
    p.add_argument("--suite", default="modern", choices=sorted(SUITES))
    args = p.parse_args(argv)
    if not Path("/proc/self/stat").exists():
        raise SystemExit("sfs_faults.py: needs /proc")
    with tempfile.TemporaryDirectory(prefix="sfs-faults-") as tmp:
        folder = Path(tmp)
        (folder / "export").mkdir()
        (folder / "export" / "big").write_bytes(os.urandom(bench.FILE_BYTES))
        load_or_create(folder / "server.key")
        for k in bench.cpu_counts():
            for default_malloc in (True, False):
                what = "glibc's thresholds " if default_malloc else "server's thresholds"
                line = measure(folder, args.suite, k, args.block_kib * 1024, default_malloc)
                print(f"{args.suite} {args.block_kib} KiB, uncolored, {k} CPU(s), {what}: {line}")


if __name__ == "__main__":
    main()
