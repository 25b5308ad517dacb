"""Where one worker waits: a selector for the fds it polls, and a pipe that wakes it.

Every worker has its own. A worker with nothing to run sleeps in its poller's select(), so the
two things that give it work both end the wait: an fd it polls becomes ready, or another thread
queues a callback for it and calls `wake()`. The loop thread's poller also takes signals (its pipe
is the signal wake-up fd) and the timeout of the next timer.
"""
from __future__ import annotations

import os
import selectors
import threading


class Poller:
    def __init__(self):
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # Reentrant: a signal handler on a thread inside wake() may call wake() (via stop()).
        self._closing = threading.RLock()
        self.selector.register(self.wake_r, selectors.EVENT_READ, None)
        # epoll sees registrations made while another thread waits in it; select() and poll()
        # don't, so with them a registration must wake the poller to take effect.
        self.sees_new_registrations = isinstance(self.selector,
                                                 getattr(selectors, "EpollSelector", ()))

    def select(self, timeout: float | None) -> tuple[list, bool]:
        """([(watch, events), ...] of the ready fds, whether wake() was called): waits at most
        `timeout` seconds (None: until something happens)."""
        ready, woken = [], False
        for key, events in self.selector.select(timeout):
            if key.data is None:
                woken = True
                self._drain()
            else:
                ready.append((key.data, events))
        return ready, woken

    def wake(self) -> None:
        """End a select() in progress, or make the next one return at once. Any thread."""
        with self._closing:
            try:
                os.write(self.wake_w, b"\0")
            except (BlockingIOError, OSError):
                pass        # the pipe is full (a wake-up is pending anyway) or already closed

    def close(self) -> None:
        """Close the selector and the pipe. A wake() from another thread (say a late stop()) may
        have read the pipe's fd number just before: so the number is forgotten and the pipe
        closed under the lock wake() writes under, and a late wake() fails on fd -1 instead of
        writing its byte into whatever file the kernel has given the freed number since."""
        with self._closing:
            wake_r, wake_w = self.wake_r, self.wake_w
            self.wake_r = self.wake_w = -1
            os.close(wake_w)
        self.selector.close()
        os.close(wake_r)

    def _drain(self) -> None:
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass
