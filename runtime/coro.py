"""`async def` on a color: each step of a coroutine is one callback of its task's color.

libasync programs are chains of callbacks; Python programmers write coroutines. A `Task` drives a
coroutine by running `coro.send()` as a callback of the task's color, so everything a coroutine
does between two `await`s is serialised with every other callback of that color, exactly as if it
had been written as callbacks. Awaiting a `Future` suspends the step; the future's completion (from
any thread) schedules the next step on the task's color.

Neither asyncio, Trio nor Twisted has this serialisation key: there, two coroutines either share one
thread or share nothing.

A coroutine's exception is the task's outcome, raised again to whoever awaits the task or calls
`result()`. As in asyncio, one that nobody ever retrieved (`await`, `result()`, `exception()`) is
not lost: it is reported to the loop's `on_error`, and counted, when the task is garbage-collected.
SystemExit and KeyboardInterrupt are not outcomes to hand on but requests to stop: a step that
raises one ends the task with it and then raises it on, so the loop stops exactly as when a plain
callback raises it. CancelledError is a BaseException, as asyncio's: a task's `except Exception:`
lets its cancellation through (runtime/errors.py says why, and what it means outside a task).
"""
from __future__ import annotations

import collections.abc
import functools
import inspect
import selectors
import threading

from . import _context
from .callbacks import DEFAULT_COLOR, describe
from .errors import ERRORS, CancelledError, log_report, make_report

_PENDING, _DONE = "pending", "done"


class InvalidStateError(Exception):
    pass


class Future:
    """A result that will be set later, by any thread. Awaitable from a Task."""

    _on_abandon = None   # fn() to release what the future holds if its awaiting task is cancelled

    def __init__(self):
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._result = None
        self._exception: BaseException | None = None
        self._retrieved = False      # result() or exception() was called (awaiting calls result())
        self._callbacks: list | None = []

    def done(self) -> bool:
        return self._done.is_set()

    def set_result(self, value) -> None:
        self._complete(value, None)

    def set_exception(self, exc: BaseException) -> None:
        self._complete(None, exc)

    def _complete(self, value, exc, if_pending=False) -> None:
        with self._lock:
            if self._callbacks is None:
                if if_pending:
                    return
                raise InvalidStateError("the future is already done")
            self._result, self._exception = value, exc
            callbacks, self._callbacks = self._callbacks, None
            self._done.set()
        stop = None
        for fn in callbacks:
            # One bad callback must not skip the others: a waiting task's wake-up may be among
            # them, and skipped it would leave that task pending for ever.
            try:
                fn(self)
            except ERRORS as exc:
                # Nor raise into whoever completed the future, often a plain thread.
                _report_callback_error(fn, exc)
            except BaseException as exc:
                # SystemExit, KeyboardInterrupt: a request to stop, raised on once every callback
                # ran, so that it stops the loop as from any callback. A second one is reported.
                if stop is None:
                    stop = exc
                else:
                    _report_callback_error(fn, exc)
        if stop is not None:
            raise stop

    def add_done_callback(self, fn) -> None:
        """fn(future) once it is done: immediately, in this thread, if it already is."""
        with self._lock:
            if self._callbacks is not None:
                self._callbacks.append(fn)
                return
        fn(self)

    def remove_done_callback(self, fn) -> int:
        """Take fn off the callbacks to run at completion; how many times it was there."""
        with self._lock:
            if not self._callbacks:
                return 0
            kept = [cb for cb in self._callbacks if cb != fn]
            removed, self._callbacks = len(self._callbacks) - len(kept), kept
        return removed

    def result(self, timeout: float | None = None):
        """The value, or raise the exception. Blocks up to `timeout` if called from a plain thread;
        on a loop's own threads it never blocks (InvalidStateError if not done): waiting there
        could stop the very callbacks that would complete it."""
        if not self._done.is_set() and getattr(_context.local, "loop", None) is not None:
            raise InvalidStateError("the future is not done: await it instead of calling "
                                    "result() on a loop thread")
        if not self._done.wait(timeout):
            raise TimeoutError("the future is not done")
        self._retrieved = True
        if self._exception is not None:
            raise self._exception
        return self._result

    def exception(self):
        if not self.done():
            raise InvalidStateError("the future is not done")
        self._retrieved = True
        return self._exception

    def __await__(self):
        if not self.done():
            yield self
        return self.result()


class Task(Future):
    """A coroutine whose every step runs as a callback of `color` on `loop`."""

    def __init__(self, loop, coro, color=DEFAULT_COLOR):
        if not isinstance(coro, collections.abc.Coroutine):
            raise TypeError(f"spawn() needs a coroutine, got {coro!r}")
        if inspect.iscoroutine(coro) and inspect.getcoroutinestate(coro) != inspect.CORO_CREATED:
            # Started: something else drives it, and our first send() would resume its await
            # with None. Finished: it would only fail with a puzzling "cannot reuse" error.
            raise RuntimeError(f"spawn() needs a coroutine not started yet; {_name(coro)} is "
                               f"{inspect.getcoroutinestate(coro).lower()[5:]}")
        super().__init__()
        self._loop = loop
        self._coro = coro
        self._color = color
        self._waiting_on: Future | None = None
        # Numbers the coroutine's suspensions (0: before its first step). A step names the one it
        # resumes, so that of two steps for one (a wake-up and a cancel, two cancels, a cancel
        # from another thread racing the step that is suspending) only the first resumes it,
        # even if the coroutine then awaits the very same future again.
        self._suspension = 0
        self._cancel_requested = False
        self._failed_on = 0          # the worker whose step raised, for a report at collection
        loop.call_soon(self._step, None, None, 0, color=color)

    @property
    def color(self):
        """Read-only: steps already queued run on the old color, so a task whose color changed
        could run two steps at once, on two colors."""
        return self._color

    def cancel(self) -> bool:
        """Throw CancelledError into the coroutine at its current await (or at its first step,
        if it has not started). False if already done."""
        if self.done():
            return False
        self._cancel_requested = True
        suspension = self._suspension
        if self._waiting_on is not None:
            self._loop.call_soon(self._step, None, None, suspension, color=self.color)
        return True

    def set_result(self, value) -> None:
        """Refused, as in asyncio: the coroutine's return is the result; set from outside, the
        coroutine would be dropped at its await, its finally blocks never run."""
        raise RuntimeError("a Task's result is its coroutine's; cancel() it to end it early")

    set_exception = set_result

    def _step(self, value, exc, suspension: int) -> None:
        """One step of the coroutine: resume `suspension` with `value` or `exc`. It is resumed
        once: by its future's wake-up or by a cancel(), whichever runs first; the other finds it
        resumed already and does nothing. A requested cancellation is delivered at the first
        step that runs, whatever it was to deliver."""
        if self.done() or suspension != self._suspension:
            return
        self._suspension += 1
        resumes, self._waiting_on = self._waiting_on, None
        if self._cancel_requested:
            self._cancel_requested = False
            value, exc = None, CancelledError()
            if resumes is not None and resumes._on_abandon is not None and not resumes.done():
                resumes._on_abandon()       # e.g. readable(fd): stop watching the fd
                # Another task awaiting it too learns it will not come, as in asyncio.
                resumes._complete(None, CancelledError(), if_pending=True)
        try:
            awaited = self._coro.send(value) if exc is None else self._coro.throw(exc)
        except StopIteration as stop:
            self._complete(stop.value, None)
            return
        except BaseException as failure:       # the task's outcome, re-raised to who awaits it
            self._failed_on = _context.local.worker or 0
            self._complete(None, failure)
            if isinstance(failure, (SystemExit, KeyboardInterrupt)):
                # Stop the loop as a callback raising it does (reported, loop stopped, run()
                # raises it); so it needs no report when collected. Any other BaseException
                # (GeneratorExit, a program's own) is only the outcome, as in asyncio.
                self._retrieved = True
                raise
            return
        if awaited is self or not isinstance(awaited, Future):
            if awaited is self:         # as in asyncio: it would sleep for ever, unnoticed
                problem = RuntimeError(f"{self!r} cannot await itself: nothing could ever wake it")
            else:
                problem = TypeError(f"a colorloop task can only await colorloop awaitables, "
                                    f"not {awaited!r}")
            self._loop.call_soon(self._step, None, problem, self._suspension, color=self.color)
            return
        self._waiting_on = awaited
        awaited.add_done_callback(functools.partial(self._wake, self._suspension))
        if self._cancel_requested:
            # cancel() ran during this step, when there was no await yet to interrupt
            self._loop.call_soon(self._step, None, None, self._suspension, color=self.color)

    def _wake(self, suspension: int, awaited: Future) -> None:
        if suspension != self._suspension:
            return      # cancelled meanwhile; that step already ran
        try:
            value, exc = awaited.result(), None
        except BaseException as failure:
            value, exc = None, failure
        self._loop.call_soon(self._step, value, exc, suspension, color=self.color)

    def __del__(self):
        """asyncio's "Task exception was never retrieved": report a failure nobody looked at.
        And its "Task was destroyed but it is pending": a pending task is only collected when
        nothing can ever resume it (a queued step or an awaited future's wake-up holds it), so
        it would vanish silently, a hang nobody hears of.

        CancelledError is not a failure to report: someone asked for it. Runs on whichever thread
        collects the task, as asyncio's does.
        """
        if not hasattr(self, "_coro"):          # __init__ refused the coro
            return
        exc, what = self._exception, "its exception was never retrieved"
        if not self.done():
            exc = RuntimeError("the task was garbage-collected while it waited: nothing held "
                               "what it awaited, so nothing could ever complete it")
            what = "destroyed while pending"
        elif exc is None or self._retrieved or isinstance(exc, CancelledError):
            return
        try:
            self._loop._report(self.color, f"task {_name(self._coro)} ({what})", exc,
                               self._failed_on)
        except Exception:       # at interpreter exit, or a loop gone half-way: nothing to do
            pass

    def __repr__(self):
        state = "done" if self.done() else "pending"
        return f"<Task {_name(self._coro)} color={self.color!r} {state}>"


def _report_callback_error(fn, exc: BaseException) -> None:
    """To the on_error of the loop whose thread this is, as a callback's error; else logged."""
    what = f"future done callback {describe(fn)}"
    loop = getattr(_context.local, "loop", None)
    if loop is not None:
        loop._report(_context.current_color(), what, exc, _context.local.worker)
    else:
        log_report(make_report(None, what, exc, -1))


def _name(coro) -> str:
    return getattr(coro, "__qualname__", None) or repr(coro)


# -- awaitables for coroutines running on a loop -------------------------------------------------
def sleep(delay: float) -> Future:
    """await runtime.sleep(s): resume on the task's color after `delay` seconds."""
    fut = Future()
    timer = _context.current_loop().call_later(delay, _resolve, fut, None, color=_here())
    fut._on_abandon = timer.cancel      # else a cancelled long sleep holds its timer till then
    return fut


def readable(fd) -> Future:
    """await runtime.readable(fd): resume once fd is readable (one shot).

    RuntimeError if fd already has a reader (add_reader, or another task's wait): this wait would
    replace it. Cancelling the waiting task stops watching the fd."""
    return _fd_once(fd, selectors.EVENT_READ)


def writable(fd) -> Future:
    """await runtime.writable(fd): resume once fd is writable (one shot); as readable()."""
    return _fd_once(fd, selectors.EVENT_WRITE)


def _fd_once(fd, event) -> Future:
    loop = _context.current_loop()
    fut = Future()

    def stop_watching():
        # By number: a socket closed meanwhile says fileno() -1, and the wait must still go.
        loop._remove_fd(registration.watch.fd, event, only=registration)

    def fire():
        stop_watching()
        if not fut.done():
            fut.set_result(None)
    registration = loop._add_fd(fd, event, fire, (), _here(), once=True)
    fut._on_abandon = stop_watching
    return fut


def call_in_color(color, fn, *args) -> Future:
    """await runtime.call_in_color(c, fn, x): run fn(x) as a callback of color c; get its result.

    This is how a coroutine on one color uses state owned by another color (say, a cache kept on
    its own color) without locks. If the waiting task is cancelled before fn starts, fn never runs.
    """
    loop = _context.current_loop()
    fut = Future()

    def run():
        try:
            value = fn(*args)
        except BaseException as exc:
            fut._complete(None, exc, if_pending=True)     # pending unless the caller was cancelled
        else:
            fut._complete(value, None, if_pending=True)
    # Cancelling the waiting task before fn started drops the call, as asyncio drops an
    # executor job that has not started: nobody is left to want its result or its effects.
    fut._on_abandon = loop.call_soon(run, color=color).cancel
    return fut


def _resolve(fut: Future, value) -> None:
    if not fut.done():
        fut.set_result(value)


def _here():
    color = _context.current_color()
    return DEFAULT_COLOR if color is None else color
