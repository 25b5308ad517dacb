"""Large READs must not fault their buffers in afresh every time (apps/sfs_like/heap.py)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
BLOCK = 256 * 1024

# Two buffers of a little over 256 KiB made and freed together, as a 256 KiB READ does; the
# page faults per round, in a fresh interpreter (a used heap would hide the pattern).
PATTERN = """
import resource, sys
from apps.sfs_like import heap
tuned = sys.argv[1] == "tuned" and heap.keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def round_():
    bufs = [bytearray(262144 + 16), bytearray(262144 + 64)]
    del bufs
for _ in range(20):
    round_()
before = faults()
for _ in range(200):
    round_()
print(tuned, (faults() - before) / 200)
"""


def faults_per_round(mode: str) -> tuple[bool, float]:
    out = subprocess.run([sys.executable, "-c", PATTERN, mode], cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()
    return out[0] == "True", float(out[1])


def test_freed_buffers_are_reused_without_page_faults():
    tuned, tuned_faults = faults_per_round("tuned")
    if not tuned:
        pytest.skip("this C library has no glibc mallopt")
    _, default_faults = faults_per_round("default")
    # 256 KiB is 64 pages: the default thresholds fault most of them in again every round.
    assert tuned_faults < 2, (tuned_faults, default_faults)
    if default_faults < 32:
        pytest.skip(f"this glibc keeps the memory by itself ({default_faults:.0f} faults per round)")


def server_faults_per_read(start_server, export: Path, *extra: str) -> float:
    srv = start_server(export, extra=("--suite", "modern", *extra))
    def minflt() -> int:
        return int(Path(f"/proc/{srv.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[7])
    def load(duration: float) -> dict:
        out = subprocess.run([sys.executable, "-m", "apps.sfs_like.loadgen", srv.address, "--suite",
                              "modern", "--path", "big", "--block", str(BLOCK), "--clients", "2",
                              "--no-decrypt", "--warmup", "0.1", "--duration", str(duration)],
                             cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
        return json.loads(out.stdout.splitlines()[0])
    load(0.2)                       # the block cache and the heap settle
    before = minflt()
    result = load(0.5)
    reads = result["mb_per_s"] * 1e6 / BLOCK * 0.6     # warm-up and measured time
    return (minflt() - before) / reads


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_server_reads_256k_blocks_without_faulting_its_buffers(start_server, tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    (export / "big").write_bytes(bytes(range(256)) * (16 * BLOCK // 256))
    if not faults_per_round("tuned")[0]:
        pytest.skip("this C library has no glibc mallopt")
    tuned = server_faults_per_read(start_server, export)
    default = server_faults_per_read(start_server, export, "--default-malloc")
    assert tuned < 8, (tuned, default)
    if default < 32:
        pytest.skip(f"this glibc keeps the memory by itself ({default:.0f} faults per READ)")
