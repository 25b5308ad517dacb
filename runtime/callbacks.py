"""Callback values: what libasync calls `wrap(fn, args...)`, plus the color libasync-smp adds.

A `Callback` is a function, its arguments and a color, bundled so that it can be stored and passed
around before the loop runs it (libasync's `callback<>::ref`). A `Handle` is one scheduled run of
a callback: it can be cancelled until it starts.
"""
from __future__ import annotations

from time import perf_counter as _perf_counter

DEFAULT_COLOR = 0


class Callback:
    """fn(*args) to be run as a callback of `color` (libasync-smp's colored wrap)."""

    __slots__ = ("fn", "args", "color")

    def __init__(self, color, fn, args=()):
        if not callable(fn):
            raise TypeError(f"callback must be callable, got {fn!r}")
        hash(color)  # a color must be hashable: fail here, not deep inside the scheduler
        self.fn = fn
        self.args = tuple(args)
        self.color = color

    def __call__(self, *more):
        return self.fn(*self.args, *more)

    def __repr__(self):
        return f"<Callback {describe(self.fn)} color={self.color!r}>"


def wrap(fn, *args) -> Callback:
    """libasync's wrap(): a callback on the default color."""
    return Callback(DEFAULT_COLOR, fn, args)


def cwrap(color, fn, *args) -> Callback:
    """libasync-smp's colored wrap: a callback that runs serially with others of `color`."""
    return Callback(color, fn, args)


def resolve(fn, args, color):
    """Accept either fn, *args, color=... or a ready Callback (whose own color wins)."""
    if isinstance(fn, Callback):
        return fn.fn, fn.args + tuple(args), fn.color
    if not callable(fn):
        raise TypeError(f"callback must be callable, got {fn!r}")
    hash(color)
    return fn, args, color


class Handle:
    """One scheduled run of fn(*args) on a color; cancel() stops it if it has not started.

    Created for every callback, so it stays small: `_seq` is set by the scheduler when the handle
    is queued, `_interval` only for repeating timers.
    """

    __slots__ = ("fn", "args", "color", "cancelled", "enqueued_at", "origin", "_seq", "_when",
                 "_interval", "__weakref__")

    def __init__(self, fn, args, color, origin=None):
        self.fn = fn
        self.args = args
        self.color = color
        self.cancelled = False
        self.origin = origin   # the repeating timer or fd registration this run came from
        self.enqueued_at = _perf_counter()
        self._when = None

    def cancel(self) -> None:
        self.cancelled = True

    @property
    def when(self):
        """The deadline (loop.time() clock) of a timer handle; None for immediate callbacks."""
        return self._when

    def __repr__(self):
        state = " cancelled" if self.cancelled else ""
        return f"<Handle {describe(self.fn)} color={self.color!r}{state}>"


def describe(fn) -> str:
    """A short readable name for a callback, for error reports and reprs."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None:
        return repr(fn)
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}" if module and module != "builtins" else name
