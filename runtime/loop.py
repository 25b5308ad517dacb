"""The event loop: libasync's amain() with libasync-smp's colored workers.

One iteration of the loop thread, which is also worker 0:

    1. run a batch of its own callbacks (the default color 0 always lives here);
    2. wait in select() for its fds, its wake-up pipe or the next timer;
    3. turn ready fds, signals and due timers into callbacks of their colors.

Workers 1..N-1 are threads that run callbacks of the colors the scheduler gives them, and between
batches, or when they have nothing to run, do step 2 and 3 for their own fds. Each worker has its
own poller (runtime/poller.py), and an fd is polled by the home worker of its callback's color:
a connection's events reach the thread that runs its callbacks without a hand-off from another
thread. (On the free-threaded build that hand-off, one per request, was what held the colored web
server to 1.37x on 2 CPUs; polling where the color lives gave 1.63x in the same run.) With every
callback on color 0, every fd is polled by the loop thread, the worker threads never get anything,
and the program runs exactly as on a single-threaded event loop: the paper's
incremental-parallelism claim.

Any thread may schedule a callback; when the worker that must run it sleeps in its select(), the
scheduler wakes it through its poller's pipe. Any thread may also (un)register fds: the fd table
and the selectors change under one lock, at once, so that a worker's `remove_reader(fd);
sock.close()` is finished before the fd number can be reused.
"""
from __future__ import annotations

import heapq
import itertools
import math
import os
import selectors
import signal
import threading
import time
from time import perf_counter as _perf_counter
from collections import deque
from types import FunctionType

from . import _context
from .callbacks import DEFAULT_COLOR, Handle, describe, resolve
from .errors import ERRORS, log_report, make_report
from .poller import Poller
from .scheduler import Scheduler

_BATCH = 64                     # callbacks a worker runs between two looks at its fds
_EVENT_NAMES = {selectors.EVENT_READ: "reader", selectors.EVENT_WRITE: "writer"}
_MAX_SELECT_S = 24 * 3600       # longest single wait: select() overflows on a far timer's timeout
_MIN_SWEEP = 64                 # timers in the heap before cancelled ones are looked for


class _FdCallback:
    """A persistent fd callback. `armed` is False while its run is queued or running."""

    __slots__ = ("fn", "args", "color", "event", "watch", "armed", "active")

    def __init__(self, fn, args, color, event, watch):
        self.fn, self.args, self.color, self.event, self.watch = fn, args, color, event, watch
        self.armed = True
        self.active = True


class _FdWatch:
    """What one fd is registered for: the mask the kernel polls, its reader and writer, and which
    worker's poller polls it (the home worker of the color it was first registered with)."""

    __slots__ = ("fd", "reader", "writer", "mask", "poller")

    def __init__(self, fd, poller: int):
        self.fd = fd
        self.reader = None
        self.writer = None
        self.mask = 0      # the events the selector currently polls for this fd
        self.poller = poller


class Loop:
    """A colored event loop. See runtime/README.md for the API and its guarantees."""

    def __init__(self, workers: int | None = None, scheduler: str = "hash", pin: bool = False,
                 on_error=None):
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise ValueError(f"workers must be an int >= 1 (or None for one per CPU), got {workers!r}")
        self.workers = workers or os.cpu_count() or 1
        self.pin = pin
        self.on_error = on_error or log_report
        self._sched = Scheduler(self.workers, scheduler)
        self._pollers = []
        try:
            for _ in range(self.workers):
                self._pollers.append(Poller())
        except BaseException:       # out of descriptors part-way: give back the ones made
            for poller in self._pollers:
                poller.close()
            raise
        for w, poller in enumerate(self._pollers):
            self._sched.set_waker(w, poller.wake)
        self._timers: list = []
        self._sweep_at = _MIN_SWEEP     # heap size at which cancelled timers are swept out
        self._timer_lock = threading.Lock()
        self._timer_seq = itertools.count()
        self._fds: dict[int, _FdWatch] = {}
        self._fd_lock = threading.Lock()
        self._wake_on_register = not self._pollers[0].sees_new_registrations
        self._signal_handlers: dict[int, tuple] = {}
        self._signals_pending: deque = deque()
        self._old_signal_handlers: dict = {}
        self._old_wakeup_fd = None
        self._owns_sigint = False       # run() made Ctrl-C a clean stop, for as long as it runs
        self._loop_thread: threading.Thread | None = None
        self._run_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._closed = False
        self._interrupted = False
        self._fatal: BaseException | None = None
        self._errors = 0
        self._errors_lock = threading.Lock()
        self._created = time.monotonic()

    # -- scheduling (any thread) ----------------------------------------------------------------
    def call_soon(self, fn, *args, color=DEFAULT_COLOR) -> Handle:
        """Run fn(*args) as a callback of `color`, after the callbacks of that color queued before."""
        if self._closed:
            raise RuntimeError("the loop is closed")
        if type(fn) is not FunctionType:       # the common case skips resolve()'s checks
            fn, args, color = resolve(fn, args, color)
        handle = Handle(fn, args, color)
        self._sched.push(color, handle)
        return handle

    def call_later(self, delay: float, fn, *args, color=DEFAULT_COLOR) -> Handle:
        """libasync's delaycb(): fn(*args) once, `delay` seconds from now."""
        return self._add_timer(delay, None, fn, args, color)

    def call_every(self, interval: float, fn, *args, color=DEFAULT_COLOR) -> Handle:
        """fn(*args) every `interval` seconds until the handle is cancelled; missed ticks are skipped."""
        if not interval > 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        return self._add_timer(interval, interval, fn, args, color)

    def _add_timer(self, delay, interval, fn, args, color) -> Handle:
        self._check_open()
        # NaN compares false with everything, so it would sort anywhere in the timer heap and
        # fire at once; an infinite delay would never fire and only hold the loop open.
        if not math.isfinite(delay):
            raise ValueError(f"a timer's delay must be a finite number of seconds, got {delay}")
        fn, args, color = resolve(fn, args, color)
        handle = Handle(fn, args, color)
        handle._when = time.monotonic() + max(0.0, delay)
        handle._interval = interval
        with self._timer_lock:
            heapq.heappush(self._timers, (handle._when, next(self._timer_seq), handle))
            if len(self._timers) >= self._sweep_at:
                self._sweep_cancelled_timers()
            earliest = self._timers[0][2] is handle
        if earliest and not self._on_loop_thread():
            self._sched.wake_if_idle(0)
        return handle

    def _sweep_cancelled_timers(self) -> None:
        """Drop cancelled timers from the heap (timer lock held).

        A cancelled timer otherwise stays there, with its callback and arguments, until its
        deadline: arming a far timeout per request and cancelling it when the request is done
        would grow memory with every request. Sweeping when the heap has doubled since the last
        sweep keeps it within twice the live timers, at O(1) amortised cost per timer added.
        """
        self._timers = [entry for entry in self._timers if not entry[2].cancelled]
        heapq.heapify(self._timers)
        self._sweep_at = max(_MIN_SWEEP, 2 * len(self._timers))

    def time(self) -> float:
        return time.monotonic()

    # -- fds --------------------------------------------------------------------------------
    def add_reader(self, fd, fn, *args, color=DEFAULT_COLOR) -> None:
        """libasync's fdcb(fd, selread, cb): fn(*args) each time fd is readable, until removed."""
        self._add_fd(fd, selectors.EVENT_READ, fn, args, color)

    def add_writer(self, fd, fn, *args, color=DEFAULT_COLOR) -> None:
        """libasync's fdcb(fd, selwrite, cb)."""
        self._add_fd(fd, selectors.EVENT_WRITE, fn, args, color)

    def remove_reader(self, fd) -> bool:
        return self._remove_fd(fd, selectors.EVENT_READ)

    def remove_writer(self, fd) -> bool:
        return self._remove_fd(fd, selectors.EVENT_WRITE)

    def _add_fd(self, fd, event, fn, args, color, once=False):
        """Register fn for `event` on fd; return the registration. `once` (for `await
        runtime.readable(fd)`) refuses an fd that already has a callback for that event, which
        the one-shot wait would otherwise replace: a persistent reader silently lost, or another
        task's wait left hanging forever."""
        self._check_open()
        fd = _fileno(fd)
        # A worker's poller may take the registration later, on its own thread, where a bad fd
        # could only be reported asynchronously: refuse it here, to the caller.
        os.fstat(fd)
        fn, args, color = resolve(fn, args, color)
        with self._fd_lock:
            watch = self._fds.get(fd)
            if watch is None:
                watch = self._fds[fd] = _FdWatch(fd, self._sched.home(color))
            slot = _EVENT_NAMES[event]
            old = getattr(watch, slot)
            if old is not None:
                if once:
                    raise RuntimeError(f"fd {fd} already has a {slot} ({describe(old.fn)}): "
                                       f"remove it before awaiting the fd, or do that work in it")
                old.active = False
            new = _FdCallback(fn, args, color, event, watch)
            setattr(watch, slot, new)
            # A new registration is always told to the kernel afresh: if the program closed the
            # fd without removing it and the number was reused, the old kernel entry is gone.
            self._poll_for(watch, watch.mask | event, fresh=True)
        if self._wake_on_register and self._loop_thread is not None:
            self._sched.wake_if_idle(watch.poller)
        return new

    def _remove_fd(self, fd, event, only=None) -> bool:
        """Unregister fd's callback for `event`; with `only`, just that registration, if it is
        still the one there."""
        fd = _fileno(fd)
        with self._fd_lock:
            watch = self._fds.get(fd)
            if watch is None or self._closed:
                return False
            slot = _EVENT_NAMES[event]
            old = getattr(watch, slot)
            if old is None or (only is not None and old is not only):
                return False
            old.active = False
            setattr(watch, slot, None)
            self._poll_for(watch, watch.mask & ~event)
            if watch.reader is None and watch.writer is None:
                self._fds.pop(fd, None)
            return True

    def _poll_for(self, watch: _FdWatch, mask: int, fresh: bool = False) -> None:
        """Make the selector poll `watch.fd` for exactly `mask` (with the fd lock held)."""
        if mask == watch.mask and not fresh:
            return
        selector = self._pollers[watch.poller].selector
        try:
            if watch.mask:
                if mask and not fresh:
                    selector.modify(watch.fd, mask, watch)
                    watch.mask = mask
                    return
                selector.unregister(watch.fd)
                watch.mask = 0
            if mask:
                selector.register(watch.fd, mask, watch)
                watch.mask = mask
        except (OSError, ValueError, KeyError) as exc:
            # The fd was closed behind our back, or is one the selector refuses (epoll: a regular
            # file). Losing interest in it needs nothing more; asking for new interest in it is
            # the program's error: raised to add_reader()'s caller (`fresh`), else (re-arming
            # after a callback) reported; and the fd is dropped, not spun on.
            asked_for_more = fresh or bool(mask & ~watch.mask)
            try:
                selector.unregister(watch.fd)
            except (KeyError, ValueError, OSError):
                pass
            watch.mask = 0
            if asked_for_more:
                self._fds.pop(watch.fd, None)
                for cb in (watch.reader, watch.writer):
                    if cb is not None:
                        cb.active = False
                if fresh:
                    raise exc
                self._report(DEFAULT_COLOR, f"selector update for fd {watch.fd}", exc, 0)

    def _dispatch_fd(self, watch: _FdWatch, events: int) -> None:
        with self._fd_lock:
            self._dispatch_fd_locked(watch, events)

    def _dispatch_fd_locked(self, watch: _FdWatch, events: int) -> None:
        for cb in (watch.reader, watch.writer):
            if cb is None or not events & cb.event:
                continue
            if cb.armed:
                cb.armed = False
                # The run's origin is cb: it is re-armed when this run returns.
                self._sched.push(cb.color, Handle(cb.fn, cb.args, cb.color, cb))
            else:
                # Its last run has not finished: stop polling this event until it re-arms, or a
                # level-triggered selector would report the fd again on every iteration.
                self._poll_for(watch, watch.mask & ~cb.event)

    def _rearm(self, cb: _FdCallback) -> None:
        """After an fd callback returned: poll its fd again (any thread)."""
        with self._fd_lock:
            if not cb.active:
                return
            cb.armed = True
            if cb.watch.mask & cb.event:
                return
            self._poll_for(cb.watch, cb.watch.mask | cb.event)
        if self._wake_on_register:
            self._sched.wake_if_idle(cb.watch.poller)

    # -- signals ------------------------------------------------------------------------------
    def add_signal_handler(self, signum: int, fn, *args, color=DEFAULT_COLOR) -> None:
        """libasync's sigcb(): fn(*args) runs as an ordinary callback after `signum` arrives."""
        self._check_open()
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("signal handlers can only be added from the main thread")
        fn, args, color = resolve(fn, args, color)
        self._install_signal(signum)
        self._signal_handlers[signum] = (fn, args, color)

    def remove_signal_handler(self, signum: int) -> bool:
        if signum not in self._signal_handlers:
            return False
        del self._signal_handlers[signum]
        if not (signum == signal.SIGINT and self._owns_sigint):
            self._restore_signal(signum)    # else Ctrl-C stays a clean stop until run() returns
        return True

    def _install_signal(self, signum: int) -> None:
        """Point Python's signal wake-up fd at the loop thread's pipe while the loop handles any
        signal, and handle `signum`. If the handler is refused (SIGKILL, a bad number), the
        wake-up fd is put back as it was: left pointing at this loop's pipe, a signal arriving
        after close() would write its byte into whatever file reused the pipe's fd number."""
        if signum in self._old_signal_handlers:
            return
        if self._old_wakeup_fd is None:
            self._old_wakeup_fd = signal.set_wakeup_fd(self._pollers[0].wake_w,
                                                       warn_on_full_buffer=False)
        try:
            self._old_signal_handlers[signum] = signal.signal(signum, self._on_signal)
        except BaseException:
            self._restore_wakeup_fd()
            raise

    def _restore_signal(self, signum: int) -> None:
        old = self._old_signal_handlers.pop(signum, None)
        if old is not None:
            signal.signal(signum, old)
        self._restore_wakeup_fd()

    def _restore_wakeup_fd(self) -> None:
        """Give the wake-up fd back to whoever had it, once this loop handles no signal."""
        if not self._old_signal_handlers and self._old_wakeup_fd is not None:
            signal.set_wakeup_fd(self._old_wakeup_fd)
            self._old_wakeup_fd = None

    def _on_signal(self, signum, frame) -> None:
        # Runs in the main thread between two bytecodes, maybe while it holds a lock: only append,
        # and wake the loop thread. The signal's own byte in the wake-up pipe may be read before
        # this runs, when the loop runs on another thread: without a byte of ours, the loop thread
        # would find nothing recorded and sleep on. (wake() takes a reentrant lock only.)
        self._signals_pending.append(signum)
        self._pollers[0].wake()

    def _deliver_signals(self) -> None:
        while self._signals_pending:
            signum = self._signals_pending.popleft()
            if signum in self._signal_handlers:
                fn, args, color = self._signal_handlers[signum]
                self.call_soon(fn, *args, color=color)
            elif signum == signal.SIGINT:
                self._interrupted = True
                self.stop()

    # -- coroutines ---------------------------------------------------------------------------
    def spawn(self, coro, color=DEFAULT_COLOR):
        """Run an `async def` coroutine; each of its steps is a callback of `color`."""
        from .coro import Task
        return Task(self, coro, color)

    def run_until_complete(self, coro, color=DEFAULT_COLOR):
        """Spawn `coro`, run the loop until it finishes, stop, and return its result (or raise)."""
        if self._loop_thread is not None:   # refused before spawning: else coro runs all the same
            raise RuntimeError("this loop is already running: spawn() the coroutine instead")
        task = self.spawn(coro, color)
        stop = lambda _: self.stop()
        task.add_done_callback(stop)
        try:
            self.run()
        finally:
            # A task this run gave up on may finish in a later run(): it must not stop that one.
            task.remove_done_callback(stop)
        if not task.done():      # another stop() ended the run first
            task.cancel()
            raise RuntimeError("the loop stopped before the coroutine finished")
        return task.result()

    # -- running and stopping -------------------------------------------------------------------
    def run(self) -> None:
        """libasync's amain(): dispatch events until stop(). Ctrl-C stops it and raises
        KeyboardInterrupt after a clean stop, unless the program handles SIGINT itself."""
        with self._run_lock:        # two threads calling run() at once: one of them runs it
            self._check_open()
            if self._loop_thread is not None:
                raise RuntimeError("this loop is already running")
            self._loop_thread = threading.current_thread()
        stop_requested, self._stopping = self._stopping, False
        self._interrupted = False
        self._sched.resume()
        if stop_requested:
            self.stop()
        own_sigint = self._owns_sigint = self._take_sigint()
        saved_affinity = self._pin_self()
        _context.enter(self, 0)
        try:
            self._start_workers()
            self._loop_main()
        finally:
            self._join_workers()
            _context.leave()
            if saved_affinity is not None:
                os.sched_setaffinity(0, saved_affinity)
            if own_sigint:
                self._owns_sigint = False
                self._restore_signal(signal.SIGINT)
            # The stop() that ended this run is spent: only one called between runs carries over
            # to the next, else every later run() would stop at once, its timers never firing.
            self._stopping = False
            self._loop_thread = None
        if self._fatal is not None:
            fatal, self._fatal = self._fatal, None
            raise fatal
        if self._interrupted:
            raise KeyboardInterrupt

    def stop(self) -> None:
        """Finish the callbacks already scheduled, then return from run().

        Callbacks scheduled before stop() run (in every color, to completion); callbacks
        scheduled after it, fd events and timers wait for the next run(). Only the first stop()
        of a run draws that line. Safe from any thread.
        """
        self._stopping = True
        self._sched.freeze()
        self._pollers[0].wake()

    def close(self) -> None:
        """Close the selectors and the wake-up pipes. The loop must not be running."""
        with self._run_lock:
            if self._closed:
                return
            if self._loop_thread is not None:
                raise RuntimeError("cannot close a running loop; stop() it first")
            self._closed = True     # a run() from now on is refused
        for signum in list(self._signal_handlers):
            self.remove_signal_handler(signum)
        for signum in list(self._old_signal_handlers):   # any other this loop took over
            self._restore_signal(signum)
        self._restore_wakeup_fd()      # the wake-up pipe closes now: never leave it to signals
        for poller in self._pollers:
            poller.close()
        self._fds.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._loop_thread is None:
            self.close()

    @property
    def is_running(self) -> bool:
        return self._loop_thread is not None

    @property
    def is_closed(self) -> bool:
        return self._closed

    def stats(self) -> dict:
        snap = self._sched.snapshot()
        snap["errors"] = self._errors
        snap["uptime_s"] = time.monotonic() - self._created
        snap["fds"] = len(self._fds)
        snap["pending"] = self._sched.pending_count()
        return snap

    # -- the loop thread -----------------------------------------------------------------------
    def _loop_main(self) -> None:
        sched, poller = self._sched, self._pollers[0]
        while True:
            finished = None
            for _ in range(_BATCH):
                nxt = sched.next(0, finished, may_sleep=False)
                finished = None
                if nxt is None:
                    break
                state, handle = nxt
                self._run_one(0, handle)
                finished = state
            if finished is not None:
                sched.finish(finished)
            if self._stopping:
                if sched.drained(0):
                    return
                continue
            # Mark ourselves idle *before* reading the timer heap: a timer added after
            # this point wakes us through the pipe, one added before it is seen below.
            if sched.try_idle(0):
                timeout = self._next_timeout()
            else:
                timeout = 0
            ready, woken = poller.select(timeout)
            sched.set_busy(0)
            for watch, events in ready:
                self._dispatch_fd(watch, events)
            if woken:
                self._deliver_signals()
            if not self._stopping:
                self._fire_due_timers()

    def _next_timeout(self):
        """Seconds until the next timer, at most a day: a timer may be any finite number of
        seconds away, and select() raises OverflowError for a timeout that far (the loop just
        wakes once a day and waits again, as asyncio does)."""
        with self._timer_lock:
            if not self._timers:
                return None
            return min(max(0.0, self._timers[0][0] - time.monotonic()), _MAX_SELECT_S)

    def _fire_due_timers(self) -> None:
        now = time.monotonic()
        due = []
        with self._timer_lock:
            while self._timers and self._timers[0][0] <= now:
                due.append(heapq.heappop(self._timers)[2])
        for timer in due:
            if timer.cancelled:
                continue
            if timer._interval is None:
                timer.enqueued_at = time.perf_counter()
                self._sched.push(timer.color, timer)
                continue
            # A tick of a repeating timer: its origin is the timer, and it is cancelled with it.
            self._sched.push(timer.color, Handle(timer.fn, timer.args, timer.color, timer))
            timer._when += timer._interval
            if timer._when <= now:
                timer._when = now + timer._interval
            with self._timer_lock:
                heapq.heappush(self._timers, (timer._when, next(self._timer_seq), timer))

    def _on_loop_thread(self) -> bool:
        return threading.current_thread() is self._loop_thread

    # -- running one callback (every worker) ---------------------------------------------------
    def _run_one(self, worker: int, handle: Handle) -> None:
        origin = handle.origin
        if handle.cancelled or (origin is not None and getattr(origin, "cancelled", False)):
            return
        color = handle.color
        ctx = _context.local
        ctx.color = color
        started = _perf_counter()
        try:
            handle.fn(*handle.args)
        except ERRORS as exc:             # also CancelledError: outside a task, a plain bug
            self._report(color, describe(handle.fn), exc, worker)
        except BaseException as exc:      # SystemExit, KeyboardInterrupt: end run() with it
            self._report(color, describe(handle.fn), exc, worker)
            self._fatal = exc
            self.stop()
        finally:
            ended = _perf_counter()
            ctx.color = None
            if origin is not None and type(origin) is _FdCallback:
                self._rearm(origin)
        busy, wait = ended - started, started - handle.enqueued_at
        stats = self._sched.stats[worker]         # only this worker writes its own stats
        stats.callbacks += 1
        stats.busy_s += busy
        stats.queue_wait_s += wait
        per_color = stats.per_color.get(color)
        if per_color is None:
            per_color = stats.color_entry(color)
        per_color[0] += 1
        per_color[1] += busy
        per_color[2] += wait

    def _report(self, color, what: str, exc: BaseException, worker: int) -> None:
        with self._errors_lock:
            self._errors += 1
        report = make_report(color, what, exc, worker)
        try:
            self.on_error(report)
        except ERRORS as handler_exc:        # a broken handler must not kill a worker
            log_report(report)
            log_report(make_report(color, f"on_error handler {describe(self.on_error)}",
                                   handler_exc, worker))
        except BaseException as fatal:       # sys.exit() in the handler: "die on any error"
            # Stop as when a callback raises it. Let through, it would unwind the worker in the
            # middle of a callback, leaving that callback's color marked running for ever.
            self._fatal = fatal
            self.stop()

    # -- worker threads ------------------------------------------------------------------------
    def _start_workers(self) -> None:
        self._threads = []
        for w in range(1, self.workers):
            t = threading.Thread(target=self._worker_main, args=(w,), name=f"colorloop-worker-{w}",
                                 daemon=True)
            self._threads.append(t)
            t.start()

    def _join_workers(self) -> None:
        if self._threads:
            self._stopping = True
            self._sched.freeze()
            for t in self._threads:
                t.join()
        self._threads = []

    def _worker_main(self, w: int) -> None:
        self._pin_thread(w)
        _context.enter(self, w)
        sched, poller = self._sched, self._pollers[w]
        finished = None
        ran = 0
        try:
            while True:
                if ran == _BATCH:       # busy for a while: look at our fds without waiting
                    ran = 0
                    for watch, events in poller.select(0)[0]:
                        self._dispatch_fd(watch, events)
                nxt = sched.next(w, finished)
                finished = None
                if nxt is None:         # idle (the scheduler marked us so): wait for fds or a wake()
                    if sched.frozen:
                        return
                    ready, _ = poller.select(None)
                    sched.set_busy(w)
                    ran = 0
                    for watch, events in ready:
                        self._dispatch_fd(watch, events)
                    continue
                state, handle = nxt
                self._run_one(w, handle)
                ran += 1
                finished = state
        finally:
            if finished is not None:
                sched.finish(finished)
            _context.leave()

    # -- CPU pinning ----------------------------------------------------------------------------
    def _pin_self(self):
        """Pin the loop thread (worker 0) to the first allowed CPU; return what to restore."""
        if not self.pin:
            return None
        saved = os.sched_getaffinity(0)
        self._allowed = sorted(saved)
        os.sched_setaffinity(0, {self._allowed[0]})
        return saved

    def _pin_thread(self, w: int) -> None:
        if self.pin:
            allowed = self._allowed
            os.sched_setaffinity(0, {allowed[w % len(allowed)]})

    def _take_sigint(self) -> bool:
        """Make Ctrl-C a clean stop, unless the program already has its own SIGINT handling."""
        if threading.current_thread() is not threading.main_thread():
            return False
        if signal.SIGINT in self._signal_handlers:
            return False
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return False
        self._install_signal(signal.SIGINT)
        return True

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the loop is closed")


def _fileno(fd) -> int:
    if isinstance(fd, int):
        if fd < 0:
            raise ValueError(f"invalid file descriptor {fd}")
        return fd
    try:
        return _fileno(fd.fileno())
    except AttributeError:
        raise TypeError(f"expected an fd or an object with fileno(), got {fd!r}") from None
