"""Which color each callback of the web server runs on: the whole parallelisation is here.

libasync-smp's point is that an event-driven program becomes parallel by a short, visible diff of
color assignments, with no change to its callbacks. With `parallel=False` every callback gets the
default color 0, so the server runs exactly as a single-threaded event loop. With `parallel=True`
each connection's parsing and replying run on that connection's own color (connections share no
mutable state except the file cache, whose tables are per thread), and accepting runs on a color of
its own, which also owns the count of open connections.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ColorPlan:
    parallel: bool

    def accept(self):
        return "accept" if self.parallel else 0

    def connection(self, conn_id: int):
        return ("conn", conn_id) if self.parallel else 0


OFF = ColorPlan(parallel=False)
ON = ColorPlan(parallel=True)


def plan(mode: str) -> ColorPlan:
    """'off' or 'on', as given to `--colors`."""
    if mode not in ("on", "off"):
        raise ValueError(f"--colors must be 'on' or 'off', not {mode!r}")
    return ON if mode == "on" else OFF
