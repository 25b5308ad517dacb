"""Two bare threads against one, each looping Python work then a call that releases the GIL.

Compares cryptography's ChaCha20-Poly1305 `encrypt` (which allocates and zero-fills its 64 KiB
output holding the GIL), `encrypt_into` a buffer the thread owns (no allocation), and sha256 over
32 KiB (about as long without the GIL), each after `--spin` iterations of an empty Python loop
(400: about 3 us). On this 2-vCPU VM (2026-11-27), with 400, in six runs: 1.20-1.47x, 1.40-1.64x
and 1.62-1.74x; `encrypt_into` scaled at least as well as `encrypt` in every run. Not part of
`make reproduce`.

    .venv/bin/python tools/diagnostics/aead_gil.py [--spin 400] [--seconds 0.5]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from experiments import gil_handoff  # noqa: E402

BUFFER = os.urandom(64 * 1024)
SHA_BUFFER = os.urandom(32 * 1024)


def make_call(kind: str):
    if kind == "sha256-32k":
        return lambda: hashlib.sha256(SHA_BUFFER).digest()
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    aead = ChaCha20Poly1305(ChaCha20Poly1305.generate_key())
    nonce = os.urandom(12)
    if kind == "encrypt":
        return lambda: aead.encrypt(nonce, BUFFER, None)
    out = bytearray(len(BUFFER) + 16)
    return lambda: aead.encrypt_into(nonce, BUFFER, None, out)


def work(kind: str, spin: int):
    """`spin` iterations of Python, then the call, on a call object of this thread's own: threads
    sharing one AEAD object would wait for each other on its lock."""
    mine = threading.local()

    def one() -> None:
        call = getattr(mine, "call", None)
        if call is None:
            call = mine.call = make_call(kind)
        for _ in range(spin):
            pass
        call()
    return one


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spin", type=int, default=400, help="empty-loop iterations before each call")
    p.add_argument("--seconds", type=float, default=0.5)
    args = p.parse_args(argv)
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("aead_gil.py: needs 2 CPUs")
    for kind in ("encrypt", "encrypt_into", "sha256-32k"):
        one = gil_handoff.rate(work(kind, args.spin), 1, cpus[:1], args.seconds)
        two = gil_handoff.rate(work(kind, args.spin), 2, cpus[:2], args.seconds)
        print(f"{kind:13s} 1 thread {one:9,.0f}/s  2 threads {two:9,.0f}/s  {two / one:.2f}x")


if __name__ == "__main__":
    main()
