"""Fairness and starvation: a busy color, a flooding fd, a burst of timers or a cross-thread
call_soon must not keep the other events of the loop from their turns, and stop() must draw one
line between what runs now and what waits for the next run().

Real fds (socketpairs), real timers and signals; every wait is bounded only as a failure timeout:
a test that starves something fails when its watchdog stops the loop, it never waits forever.
"""
import os
import signal
import socket
import threading

import pytest

import runtime

FAIL_AFTER = 10         # seconds: only ever reached when something starves


def watchdog(loop, done, timeout=FAIL_AFTER):
    """Stop `loop` after `timeout` unless `done` is set first (the test then fails)."""
    def watch():
        if not done.wait(timeout):
            loop.stop()
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def readable_pair():
    """A socketpair whose reading end is readable already (one byte waiting)."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.sendall(b"x")
    return a, b


# -- 1. a callback that re-schedules itself for ever ------------------------------------------

@pytest.mark.parametrize("scheduler", ["hash", "steal"])
@pytest.mark.parametrize("spin_color", [0, 1])
def test_a_self_rescheduling_callback_starves_nothing(scheduler, spin_color):
    """A callback re-schedules itself with call_soon for ever, on color 0 (the loop thread) or on
    color 1 (worker 1 of two). Timers that fall due, fd readiness and signal handlers still run,
    on the spinning color itself and on others, and so do plain callbacks of color 0, of the
    other worker's color, and of a color placed on the spinner's own worker (2 shares worker 0
    with color 0, 3 shares worker 1 with color 1)."""
    other = 1 - spin_color
    neighbour = spin_color + 2          # same home worker as the spinner
    expected = set()
    seen = set()
    done = threading.Event()
    pairs = []
    spins = [0]

    def saw(what):
        seen.add(what)
        if seen == expected:
            done.set()

    with runtime.Loop(workers=2, scheduler=scheduler) as loop:
        def spin():
            spins[0] += 1
            if spins[0] == 1:                       # the signals arrive while it spins
                os.kill(os.getpid(), signal.SIGUSR1)
                os.kill(os.getpid(), signal.SIGUSR2)
            if done.is_set():
                loop.stop()
                return
            loop.call_soon(spin, color=spin_color)

        def on_fd(sock, what):
            sock.recv(1)
            loop.remove_reader(sock)
            saw(what)

        for color in (spin_color, other, neighbour):
            expected.update({("timer", color), ("fd", color), ("soon", color)})
            loop.call_later(0.02, saw, ("timer", color), color=color)
            a, b = readable_pair()
            pairs += [a, b]
            loop.add_reader(a, on_fd, a, ("fd", color), color=color)
        expected.update({("signal", spin_color), ("signal", other)})
        loop.add_signal_handler(signal.SIGUSR1, saw, ("signal", spin_color), color=spin_color)
        loop.add_signal_handler(signal.SIGUSR2, saw, ("signal", other), color=other)
        loop.call_soon(spin, color=spin_color)
        # Queued after the spinner has started, from the spinner's side of the loop and others.
        for color in (spin_color, other, neighbour):
            loop.call_later(0.01, lambda c=color: loop.call_soon(saw, ("soon", c), color=c),
                            color=other)
        watchdog(loop, done)
        loop.run()
        loop.remove_signal_handler(signal.SIGUSR1)
        loop.remove_signal_handler(signal.SIGUSR2)
    for s in pairs:
        s.close()
    assert seen == expected, f"starved: {sorted(expected - seen, key=repr)}"
    assert spins[0] > 1


# -- 2. an fd that is always readable -----------------------------------------------------------

@pytest.mark.parametrize("scheduler", ["hash", "steal"])
@pytest.mark.parametrize("flood_color", [0, 1])
def test_an_always_readable_fd_starves_no_other_fd_or_timer(scheduler, flood_color):
    """A peer floods one fd (its reader takes one byte a time, so the fd never stops being
    readable): other fds and timers, on the flooded color and on others, still get their turns."""
    other = 1 - flood_color
    flood, peer = socket.socketpair()
    flood.setblocking(False)
    peer.setblocking(False)
    try:
        while True:
            peer.send(b"f" * 65536)
    except BlockingIOError:
        pass                                        # the flood fills every buffer there is
    expected, seen, done = set(), set(), threading.Event()
    flood_reads = [0]
    pairs = [flood, peer]

    def saw(what):
        seen.add(what)
        if seen == expected:
            done.set()

    with runtime.Loop(workers=2, scheduler=scheduler) as loop:
        def on_flood():
            flood.recv(1)
            flood_reads[0] += 1
            if done.is_set():
                loop.remove_reader(flood)
                loop.stop()

        def on_fd(sock, what):
            sock.recv(1)
            loop.remove_reader(sock)
            saw(what)

        loop.add_reader(flood, on_flood, color=flood_color)
        for color in (flood_color, other, flood_color + 2):
            expected.update({("timer", color), ("fd", color)})
            loop.call_later(0.02, saw, ("timer", color), color=color)
            # These fds become readable only once the flood is being served.
            a, b = socket.socketpair()
            a.setblocking(False)
            pairs += [a, b]
            loop.add_reader(a, on_fd, a, ("fd", color), color=color)
            loop.call_later(0.01, b.sendall, b"x", color=other)
        watchdog(loop, done)
        loop.run()
    for s in pairs:
        s.close()
    assert seen == expected, f"starved: {sorted(expected - seen, key=repr)}"
    assert flood_reads[0] > 1


# -- 3. a burst of due timers, and a timer re-armed with delay 0 -------------------------------

def test_thousands_of_due_timers_let_other_colors_fds_run_between_them():
    """5000 color-0 timers fall due at once. An fd of a color that shares the loop thread with
    them (2 of 2 workers), made readable by the first timer, is served after a bounded streak of
    them, not after all 5000. (An fd of color 0 itself would wait behind them: within a color
    callbacks run in the order queued, and the timers were queued first, as in asyncio.)"""
    n = 5000
    order, done = [], threading.Event()
    a, b = socket.socketpair()
    a.setblocking(False)
    with runtime.Loop(workers=2) as loop:
        def tick(i):
            if i == 0:
                b.sendall(b"x")
            order.append(i)
            if i == n - 1:
                done.set()
                loop.stop()

        def on_fd():
            a.recv(1)
            loop.remove_reader(a)
            order.append("fd")

        loop.add_reader(a, on_fd, color=2)
        when = 0.1                  # all 5000 are armed before the first falls due
        for i in range(n):
            loop.call_later(when, tick, i)
        watchdog(loop, done)
        loop.run()
    a.close()
    b.close()
    assert [x for x in order if x != "fd"] == list(range(n))      # deadline order, ties FIFO
    assert "fd" in order and order.index("fd") < n // 2


@pytest.mark.parametrize("color", [0, 1])
def test_a_timer_rearmed_with_delay_zero_starves_no_fd(color):
    """A timer whose callback arms itself again with delay 0 for ever: an fd of its own color and
    one of another color are still served."""
    expected = {("fd", color), ("fd", 1 - color)}
    seen, done, runs = set(), threading.Event(), [0]
    pairs = []
    with runtime.Loop(workers=2) as loop:
        def again():
            runs[0] += 1
            if runs[0] == 1:
                for _, b in pairs:
                    b.sendall(b"x")
            if done.is_set():
                loop.stop()
                return
            loop.call_later(0, again, color=color)

        def on_fd(sock, what):
            sock.recv(1)
            loop.remove_reader(sock)
            seen.add(what)
            if seen == expected:
                done.set()

        for c in (color, 1 - color):
            a, b = socket.socketpair()
            a.setblocking(False)
            pairs.append((a, b))
            loop.add_reader(a, on_fd, a, ("fd", c), color=c)
        loop.call_later(0, again, color=color)
        watchdog(loop, done)
        loop.run()
    for a, b in pairs:
        a.close()
        b.close()
    assert seen == expected
    assert runs[0] > 1


# -- 4. waking a sleeping loop thread from another thread --------------------------------------

def test_a_cross_thread_call_soon_wakes_the_sleeping_loop_thread_at_once():
    """The loop thread sleeps with an hour-long timer pending; a call_soon onto color 0 from a
    worker (and from a plain thread) must wake it, not wait for that timer."""
    rounds = 200
    done, lost = threading.Event(), []
    with runtime.Loop(workers=2) as loop:
        loop.call_later(3600, lambda: None)           # the loop thread's timeout is an hour

        def from_worker():
            for i in range(rounds):
                ran = threading.Event()
                loop.call_soon(ran.set, color=0)
                if not ran.wait(FAIL_AFTER):
                    lost.append(("worker", i))
                    break
            plain = threading.Thread(target=from_plain_thread)
            plain.start()

        def from_plain_thread():
            for i in range(rounds):
                ran = threading.Event()
                loop.call_soon(ran.set)
                if not ran.wait(FAIL_AFTER):
                    lost.append(("thread", i))
                    break
            done.set()
            loop.stop()

        loop.call_soon(from_worker, color=1)
        watchdog(loop, done, timeout=3 * FAIL_AFTER)
        loop.run()
    assert lost == [] and done.is_set()


@pytest.mark.parametrize("workers", [1, 2])
def test_no_cross_thread_call_soon_is_lost_racing_the_loop_going_to_sleep(workers):
    """Ping-pong between the loop thread (color 0) and another thread, many times: each hand-over
    races the loop thread going to sleep (nothing else is pending, so it sleeps without a
    timeout). A lost wake-up would hang it for ever; every callback must run."""
    n = 5000
    ran = {"loop": 0, "other": 0}
    done = threading.Event()
    with runtime.Loop(workers=workers) as loop:
        if workers == 2:                      # the other side is worker 1, color 1
            def on_loop(i):
                ran["loop"] += 1
                if i == n:
                    done.set()
                    loop.stop()
                    return
                loop.call_soon(on_other, i + 1, color=1)

            def on_other(i):
                ran["other"] += 1
                loop.call_soon(on_loop, i, color=0)
            loop.call_soon(on_other, 1, color=1)
        else:                                 # the other side is a plain thread
            def on_loop(i, reply):
                ran["loop"] += 1
                reply.set()

            def pinger():
                for i in range(1, n + 1):
                    reply = threading.Event()
                    ran["other"] += 1
                    loop.call_soon(on_loop, i, reply)
                    if not reply.wait(FAIL_AFTER):
                        break
                done.set()
                loop.stop()
            threading.Thread(target=pinger, daemon=True).start()
        watchdog(loop, done, timeout=6 * FAIL_AFTER)
        loop.run()
    assert ran == {"loop": n, "other": n}


# -- 5. stop() with long queues ------------------------------------------------------------------

@pytest.mark.parametrize("scheduler", ["hash", "steal"])
def test_stop_with_long_queues_runs_what_came_before_and_resumes_the_rest_in_order(scheduler):
    """stop() while colors 0 and 1 each have 3000 callbacks queued, each of which schedules a
    follow-up (after stop(), then): all 6000 queued before stop() run, none of the follow-ups
    does, nothing is dropped, and the next run() runs the follow-ups, in order."""
    n = 3000
    ran = {0: [], 1: []}
    stopped = threading.Event()
    with runtime.Loop(workers=2, scheduler=scheduler) as loop:
        def step(color, i):
            ran[color].append(i)
            if i < n:
                loop.call_soon(step, color, i + n, color=color)

        def stopper():
            loop.call_soon(stopped.wait, FAIL_AFTER, color=1)   # color 1 starts after stop()
            for i in range(n):
                loop.call_soon(step, 0, i, color=0)
                loop.call_soon(step, 1, i, color=1)
            loop.stop()
            stopped.set()

        loop.call_soon(stopper)
        loop.run()
        first_run = {c: list(v) for c, v in ran.items()}
        pending = loop.stats()["pending"]
        loop.call_soon(loop.stop)           # queued after every follow-up
        loop.run()
    assert first_run == {0: list(range(n)), 1: list(range(n))}
    assert pending == 2 * n
    assert ran == {0: list(range(2 * n)), 1: list(range(2 * n))}


def test_callbacks_scheduled_after_stop_wait_even_when_the_loop_thread_finishes_first():
    """The loop thread drains its own queue and starts joining the workers while worker 1 still
    runs a callback queued before stop(); what that callback schedules after stop() must wait
    for the next run() all the same (the join once moved the stop line to the join's moment)."""
    ran = []
    joining = threading.Event()
    with runtime.Loop(workers=2) as loop:
        real_freeze = loop._sched.freeze

        def freeze():                 # stop() calls it, and so does the join of the workers
            real_freeze()
            if threading.current_thread() is threading.main_thread():
                joining.set()         # the loop thread has drained color 0 and is joining us
        loop._sched.freeze = freeze

        pushed = threading.Event()

        def long_callback():
            loop.stop()
            loop.call_soon(ran.append, "after stop", color=1)
            pushed.set()
            assert joining.wait(FAIL_AFTER)
            ran.append("before stop")

        loop.call_soon(pushed.wait, FAIL_AFTER)     # holds the loop thread until then
        loop.call_soon(long_callback, color=1)
        loop.run()
        first_run = list(ran)
        loop.call_soon(loop.stop, color=1)
        loop.run()
    assert first_run == ["before stop"]
    assert ran == ["before stop", "after stop"]


def test_a_second_stop_does_not_move_the_line_drawn_by_the_first():
    """Two callbacks queued together both call stop(): the first draws the line, and what the
    first schedules after its stop() waits for the next run(), second stop() or not."""
    ran = []
    with runtime.Loop(workers=1) as loop:
        def first():
            loop.stop()
            loop.call_soon(ran.append, "after the first stop")

        def second():
            ran.append("second")
            loop.stop()

        loop.call_soon(first)
        loop.call_soon(second)
        loop.run()
        first_run = list(ran)
        loop.stop()
        loop.run()
    assert first_run == ["second"]
    assert ran == ["second", "after the first stop"]


@pytest.mark.parametrize("spin_color", [0, 1])
def test_stop_ends_a_run_despite_a_self_rescheduling_callback_which_resumes_next_run(spin_color):
    """A callback that re-schedules itself for ever does not keep run() from returning after
    stop(); its next step waits, and runs first in the next run()."""
    steps = []
    with runtime.Loop(workers=2) as loop:
        def spin(i):
            steps.append(i)
            if i == 100:
                loop.stop()
            loop.call_soon(spin, i + 1, color=spin_color)

        loop.call_soon(spin, 0, color=spin_color)
        loop.run()
        first_run = list(steps)
        loop.call_later(0.05, loop.stop)
        loop.run()
    assert first_run == list(range(101))
    assert steps[:150] == list(range(150)) and steps == list(range(len(steps)))


def test_a_signal_reaches_a_loop_running_on_another_thread_whose_wakeup_came_first():
    """The loop may run() on a thread other than the main one, where Python runs signal handlers.
    A signal's wake-up byte reaches the loop thread's poller at once, but the Python handler that
    records which signal came runs later, whenever the main thread gets to it: the loop thread
    may by then have read the byte, found no signal recorded, and gone back to sleep. Here the
    installed handler is called with no byte written at all (the byte already consumed): the
    signal's callback must still run, without waiting for some other event to wake the loop."""
    got, done = [], threading.Event()
    with runtime.Loop(workers=1) as loop:
        loop.add_signal_handler(signal.SIGUSR1, lambda: (got.append("usr1"), done.set()))
        loop.call_later(3600, lambda: None)         # the loop thread sleeps for an hour
        running = threading.Event()
        loop.call_soon(running.set)
        thread = threading.Thread(target=loop.run)
        thread.start()
        try:
            assert running.wait(FAIL_AFTER)
            handler = signal.getsignal(signal.SIGUSR1)   # what Python calls on the main thread
            handler(signal.SIGUSR1, None)
            assert done.wait(FAIL_AFTER), "the signal waited for an unrelated wake-up"
        finally:
            loop.stop()
            thread.join(FAIL_AFTER)
        loop.remove_signal_handler(signal.SIGUSR1)
    assert got == ["usr1"]
