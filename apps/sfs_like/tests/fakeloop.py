"""A single-threaded stand-in for `runtime.Loop` that a test drives by hand, with a fake clock.

It offers the part of the loop's public API the server uses. Nothing runs until the test says so:
`run_ready()` runs queued callbacks in FIFO order (colors are recorded, not used), `poll()` runs
the callbacks of fds that are ready now, `advance(dt)` moves the clock and fires due timers. So a
test can put the server in an exact state (a frame half arrived, a reply queued, a timer due)
without sleeping and without racing worker threads.
"""
from __future__ import annotations

import select
from collections import deque


def _fd(fd) -> int:
    return fd if isinstance(fd, int) else fd.fileno()


class FakeHandle:
    def __init__(self, when, interval, fn, args) -> None:
        self.when, self.interval, self.fn, self.args = when, interval, fn, args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.ready: deque = deque()
        self.readers: dict[int, tuple] = {}
        self.writers: dict[int, tuple] = {}
        self.timers: list[FakeHandle] = []

    # ---- the API the server uses
    def time(self) -> float:
        return self.now

    def clock(self) -> float:            # pass as Server(clock=loop.clock)
        return self.now

    def call_soon(self, fn, *args, color=0):
        self.ready.append((fn, args))

    def call_later(self, delay, fn, *args, color=0):
        h = FakeHandle(self.now + delay, None, fn, args)
        self.timers.append(h)
        return h

    def call_every(self, interval, fn, *args, color=0):
        h = FakeHandle(self.now + interval, interval, fn, args)
        self.timers.append(h)
        return h

    def add_reader(self, fd, fn, *args, color=0) -> None:
        self.readers[_fd(fd)] = (fn, args)

    def remove_reader(self, fd) -> bool:
        return self.readers.pop(_fd(fd), None) is not None

    def add_writer(self, fd, fn, *args, color=0) -> None:
        self.writers[_fd(fd)] = (fn, args)

    def remove_writer(self, fd) -> bool:
        return self.writers.pop(_fd(fd), None) is not None

    def stats(self) -> dict:
        return {"workers": [], "colors": {}, "callbacks": 0, "steals": 0, "errors": 0}

    # ---- driving it
    def run_ready(self) -> int:
        n = 0
        while self.ready:
            fn, args = self.ready.popleft()
            fn(*args)
            n += 1
        return n

    def poll(self) -> int:
        """Run (once) the callback of every watched fd that is ready now, then the queued callbacks."""
        rfds, wfds = list(self.readers), list(self.writers)
        r, w, _ = select.select(rfds, wfds, [], 0) if rfds or wfds else ([], [], [])
        n = 0
        for fd in r:
            if fd in self.readers:
                fn, args = self.readers[fd]
                fn(*args)
                n += 1
        for fd in w:
            if fd in self.writers:
                fn, args = self.writers[fd]
                fn(*args)
                n += 1
        return n + self.run_ready()

    def advance(self, dt: float) -> None:
        """Move the clock on and fire every timer now due (repeating ones once), in deadline order."""
        self.now += dt
        for h in sorted(self.timers, key=lambda h: h.when):
            if h.cancelled or h.when > self.now:
                continue
            if h.interval is None:
                self.timers.remove(h)
            else:
                h.when = self.now + h.interval
            h.fn(*h.args)
        self.run_ready()
