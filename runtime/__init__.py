"""colorloop's runtime: libasync-smp's colored event loop, in Python.

Zeldovich et al. (USENIX ATC 2003) let an event-driven program use several CPUs by giving every
callback a *color*: callbacks of one color run one at a time, in order; callbacks of different
colors may run in parallel; every callback starts on the same default color, so an unchanged program
is still a single-threaded event loop, and the programmer colors compute-heavy callbacks one by one.

libasync (C++)                         here
------------------------------------   ------------------------------------------------------
amain()                                loop.run()
wrap(fn, args...)                      runtime.wrap(fn, *args)      (default color 0)
cwrap(color, fn, args...) [smp]        runtime.cwrap(color, fn, *args)
(*cb)() "run now, later"               loop.call_soon(fn, *args, color=c)
delaycb(secs, cb)                      loop.call_later(secs, fn, *args, color=c) -> Handle
timecb_remove(t)                       handle.cancel()
                                       loop.call_every(secs, fn, *args, color=c)  (repeating)
fdcb(fd, selread, cb)                  loop.add_reader(fd, fn, *args, color=c)
fdcb(fd, selread, NULL)                loop.remove_reader(fd)
fdcb(fd, selwrite, cb)                 loop.add_writer(fd, fn, *args, color=c)
sigcb(sig, cb)                         loop.add_signal_handler(sig, fn, *args, color=c)
(libasync-smp's per-CPU threads)       runtime.Loop(workers=N, scheduler="hash"|"steal", pin=...)
(none: ours)                           loop.spawn(coro, color=c): async def on a color

The pieces, each a short module: `scheduler` (which worker runs which color), `loop` (selector,
timers, signals, workers), `coro` (coroutines on a color), `callbacks` and `errors`.
"""
from ._context import current_color
from .callbacks import DEFAULT_COLOR, Callback, Handle, cwrap, wrap
from .coro import Future, InvalidStateError, Task, call_in_color, readable, sleep, writable
from .errors import CancelledError, ErrorReport
from .loop import Loop
from .scheduler import HASH, OTHER_COLORS, POLICIES, STEAL

__all__ = [
    "Loop", "Callback", "Handle", "Task", "Future", "ErrorReport", "CancelledError",
    "InvalidStateError", "wrap", "cwrap", "current_color", "sleep", "readable", "writable",
    "call_in_color", "DEFAULT_COLOR", "HASH", "STEAL", "POLICIES", "OTHER_COLORS",
]
