"""Behaviour of the loop: parallelism, default-color equivalence, timers, fds, signals, failures."""
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

import runtime


def run_until(loop, event, timeout=10):
    """Run `loop` until `event` is set by some callback (or fail after `timeout`)."""
    threading.Thread(target=lambda: (event.wait(timeout), loop.stop()), daemon=True).start()
    loop.run()
    assert event.is_set(), "the loop stopped before the awaited event"


@pytest.mark.parametrize("scheduler", ["hash", "steal"])
def test_different_colors_run_in_parallel(scheduler):
    """Two colors must meet at a barrier: this cannot pass if colors were serialised.

    Colors 0 and 1 hash to different workers of two, so even plain hash placement runs them at
    once (two string colors may share a home worker, and then only stealing separates them).
    """
    barrier = threading.Barrier(2, timeout=5)
    met, done = [], threading.Event()

    def meet(name):
        barrier.wait()
        met.append(name)
        if len(met) == 2:
            done.set()

    with runtime.Loop(workers=2, scheduler=scheduler) as loop:
        loop.call_soon(meet, "a", color=0)
        loop.call_soon(meet, "b", color=1)
        run_until(loop, done)
    assert sorted(met) == ["a", "b"]


def test_stealing_separates_colors_that_share_a_home_worker():
    """Colors 1 and 3 both hash to worker 1 of two; only a steal lets them meet."""
    barrier = threading.Barrier(2, timeout=5)
    met, done = [], threading.Event()

    def meet(name):
        barrier.wait()
        met.append(name)
        if len(met) == 2:
            done.set()

    with runtime.Loop(workers=2, scheduler="steal") as loop:
        loop.call_soon(meet, "a", color=1)
        loop.call_soon(meet, "b", color=3)
        run_until(loop, done)
        assert loop.stats()["steals"] >= 1
    assert sorted(met) == ["a", "b"]


@pytest.mark.parametrize("scheduler", ["hash", "steal"])
def test_same_color_never_meets_itself(scheduler):
    """Two callbacks of one color at a barrier: the second can only start after the first left."""
    barrier = threading.Barrier(2, timeout=0.3)
    outcomes, done = [], threading.Event()

    def try_meet():
        try:
            barrier.wait()
            outcomes.append("met")
        except threading.BrokenBarrierError:
            outcomes.append("alone")
        if len(outcomes) == 2:
            done.set()

    with runtime.Loop(workers=4, scheduler=scheduler) as loop:
        loop.call_soon(try_meet, color=9)
        loop.call_soon(try_meet, color=9)
        run_until(loop, done)
    assert outcomes == ["alone", "alone"]


def program_trace(workers):
    """An unmodified (all default color) program: a chain of callbacks, timers and fd events."""
    trace = []
    a, b = socket.socketpair()
    loop = runtime.Loop(workers=workers)

    def on_readable():
        data = a.recv(100)
        trace.append(("read", data, threading.current_thread() is threading.main_thread()))
        if data == b"3":
            loop.remove_reader(a)
            # Timers set from one callback fire in deadline order however late they run, so the
            # trace does not depend on how busy the machine is (set before the fd chain, a
            # timer's place among its steps would).
            loop.call_later(0.02, finish)
            loop.call_later(0.01, trace.append, ("timer", 1))
        else:
            loop.call_soon(send_next, int(data) + 1)

    def send_next(i):
        trace.append(("send", i))
        b.send(str(i).encode())

    def finish():
        trace.append(("timer", 2))
        trace.append(("finish",))
        loop.stop()

    for i in range(5):
        loop.call_soon(trace.append, ("soon", i))
    loop.add_reader(a, on_readable)
    loop.call_soon(send_next, 1)
    loop.run()
    stats = loop.stats()
    loop.close()
    a.close()
    b.close()
    return trace, stats


def test_default_color_program_behaves_as_single_threaded():
    trace1, _ = program_trace(workers=1)
    trace4, stats4 = program_trace(workers=4)
    assert trace4 == trace1
    assert trace1[-3:] == [("timer", 1), ("timer", 2), ("finish",)]
    assert [e for e in trace1 if e[0] == "read"] == [
        ("read", b"1", True), ("read", b"2", True), ("read", b"3", True)]
    # Every callback ran on worker 0, the loop's own thread; the other workers got nothing.
    assert all(w["callbacks"] == 0 for w in stats4["workers"][1:])
    assert stats4["workers"][0]["callbacks"] > 0


@pytest.mark.parametrize("scheduler", ["hash", "steal"])
def test_default_color_stays_on_the_loop_thread_under_either_scheduler(scheduler):
    """An unchanged program (four chains of color-0 callbacks) with idle workers around: stealing
    may move other colors, never color 0, so every step runs on the loop thread, in FIFO order,
    and what only the main thread may do (here: add a signal handler) works from any of them."""
    chains, steps = 4, 500
    trace, refused = [], []

    with runtime.Loop(workers=2, scheduler=scheduler) as loop:
        def step(chain, i):
            trace.append((chain, i, threading.current_thread().name))
            if i == steps // 2:
                try:
                    loop.add_signal_handler(signal.SIGUSR1, print)
                    loop.remove_signal_handler(signal.SIGUSR1)
                except RuntimeError as exc:
                    refused.append(exc)
            if i + 1 < steps:
                loop.call_soon(step, chain, i + 1)
            elif chain == chains - 1:
                loop.stop()

        for chain in range(chains):
            loop.call_soon(step, chain, 0)
        loop.run()
        stats = loop.stats()
    main = threading.main_thread().name
    assert refused == []
    assert trace == [(c, i, main) for i in range(steps) for c in range(chains)]
    assert stats["steals"] == 0
    assert all(w["callbacks"] == 0 for w in stats["workers"][1:])


def test_stealing_passes_over_the_default_color_and_takes_the_next():
    """The loop thread is busy in color 2's callback while colors 0 and 4 (both at home on it)
    wait in its queue, 0 first: the idle worker must take color 4, which releases color 2, and
    leave color 0 to the loop thread. (Worker 1 is kept busy on its own color 1 until the queue
    is set up, so that neither worker can take the other's first callback.)"""
    main = threading.main_thread().name
    set_up, released, ran = threading.Event(), threading.Event(), {}

    def gate():
        ran[1] = threading.current_thread().name
        assert set_up.wait(5)

    def hold():
        ran[2] = threading.current_thread().name
        loop.call_soon(record, 0)
        loop.call_soon(record, 4, color=4)
        set_up.set()
        released.wait(5)
        loop.stop()

    def record(color):
        ran[color] = threading.current_thread().name
        if color == 4:
            released.set()

    with runtime.Loop(workers=2, scheduler="steal") as loop:
        loop.call_soon(gate, color=1)
        loop.call_soon(hold, color=2)
        loop.run()
        steals = loop.stats()["steals"]
    assert ran == {1: "colorloop-worker-1", 2: main, 0: main, 4: "colorloop-worker-1"}
    assert steals == 1


def test_string_colors_land_on_the_same_workers_whatever_the_hash_seed():
    """Python randomises hash() of str and bytes per process; a color's worker must not follow it,
    or whether a long callback shares the loop thread with the timers changes from run to run."""
    program = textwrap.dedent("""
        import json, threading, runtime
        colors = ["alpha", "beta", "gamma", "delta", "conn-1", "conn-2", b"raw", ("conn", "x"),
                  ("conn", 7), 0, 1, 6]
        ran = {}
        with runtime.Loop(workers=4, scheduler="hash") as loop:
            for c in colors:
                loop.call_soon(lambda c=c: ran.setdefault(repr(c), threading.current_thread().name),
                               color=c)
            loop.call_soon(loop.stop)
            loop.run()
        print(json.dumps(sorted(ran.items())))
    """)
    placements = []
    for seed in ("1", "2", "3"):
        out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                             timeout=30, cwd=os.path.dirname(os.path.dirname(runtime.__file__)),
                             env={**os.environ, "PYTHONHASHSEED": seed})
        assert out.returncode == 0, out.stderr
        placements.append(out.stdout)
    assert placements[0] == placements[1] == placements[2]
    ran = dict(json.loads(placements[0]))
    assert ran["0"] == "MainThread" and ran["1"] == "colorloop-worker-1"
    assert ran["6"] == "colorloop-worker-2"               # an int color k goes to worker k % 4
    assert len(set(ran.values())) > 1


def test_timers_fire_in_deadline_order_and_cancel_works():
    fired, done = [], threading.Event()
    with runtime.Loop(workers=2) as loop:
        for delay in (0.05, 0.01, 0.03, 0.02, 0.04):
            loop.call_later(delay, fired.append, delay)
        cancelled = loop.call_later(0.015, fired.append, "cancelled")
        cancelled.cancel()
        loop.call_later(0.06, done.set)
        run_until(loop, done)
    assert fired == [0.01, 0.02, 0.03, 0.04, 0.05]


def test_repeating_timer_until_cancelled():
    ticks, done = [], threading.Event()
    with runtime.Loop(workers=1) as loop:
        def tick():
            ticks.append(loop.time())
            if len(ticks) == 5:
                handle.cancel()
                loop.call_later(0.05, done.set)
        handle = loop.call_every(0.005, tick)
        run_until(loop, done)
    assert len(ticks) == 5
    assert all(later > earlier for earlier, later in zip(ticks, ticks[1:]))


def test_timer_scheduled_from_another_thread_wakes_a_sleeping_loop():
    done = threading.Event()
    with runtime.Loop(workers=1) as loop:
        threading.Timer(0.05, lambda: loop.call_later(0.01, done.set)).start()
        run_until(loop, done, timeout=5)


def test_fd_reader_and_writer_over_a_socketpair():
    a, b = socket.socketpair()
    a.setblocking(False)
    received, done = bytearray(), threading.Event()
    payload = os.urandom(1 << 20)
    sent = [0]
    with runtime.Loop(workers=2) as loop:
        def on_writable():
            try:
                sent[0] += a.send(payload[sent[0]:sent[0] + 65536])
            except BlockingIOError:
                return
            if sent[0] == len(payload):
                loop.remove_writer(a)

        def on_readable():
            received.extend(b.recv(65536))
            if len(received) == len(payload):
                loop.remove_reader(b)
                done.set()

        loop.add_writer(a, on_writable, color="writer")
        loop.add_reader(b, on_readable, color="reader")
        run_until(loop, done)
        assert loop.stats()["fds"] == 0
    assert bytes(received) == payload
    a.close()
    b.close()


def test_fd_callback_is_not_rerun_while_still_running():
    """A slow reader on a worker: the loop must not queue it again until it returns."""
    a, b = socket.socketpair()
    inside, overlaps, runs, done = [0], [], [0], threading.Event()
    lock = threading.Lock()
    release = threading.Event()

    with runtime.Loop(workers=3, scheduler="steal") as loop:
        def slow_reader():
            with lock:
                inside[0] += 1
                if inside[0] > 1:
                    overlaps.append(runs[0])
            release.wait(0.2)       # stay inside while the fd stays readable
            with lock:
                inside[0] -= 1
                runs[0] += 1
            if runs[0] == 3:
                b.recv(10)
                loop.remove_reader(b)
                done.set()

        loop.add_reader(b, slow_reader, color="r")
        a.send(b"x")                 # never drained before the third run: level-triggered
        run_until(loop, done)
    assert overlaps == []
    assert runs[0] == 3
    a.close()
    b.close()


def test_signal_is_delivered_as_a_colored_callback():
    got, done = [], threading.Event()
    with runtime.Loop(workers=2) as loop:
        def on_usr1():
            got.append(runtime.current_color())
            done.set()
        loop.add_signal_handler(signal.SIGUSR1, on_usr1, color="sig")
        loop.call_later(0.01, os.kill, os.getpid(), signal.SIGUSR1)
        run_until(loop, done)
        assert loop.remove_signal_handler(signal.SIGUSR1)
    assert got == ["sig"]
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


@pytest.mark.parametrize("signum", [signal.SIGKILL, 1000], ids=["SIGKILL", "out-of-range"])
def test_a_refused_signal_handler_leaves_the_wakeup_fd_as_it_was(signum):
    r, w = os.pipe2(os.O_NONBLOCK)
    previous = signal.set_wakeup_fd(w)
    try:
        loop = runtime.Loop(workers=1)
        with pytest.raises((OSError, ValueError)):
            loop.add_signal_handler(signum, print)
        assert signal.set_wakeup_fd(w) == w        # still the program's own, not the loop's pipe
        loop.close()
        assert signal.set_wakeup_fd(w) == w
    finally:
        signal.set_wakeup_fd(previous)
        os.close(r)
        os.close(w)


def test_after_close_a_signal_writes_nothing_into_a_file_that_reused_the_loops_fds(tmp_path):
    """The tester's case: a refused handler, close(), then files get the freed fd numbers and a
    signal arrives. Its wake-up byte must go where the wake-up fd pointed before the loop."""
    r, w = os.pipe2(os.O_NONBLOCK)
    previous = signal.set_wakeup_fd(w)
    old_usr1 = signal.getsignal(signal.SIGUSR1)
    files = []
    try:
        loop = runtime.Loop(workers=1)
        loop_fds = {loop._pollers[0].wake_r, loop._pollers[0].wake_w}
        with pytest.raises(OSError):
            loop.add_signal_handler(signal.SIGKILL, print)
        loop.close()
        files = [open(tmp_path / f"f{i}", "wb", buffering=0) for i in range(6)]
        assert loop_fds <= {f.fileno() for f in files}     # the pipe's numbers were reused
        got = []
        signal.signal(signal.SIGUSR1, lambda *a: got.append(a[0]))
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
        assert got == [signal.SIGUSR1]
        for f in files:
            f.close()
        assert [(tmp_path / f"f{i}").read_bytes() for i in range(6)] == [b""] * 6
        assert os.read(r, 16) == bytes([signal.SIGUSR1])
    finally:
        for f in files:
            f.close()
        signal.signal(signal.SIGUSR1, old_usr1)
        signal.set_wakeup_fd(previous)
        os.close(r)
        os.close(w)


def test_raising_callback_is_reported_and_the_loop_goes_on():
    reports, after, done = [], [], threading.Event()
    with runtime.Loop(workers=2, on_error=reports.append) as loop:
        def boom():
            raise ValueError("bad request")
        loop.call_soon(boom, color=5)
        loop.call_soon(after.append, "same color still runs", color=5)
        loop.call_soon(after.append, "other color runs", color=6)
        loop.call_later(0.02, done.set)
        run_until(loop, done)
        stats = loop.stats()
    assert sorted(after) == ["other color runs", "same color still runs"]
    assert len(reports) == 1
    report = reports[0]
    assert report.color == 5
    assert "boom" in report.callback
    assert isinstance(report.exception, ValueError)
    assert "bad request" in report.traceback
    assert stats["errors"] == 1


@pytest.mark.parametrize("exc_type", [RuntimeError, runtime.CancelledError])
def test_broken_error_handler_does_not_kill_the_worker(caplog, exc_type):
    """A CancelledError from the handler is a broken handler too, not a request to stop."""
    done = threading.Event()

    def bad_handler(report):
        raise exc_type("handler broken")

    with runtime.Loop(workers=2, on_error=bad_handler) as loop:
        loop.call_soon(lambda: 1 / 0, color=1)
        loop.call_soon(done.set, color=1)
        run_until(loop, done)
    assert "ZeroDivisionError" in caplog.text
    assert "handler broken" in caplog.text


@pytest.mark.parametrize("color", [0, 1])       # the loop thread, a worker thread
def test_a_cancelled_error_escaping_a_plain_callback_is_reported_like_any_error(color):
    """CancelledError is a BaseException, as asyncio's, so that a task's `except Exception:` does
    not swallow its cancellation. Outside a task nobody asked for it: a plain callback that lets
    one escape (here by calling result() on a cancelled task) has a bug to report, like any
    other; it is no request to stop the loop, and must not kill the worker that ran it."""
    reports, ran = [], []

    async def waits():
        await runtime.Future()

    with runtime.Loop(workers=2, on_error=reports.append) as loop:
        task = loop.spawn(waits(), color=color)
        task.cancel()                               # delivered at its first step, queued first
        loop.call_soon(task.result, color=color)    # raises the task's CancelledError
        loop.call_soon(ran.append, "the color still runs", color=color)
        loop.call_soon(loop.stop, color=color)
        loop.run()                                  # returns: nothing stopped it but stop()
        assert loop.stats()["errors"] == 1
    assert ran == ["the color still runs"]
    assert [(r.color, type(r.exception)) for r in reports] == [(color, runtime.CancelledError)]
    assert "result" in reports[0].callback


def test_stop_runs_what_was_scheduled_before_and_keeps_the_rest():
    ran = []
    with runtime.Loop(workers=3) as loop:
        def stopper():
            for i in range(3):
                loop.call_soon(ran.append, ("before", i), color=i)
            loop.stop()
            loop.call_soon(ran.append, ("after", 0), color=0)
        loop.call_soon(stopper, color=0)
        loop.run()
        assert sorted(ran) == [("before", 0), ("before", 1), ("before", 2)]
        assert loop.stats()["pending"] == 1
        # The callback scheduled after stop() was kept and runs in the next run().
        loop.call_soon(loop.stop, color=1)
        loop.run()
    assert ("after", 0) in ran


def test_close_leaves_no_threads_or_fds():
    def fd_count():
        return len(os.listdir("/proc/self/fd"))

    threads_before, fds_before = threading.active_count(), fd_count()
    for _ in range(5):
        loop = runtime.Loop(workers=4)
        loop.call_soon(loop.stop)
        loop.run()
        loop.close()
    assert threading.active_count() == threads_before
    assert fd_count() == fds_before
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_soon(print)


def test_bad_arguments_fail_early_with_clear_errors():
    with runtime.Loop(workers=1) as loop:
        with pytest.raises(TypeError, match="callable"):
            loop.call_soon(42)
        with pytest.raises(TypeError, match="hashable"):
            loop.call_soon(print, color=[1, 2])
        with pytest.raises(ValueError, match="interval"):
            loop.call_every(0, print)
        with pytest.raises(TypeError, match="fileno"):
            loop.add_reader("not an fd", print)
        with pytest.raises(ValueError, match="interval"):
            loop.call_every(float("nan"), print)
        for delay in (float("nan"), float("inf")):
            with pytest.raises(ValueError, match="finite"):
                loop.call_later(delay, print)
        with pytest.raises(ValueError, match="finite"):
            loop.call_every(float("inf"), print)
        r, w = os.pipe()
        os.close(r)
        os.close(w)
        for add in (loop.add_reader, loop.add_writer):
            with pytest.raises(OSError) as bad_fd:
                add(r, print, color=1)      # color 1: a worker's poller, not the loop thread's
            assert bad_fd.value.errno == errno.EBADF
    with pytest.raises(ValueError, match="scheduler"):
        runtime.Loop(scheduler="random")
    for workers in (0, -1, 1.5):
        with pytest.raises(ValueError, match="workers"):
            runtime.Loop(workers=workers)



def test_ctrl_c_stops_cleanly_and_raises_keyboard_interrupt():
    # A child started from a non-interactive shell inherits SIGINT ignored, and the loop rightly
    # leaves a program's own SIGINT disposition alone: restore Python's default first.
    program = textwrap.dedent("""
        import os, signal, runtime
        signal.signal(signal.SIGINT, signal.default_int_handler)
        loop = runtime.Loop(workers=2)
        ran = []
        def tick():
            ran.append(1)
            if len(ran) == 3:
                os.kill(os.getpid(), signal.SIGINT)
        loop.call_every(0.01, tick, color=1)
        try:
            loop.run()
        except KeyboardInterrupt:
            loop.close()
            print("clean stop after", len(ran), "ticks")
    """)
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                         timeout=30, cwd=os.path.dirname(os.path.dirname(runtime.__file__)))
    assert out.returncode == 0, out.stderr
    assert "clean stop after" in out.stdout


def test_removing_a_sigint_handler_during_run_keeps_ctrl_c_a_clean_stop():
    """run() made Ctrl-C a clean stop; a program that adds and removes its own SIGINT handler
    meanwhile used to get Python's default back, and Ctrl-C then broke into the running callback
    with KeyboardInterrupt instead of letting it finish."""
    program = textwrap.dedent("""
        import os, signal, runtime
        signal.signal(signal.SIGINT, signal.default_int_handler)
        loop = runtime.Loop(workers=1)
        done = []
        def busy():
            loop.add_signal_handler(signal.SIGINT, print, "own handler")
            loop.remove_signal_handler(signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(2_000_000))         # the signal is handled on this thread meanwhile
            done.append("busy finished")
        loop.call_soon(busy)
        try:
            loop.run()
        except KeyboardInterrupt:
            print(done, signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    """)
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                         timeout=30, cwd=os.path.dirname(os.path.dirname(runtime.__file__)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["['busy", "finished']", "True"]


def test_callbacks_bundled_with_cwrap_keep_their_color():
    seen, done = [], threading.Event()
    with runtime.Loop(workers=2) as loop:
        cb = runtime.cwrap("blue", lambda tag: seen.append((tag, runtime.current_color())), "x")
        loop.call_soon(cb)
        loop.call_soon(runtime.wrap(seen.append, ("default", 0)))
        loop.call_later(0.02, done.set)
        run_until(loop, done)
    assert sorted(seen) == [("default", 0), ("x", "blue")]


def test_a_busy_color_runs_a_bounded_streak_then_yields_to_the_others():
    """One worker, two colors with 40 queued callbacks each: a color runs several in a row (its
    callbacks stay together), but never more than STREAK + 1 while the other waits, and each
    color's order is kept."""
    from runtime.scheduler import STREAK

    ran = []
    loop = runtime.Loop(workers=1)
    for i in range(40):
        loop.call_soon(ran.append, ("a", i), color="a")
    for i in range(40):
        loop.call_soon(ran.append, ("b", i), color="b")
    loop.call_soon(loop.stop, color="b")
    loop.run()
    loop.close()
    assert [i for c, i in ran if c == "a"] == list(range(40))
    assert [i for c, i in ran if c == "b"] == list(range(40))
    runs, current, length = [], None, 0
    for color, _ in ran:
        if color != current:
            if current is not None:
                runs.append((current, length))
            current, length = color, 0
        length += 1
    runs.append((current, length))
    assert runs[0] == ("a", STREAK + 1) and runs[1] == ("b", STREAK + 1)   # streaks, then a turn
    assert max(n for _, n in runs) == STREAK + 1
    assert len(runs) == 6                                 # a, b, a, b, a, b: nobody starves


def test_a_loop_runs_again_after_stop_and_its_timers_fire():
    """The stop() that ended one run does not end the next: a second run() waits for its timer,
    and run_until_complete works twice (it hung the second time)."""
    with runtime.Loop(workers=2) as loop:
        fired = []
        for run in range(3):
            loop.call_later(0.02, fired.append, run)
            loop.call_later(0.04, loop.stop)
            loop.run()
        assert fired == [0, 1, 2]

        async def after(delay, value):
            await runtime.sleep(delay)
            return value
        assert loop.run_until_complete(after(0.02, "first")) == "first"
        assert loop.run_until_complete(after(0.02, "second")) == "second"


def test_a_stop_between_runs_carries_over_to_the_next():
    with runtime.Loop(workers=1) as loop:
        ran = []
        loop.call_soon(ran.append, 1)
        loop.stop()
        loop.run()                   # drains what was queued, then returns at once
        assert ran == [1]
