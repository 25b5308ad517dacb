"""The run queue: which worker runs which color's callbacks, and when.

Every color has at most one *owner* worker at a time and a FIFO of pending callbacks. A worker's
ready queue holds colors (not callbacks) that have work and are not running. A worker takes a color
from its queue, runs the color's oldest callbacks, up to STREAK of them in a row while other colors
wait, and puts the color back at the end of the queue if it still has work. (Running a few in a
row keeps one layer's callbacks together, with warm caches, as a single-threaded loop's FIFO
does: it made the colored SFS server's file layer 40% cheaper per READ.) Two rules follow, and
they are the whole of the paper's guarantee:

* a color is never in two places at once: it is either running (on exactly one worker), or in
  exactly one ready queue, or idle; so two callbacks of one color never overlap;
* a color's callbacks leave its FIFO in the order they entered it, whichever worker runs them.

Placement (libasync-smp): a color with no state hashes to a home worker (`stable_hash(color) %
workers`: an int is its own hash), so the default color 0 always lives on worker 0, the event-loop
thread, and a color's home is the same in every run of the program. With work stealing, an
idle worker takes one whole color out of another worker's ready queue and becomes its owner; a
color that is running is never stolen, so stealing cannot break either rule. The default color
is never stolen either: an unchanged program, all of it on color 0, must run on the loop thread
exactly as in a single-threaded loop (signal handlers, thread-local state, `main_thread()`
checks), whichever scheduler is chosen.

One lock guards all of it. Under the GIL a finer scheme buys nothing, and on the free-threaded
build a callback worth running in parallel is much longer than the few dictionary and deque
operations done under this lock.
"""
from __future__ import annotations

import itertools
import threading
import time
import zlib
from collections import deque

from .callbacks import DEFAULT_COLOR
from .errors import logger

HASH = "hash"
STEAL = "steal"
POLICIES = (HASH, STEAL)

_NO_LIMIT = float("inf")
STREAK = 16         # callbacks a color may run in a row while other colors wait on the same worker


def stable_hash(color) -> int:
    """hash(color), except that str and bytes (also inside tuples) hash the same in every process.

    Python randomises hash() of str and bytes per process (PYTHONHASHSEED), so with hash() which
    string colors share a worker, the loop thread among them, changed from run to run, and so did
    whether a long callback stalled the loop thread's timers. An int is its own hash (color k goes
    to worker k % workers). Other types keep hash(): stable for numbers, not for objects hashed by
    id. Called when an idle color gets work, so it stays cheap: a CRC of a short string.
    """
    kind = type(color)
    if kind is int:
        return color
    if kind is str:
        return zlib.crc32(color.encode("utf-8", "surrogatepass"))
    if kind is bytes:
        return zlib.crc32(color)
    if kind is tuple:
        h = 0x345678
        for item in color:
            h = (h * 1000003 + stable_hash(item)) & 0xFFFFFFFFFFFF
        return h
    return hash(color)


class ColorState:
    """One color's FIFO and its place: owner, running, or sitting in the owner's ready queue.

    `stealable` is False only for the default color, which never leaves the loop thread.
    """

    __slots__ = ("color", "pending", "owner", "running", "queued", "stealable")

    def __init__(self, color, owner: int):
        self.color = color
        self.pending: deque = deque()
        self.owner = owner
        self.running = False
        self.queued = False
        self.stealable = owner != 0 or color != DEFAULT_COLOR


# Colors a worker keeps its own stats for; the ones it runs after those share one entry. A server
# with a color per connection meets a new color with every client: unbounded, those entries
# (about 250 bytes each) would grow with every connection it ever served.
PER_COLOR_STATS_LIMIT = 4096


class _OtherColors:
    """The stats key of the colors past PER_COLOR_STATS_LIMIT (runtime.OTHER_COLORS)."""

    def __repr__(self) -> str:
        return "<other colors>"


OTHER_COLORS = _OtherColors()


class WorkerStats:
    """Counters a worker updates without the scheduler lock (Loop._run_one): only it writes them."""

    __slots__ = ("callbacks", "busy_s", "queue_wait_s", "steals", "per_color")

    def __init__(self):
        self.callbacks = 0
        self.busy_s = 0.0
        self.queue_wait_s = 0.0
        self.steals = 0
        self.per_color: dict = {}

    def color_entry(self, color) -> list:
        """[callbacks, busy_s, queue_wait_s] for a color this worker has no entry for: a new one,
        or, past the limit, the one all later colors share (only then is this called for every
        callback of such a color; a kept color's callbacks never come here again)."""
        if len(self.per_color) >= PER_COLOR_STATS_LIMIT:
            color = OTHER_COLORS
            entry = self.per_color.get(color)
            if entry is not None:
                return entry
        entry = self.per_color[color] = [0, 0.0, 0.0]
        return entry


class Scheduler:
    """Colored run queues for `workers` workers; worker 0 is the event-loop thread."""

    def __init__(self, workers: int, policy: str = HASH):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if policy not in POLICIES:
            raise ValueError(f"scheduler must be one of {POLICIES}, got {policy!r}")
        self.workers = workers
        self.policy = policy
        self.stats = [WorkerStats() for _ in range(workers)]
        self._lock = threading.Lock()
        self._colors: dict = {}
        self._ready = [deque() for _ in range(workers)]
        self._idle = [False] * workers
        self._streak = [0] * workers     # callbacks the running color has run in a row
        self._wakers = [None] * workers
        self._seq = itertools.count()
        self._limit = _NO_LIMIT          # callbacks with a later sequence number wait for resume()
        self._parked: list[ColorState] = []

    # -- placement ----------------------------------------------------------------------------
    def home(self, color) -> int:
        return stable_hash(color) % self.workers

    def set_waker(self, worker: int, wake) -> None:
        """`wake()` must make worker `worker` return from its idle wait soon."""
        self._wakers[worker] = wake

    # -- producers (any thread) -----------------------------------------------------------------
    def push(self, color, handle) -> None:
        """Append a callback to its color's FIFO; wake the worker that will run it if it sleeps."""
        wake = None
        with self._lock:
            handle._seq = next(self._seq)
            try:
                state = self._colors.get(color)
            except TypeError:
                raise TypeError(f"a color must be hashable, got {color!r}") from None
            if state is None:
                state = self._colors[color] = ColorState(color, self.home(color))
            state.pending.append(handle)
            if not (state.running or state.queued):
                if handle._seq > self._limit:
                    if len(state.pending) == 1:
                        self._parked.append(state)
                    return
                state.queued = True
                owner = state.owner
                self._ready[owner].append(state)
                if self._idle[owner]:
                    self._idle[owner] = False
                    wake = owner
                elif self.policy == STEAL and state.stealable:
                    wake = self._claim_idle_thief(owner)
        if wake is not None:
            self._wakers[wake]()

    def _claim_idle_thief(self, busy_owner: int):
        for w in range(self.workers):
            if w != busy_owner and self._idle[w]:
                self._idle[w] = False
                return w
        return None

    # -- consumers (worker w only) --------------------------------------------------------------
    def next(self, w: int, finished: ColorState | None = None, *, may_sleep: bool = True):
        """Finish `finished` (if any) and return (state, handle) to run next, or None.

        When nothing is runnable and `may_sleep`, the worker is marked idle, so that the next push
        for it calls its waker; the caller must then wait and call `next` again.
        """
        with self._lock:
            if finished is not None:
                pending = finished.pending
                if (pending and pending[0]._seq <= self._limit
                        and (not self._ready[w] or self._streak[w] < STREAK)):
                    # The color just run keeps running, up to STREAK callbacks in a row while
                    # others wait: its callbacks then run back to back with warm caches, as one
                    # layer's queued callbacks do in a single-threaded loop's FIFO, and skip a
                    # trip through the ready queue. Order within the color cannot change.
                    self._streak[w] += 1
                    return finished, pending.popleft()
                self._finish(finished)
            self._streak[w] = 0
            state = self._take(w)
            if state is None:
                if may_sleep:
                    self._idle[w] = True
                return None
            state.running = True
            return state, state.pending.popleft()

    def finish(self, state: ColorState) -> None:
        with self._lock:
            self._finish(state)

    def try_idle(self, w: int) -> bool:
        """Mark worker w idle unless it has runnable work.

        Checked under the lock, so a producer either sees the idle mark (and wakes w) or its work
        is seen here.
        """
        with self._lock:
            if self._runnable(w):
                return False
            self._idle[w] = True
            return True

    def _runnable(self, w: int) -> bool:
        if any(s.pending[0]._seq <= self._limit for s in self._ready[w]):
            return True
        if self.policy == STEAL:
            return any(self._has_stealable(v) for v in range(self.workers) if v != w)
        return False

    def _has_stealable(self, v: int) -> bool:
        # Only one color is not stealable, so of two queued colors at least one is.
        ready = self._ready[v]
        return len(ready) > 1 or (len(ready) == 1 and ready[0].stealable)

    @property
    def frozen(self) -> bool:
        return self._limit != _NO_LIMIT

    def _finish(self, state: ColorState) -> None:
        state.running = False
        if not state.pending:
            self._forget(state)
        elif state.pending[0]._seq > self._limit:
            self._parked.append(state)
        else:
            state.queued = True
            self._ready[state.owner].append(state)

    def _forget(self, state: ColorState) -> None:
        """Drop an idle color's state, so that it hashes home again next time.

        The entry is found by the color's hash now, and a mutable color may have changed it
        since it got work (its callbacks still ran in order, under the state found then). A
        KeyError here would kill the worker, and every color placed on it would wait for ever; so
        such a state is dropped by identity instead, and the misuse is logged."""
        try:
            del self._colors[state.color]
            return
        except Exception:
            pass
        logger.error("color %r is no longer found by its hash: it changed while its callbacks were "
                     "queued? A color must be immutable, or its callbacks lose their order and "
                     "mutual exclusion", state.color)
        try:
            self._colors = {color: s for color, s in self._colors.items() if s is not state}
        except Exception:
            pass        # another broken color: leave both states, as the worker must live on

    def _take(self, w: int):
        ready = self._ready[w]
        while ready:
            state = ready.popleft()
            state.queued = False
            if state.pending[0]._seq > self._limit:
                self._parked.append(state)
                continue
            return state
        if self.policy == STEAL:
            return self._steal(w)
        return None

    def _steal(self, thief: int):
        """Take the oldest stealable color of the most loaded other worker, and own it from now on.

        The default color, if it waits at the head of the loop thread's queue, is passed over.
        """
        victim = max((v for v in range(self.workers) if v != thief and self._has_stealable(v)),
                     key=lambda v: len(self._ready[v]), default=None)
        if victim is None:
            return None
        ready = self._ready[victim]
        state = ready[0] if ready[0].stealable else ready[1]
        ready.remove(state)
        state.queued = False
        if state.pending[0]._seq > self._limit:
            self._parked.append(state)
            return None
        state.owner = thief
        self.stats[thief].steals += 1
        return state

    def wake_if_idle(self, w: int) -> None:
        """Wake worker w if it is idle (used to hand the loop thread a chore)."""
        with self._lock:
            if not self._idle[w]:
                return
            self._idle[w] = False
        self._wakers[w]()

    def set_busy(self, w: int) -> None:
        with self._lock:
            self._idle[w] = False

    # -- stopping and resuming ------------------------------------------------------------------
    def freeze(self) -> None:
        """Let what is queued now run; what is pushed from now on waits for `resume()`.

        Only the first freeze since `resume()` draws that line: a second stop(), or the loop
        thread's own freeze when it joins the workers, must not let through what was pushed after
        the first (a worker still draining would run it)."""
        with self._lock:
            if self._limit == _NO_LIMIT:
                self._limit = next(self._seq)
            sleeping = [w for w in range(self.workers) if self._idle[w]]
            for w in sleeping:
                self._idle[w] = False
        for w in sleeping:
            self._wakers[w]()

    def drained(self, w: int) -> bool:
        """True when worker w has nothing left to run before the freeze point."""
        with self._lock:
            return not any(s.pending[0]._seq <= self._limit for s in self._ready[w])

    def resume(self) -> None:
        with self._lock:
            self._limit = _NO_LIMIT
            for state in self._parked:
                if state.pending and not (state.running or state.queued):
                    state.queued = True
                    self._ready[state.owner].append(state)
            self._parked.clear()

    def pending_count(self) -> int:
        with self._lock:
            return sum(len(s.pending) for s in self._colors.values())

    # -- stats ------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        workers, colors = [], {}
        for i, st in enumerate(self.stats):
            workers.append({"id": i, "callbacks": st.callbacks, "busy_s": st.busy_s,
                            "queue_wait_s": st.queue_wait_s, "steals": st.steals})
            for color, (n, busy, wait) in _copy_items(st.per_color):
                agg = colors.setdefault(color, {"callbacks": 0, "busy_s": 0.0, "queue_wait_s": 0.0})
                agg["callbacks"] += n
                agg["busy_s"] += busy
                agg["queue_wait_s"] += wait
        return {"workers": workers, "colors": colors,
                "callbacks": sum(w["callbacks"] for w in workers),
                "steals": sum(w["steals"] for w in workers),
                "scheduler": self.policy}


def _copy_items(d: dict) -> list:
    """A copy of a dict another thread may be growing; retried, never blocking that thread."""
    while True:
        try:
            return [(k, tuple(v)) for k, v in list(d.items())]
        except RuntimeError:
            time.sleep(0)
