"""Per-thread facts: which loop this worker serves and which color it is running right now.

Coroutine helpers (`runtime.sleep`, ...) and `current_color()` need them without being passed a
loop, the way asyncio finds its running loop.
"""
from __future__ import annotations

import threading

local = threading.local()
local.loop = None
local.worker = None
local.color = None


def enter(loop, worker: int) -> None:
    local.loop = loop
    local.worker = worker
    local.color = None


def leave() -> None:
    local.loop = None
    local.worker = None
    local.color = None


def current_loop():
    loop = getattr(local, "loop", None)
    if loop is None:
        raise RuntimeError("no colorloop Loop is running in this thread")
    return loop


def current_color():
    """The color of the callback running on this thread, or None outside callbacks."""
    return getattr(local, "color", None)
