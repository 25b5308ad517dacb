"""Every color assignment of the server, in one place: the whole difference between the modes.

The server asks this policy which color each kind of callback gets. `ColorsOff` answers the
default color everywhere, so the server is the unmodified uniprocessor server. `ColorsOn` is the
libasync-smp change: each connection's crypto callbacks get that connection's own color (its ARC4
streams are sequential, so they must stay in order, but two connections share nothing), and the
file layer (handle table, block cache) gets one color of its own, so it stays serial without locks.
Accepting and framing keep the default color in both modes, as in the paper's SFS.
"""
from __future__ import annotations

NET = 0          # accept, read and frame: the default color in both modes


class ColorsOff:
    name = "off"

    def crypto(self, conn_id: int):
        return NET

    def file(self):
        return NET


class ColorsOn:
    name = "on"

    def crypto(self, conn_id: int):
        return 2 + conn_id      # consecutive ints: the hash scheduler spreads connections round-robin

    def file(self):
        return 1


def policy(mode: str):
    """`--colors off|on` -> the policy object."""
    if mode == "off":
        return ColorsOff()
    if mode == "on":
        return ColorsOn()
    raise ValueError(f"--colors must be 'on' or 'off', not {mode!r}")
