"""Keep the memory of freed READ buffers for the next READ instead of handing it back to the kernel.

A large READ makes a few buffers of a little over the block size (the data, its ciphertext and tag,
the framed reply) that live together until the reply is sent. With glibc's default thresholds,
freeing two such 256 KiB blocks gives the top of the heap back to the kernel, so the next READ
grows the heap again and takes a page fault for every 4 KiB page it writes. Measured here
(`apps/sfs_like/tests/test_heap.py` repeats the pattern): 96 faults per round of two 256 KiB
buffers, and in the modern-suite server about 100 faults per 256 KiB READ, which made its
ChaCha20-Poly1305 take 188 us per READ against 72 us for the same call in a loop, and the
uncolored server read 0.9 GB/s on one CPU but 1.4 GB/s on two (the faults were cheaper there).
Fixed thresholds end that: the server then has no faults per READ and reads 1.6 GB/s on one CPU.

Blocks above `mmap_threshold` still get their own mapping (none of ours are that large), and up to
`trim_threshold` of free memory stays with the process: a server's working set, not a leak.
"""
from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1           # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 << 20
TRIM_THRESHOLD = 64 << 20


def keep_freed_memory(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Fix glibc malloc's thresholds for this process. True if it took them; False on a C library
    without mallopt (macOS) or one that ignores it (musl), where nothing changes."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1 and mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1
