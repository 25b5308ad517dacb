"""`async def` on a color: every step runs as a callback of the task's color."""
import gc
import socket
import threading

import pytest

import runtime


def test_every_step_runs_on_the_tasks_color():
    colors_seen = []

    async def job():
        colors_seen.append(runtime.current_color())
        await runtime.sleep(0.001)
        colors_seen.append(runtime.current_color())
        value = await runtime.call_in_color("cache", lambda: runtime.current_color())
        colors_seen.append(runtime.current_color())
        return value

    with runtime.Loop(workers=3) as loop:
        assert loop.run_until_complete(job(), color="conn-1") == "cache"
    assert colors_seen == ["conn-1", "conn-1", "conn-1"]


def test_tasks_of_one_color_interleave_but_never_overlap():
    """Two tasks share a color: their steps alternate at awaits, never run at once."""
    inside, overlaps, log = [0], [], []
    lock = threading.Lock()

    async def worker(name, rounds):
        for i in range(rounds):
            with lock:
                inside[0] += 1
                if inside[0] > 1:
                    overlaps.append((name, i))
            log.append((name, i))
            with lock:
                inside[0] -= 1
            await runtime.sleep(0)
        return name

    async def main():
        t1 = loop.spawn(worker("a", 50), color="shared")
        t2 = loop.spawn(worker("b", 50), color="shared")
        return [await t1, await t2]

    with runtime.Loop(workers=4, scheduler="steal") as loop:
        assert loop.run_until_complete(main(), color="main") == ["a", "b"]
    assert overlaps == []
    assert [i for name, i in log if name == "a"] == list(range(50))
    assert [i for name, i in log if name == "b"] == list(range(50))


def test_tasks_on_different_colors_run_in_parallel():
    barrier = threading.Barrier(2, timeout=5)

    async def meet():
        barrier.wait()
        await runtime.sleep(0)
        return runtime.current_color()

    async def main():
        t1, t2 = loop.spawn(meet(), color=0), loop.spawn(meet(), color=1)
        return sorted([await t1, await t2])

    with runtime.Loop(workers=2) as loop:
        assert loop.run_until_complete(main(), color=2) == [0, 1]


def test_exceptions_propagate_to_the_awaiting_task():
    async def failing():
        await runtime.sleep(0)
        raise KeyError("missing")

    async def main():
        try:
            await loop.spawn(failing(), color=5)
        except KeyError as exc:
            return f"caught {exc}"

    with runtime.Loop(workers=2) as loop:
        assert loop.run_until_complete(main()) == "caught 'missing'"


def test_cancel_raises_at_the_await():
    async def sleeper():
        try:
            await runtime.sleep(30)
        except runtime.CancelledError:
            return "cancelled"
        return "woke up"

    async def main():
        task = loop.spawn(sleeper(), color=1)
        await runtime.sleep(0.01)
        assert task.cancel()
        return await task

    with runtime.Loop(workers=2) as loop:
        assert loop.run_until_complete(main()) == "cancelled"


def test_readable_and_writable_over_a_socketpair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)

    async def echo_once():
        await runtime.readable(b)
        data = b.recv(100)
        await runtime.writable(b)
        b.send(data.upper())

    async def main():
        server = loop.spawn(echo_once(), color="server")
        await runtime.writable(a)
        a.send(b"ping")
        await server
        await runtime.readable(a)
        return a.recv(100)

    with runtime.Loop(workers=2) as loop:
        assert loop.run_until_complete(main(), color="client") == b"PING"
        assert loop.stats()["fds"] == 0
    a.close()
    b.close()


def test_awaiting_a_foreign_awaitable_is_a_clear_error():
    import asyncio

    async def wrong():
        await asyncio.sleep(0)

    with runtime.Loop(workers=1) as loop:
        with pytest.raises(TypeError, match="colorloop awaitables"):
            loop.run_until_complete(wrong())


def test_future_set_from_a_plain_thread_resumes_the_task():
    fut = runtime.Future()

    async def waiter():
        return await fut

    threading.Timer(0.02, fut.set_result, args=("from thread",)).start()
    with runtime.Loop(workers=2) as loop:
        assert loop.run_until_complete(waiter(), color=7) == "from thread"
    with pytest.raises(runtime.InvalidStateError):
        fut.set_result("twice")


def test_cancel_right_after_the_awaited_future_completes_is_not_lost():
    """cancel() returned True, so the task must end cancelled, even when the future it awaits was
    completed just before (its wake-up already queued with the value)."""
    loop = runtime.Loop(workers=2)
    fut = runtime.Future()
    outcome = []

    async def waiter():
        try:
            return await fut
        except runtime.CancelledError:
            outcome.append("cancelled")
            raise

    async def main():
        task = loop.spawn(waiter(), color=7)
        await runtime.call_in_color(7, lambda: None)      # the waiter is at its await now
        said = await runtime.call_in_color(7, lambda: (fut.set_result(1), task.cancel())[1])
        try:
            await task
        except runtime.CancelledError:
            return said, "task cancelled"
        return said, "task finished"

    with loop:
        assert loop.run_until_complete(main()) == (True, "task cancelled")
    assert outcome == ["cancelled"]


def test_a_cancel_the_coroutine_survives_is_delivered_once():
    loop = runtime.Loop(workers=1)
    first, second = runtime.Future(), runtime.Future()

    async def stubborn():
        try:
            await first
        except runtime.CancelledError:
            pass
        return await second          # a cancellation already handled must not strike again

    async def main():
        task = loop.spawn(stubborn())
        await runtime.sleep(0.01)
        task.cancel()
        await runtime.sleep(0.01)
        second.set_result("kept going")
        return await task

    with loop:
        assert loop.run_until_complete(main()) == "kept going"


def test_result_on_a_loop_thread_refuses_instead_of_freezing_the_loop():
    loop = runtime.Loop(workers=2)

    async def slow():
        await runtime.sleep(0.05)
        return "slow"

    async def main():
        task = loop.spawn(slow())
        with pytest.raises(runtime.InvalidStateError, match="await it"):
            task.result()
        return await task

    with loop:
        assert loop.run_until_complete(main()) == "slow"


def test_run_until_complete_stopped_early_says_so():
    loop = runtime.Loop(workers=1)
    never = runtime.Future()

    async def forever():
        await never

    loop.call_later(0.02, loop.stop)
    with loop:
        with pytest.raises(RuntimeError, match="stopped before the coroutine finished"):
            loop.run_until_complete(forever())


def test_a_task_exception_nobody_retrieved_is_reported_when_the_task_is_collected():
    """Four failed tasks: one awaited, one asked for exception(), one cancelled, and one nobody
    looks at. Only the last is reported (once, with its color), and counted in stats."""
    reports = []
    gate, never = runtime.Future(), runtime.Future()

    async def failing(message):
        if message == "lost":
            gate.set_result(None)
        raise ValueError(message)

    async def waits():
        await never

    async def main():
        loop.spawn(failing("lost"), color="f")          # nobody keeps it
        try:
            await loop.spawn(failing("awaited"), color="g")
        except ValueError:
            pass
        await gate
        loop.spawn(waits(), color="h").cancel()         # ends in CancelledError: not reported
        return loop.spawn(failing("asked"), color="i")  # its step is queued: stop() drains it

    loop = runtime.Loop(workers=2, on_error=reports.append)
    with loop:
        asked = loop.run_until_complete(main())
        assert isinstance(asked.exception(), ValueError)
        del asked
        gc.collect()
        assert [(r.color, str(r.exception)) for r in reports] == [("f", "lost")]
        assert "failing" in reports[0].callback and "never retrieved" in reports[0].callback
        assert "ValueError: lost" in reports[0].traceback
        assert loop.stats()["errors"] == 1


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt])
def test_system_exit_in_a_task_stops_the_loop_as_from_a_callback(exc_type):
    reports, never = [], runtime.Future()

    async def exits():
        await runtime.sleep(0)
        raise exc_type(3)

    async def main():
        await never

    loop = runtime.Loop(workers=2, on_error=reports.append)
    with loop:
        task = loop.spawn(exits(), color="x")
        loop.call_later(10, loop.stop)          # a failure, not a hang, if the task can't stop it
        with pytest.raises(exc_type):
            loop.run_until_complete(main())
        assert isinstance(task.exception(), exc_type)
        del task
        gc.collect()
        # reported once, by the step that raised it, as a callback's would be; not again
        assert [(r.color, type(r.exception)) for r in reports] == [("x", exc_type)]
        assert loop.stats()["errors"] == 1


def test_cancelling_a_task_waiting_for_readable_stops_watching_the_fd():
    a, b = socket.socketpair()
    waiting, woke = runtime.Future(), []

    async def waiter():
        waiting.set_result(None)        # main, on the same color, resumes after this step
        await runtime.readable(a)
        woke.append(True)

    async def main():
        task = loop.spawn(waiter(), color="c")
        await waiting
        watched_while_waiting = loop.stats()["fds"]
        task.cancel()
        with pytest.raises(runtime.CancelledError):
            await task
        return watched_while_waiting, loop.stats()["fds"]

    with runtime.Loop(workers=2) as loop:
        assert loop.run_until_complete(main(), color="c") == (1, 0)
        b.send(b"x")
        loop.call_soon(loop.stop)
        loop.run()
    assert woke == []
    a.close()
    b.close()


def test_awaiting_readable_on_an_fd_with_a_reader_is_refused_and_the_reader_kept():
    a, b = socket.socketpair()
    a.setblocking(False)
    got, done = [], threading.Event()

    def persistent_reader():
        got.append((a.recv(10), threading.current_thread().name))
        done.set()

    async def main():
        with pytest.raises(RuntimeError, match="already has a reader"):
            await runtime.readable(a)
        b.send(b"x")

    with runtime.Loop(workers=1) as loop:
        loop.add_reader(a, persistent_reader)
        guard = loop.call_later(10, loop.stop)      # a failure, not a hang, if the wait is let in
        loop.run_until_complete(main())
        guard.cancel()
        threading.Thread(target=lambda: (done.wait(5), loop.stop()), daemon=True).start()
        loop.run()
        assert loop.stats()["fds"] == 1
    assert got == [(b"x", "MainThread")]
    a.close()
    b.close()


def test_a_task_run_until_complete_gave_up_on_does_not_stop_a_later_run():
    """The stopped-early task is cancelled; its cancellation is delivered in the next run, and
    ending then must not stop that run before its own coroutine finishes."""
    loop = runtime.Loop(workers=1)
    never = runtime.Future()

    async def forever():
        await never

    async def later():
        await runtime.sleep(0.01)
        return "finished"

    loop.call_later(0.01, loop.stop)
    with loop:
        with pytest.raises(RuntimeError, match="stopped before"):
            loop.run_until_complete(forever())
        assert loop.run_until_complete(later()) == "finished"


def test_cancelling_a_task_in_sleep_cancels_its_timer():
    async def sleeper():
        await runtime.sleep(3600)

    async def main():
        task = loop.spawn(sleeper())
        await runtime.sleep(0)
        task.cancel()
        with pytest.raises(runtime.CancelledError):
            await task
        return [timer.cancelled for _, _, timer in loop._timers]

    with runtime.Loop(workers=1) as loop:
        assert loop.run_until_complete(main()) == [True]


def test_cancelling_a_task_before_its_call_in_color_starts_drops_the_call():
    gate, ran = threading.Event(), []

    async def caller():
        await runtime.call_in_color(1, ran.append, "ran")

    async def main():
        loop.call_soon(gate.wait, 5, color=1)       # color 1 (worker 1) is busy until gate is set
        task = loop.spawn(caller())
        await runtime.sleep(0)                      # the caller's call is queued behind gate.wait
        task.cancel()
        with pytest.raises(runtime.CancelledError):
            await task
        gate.set()
        await runtime.call_in_color(1, lambda: None)    # color 1 has run what it had queued
        return ran

    with runtime.Loop(workers=2) as loop:
        assert loop.run_until_complete(main()) == []


def test_a_task_sharing_an_await_with_a_cancelled_one_is_told_instead_of_left_waiting():
    """Cancelling one awaiter releases what the awaitable holds (here the timer), so it will never
    complete: the other awaiter gets CancelledError, as in asyncio, rather than wait for ever."""
    async def waiter(shared):
        await shared

    async def main():
        shared = runtime.sleep(3600)
        first, second = loop.spawn(waiter(shared)), loop.spawn(waiter(shared))
        await runtime.sleep(0)
        first.cancel()
        with pytest.raises(runtime.CancelledError):
            await second
        return "told"

    with runtime.Loop(workers=1) as loop:
        guard = loop.call_later(10, loop.stop)     # a failure, not a hang, if second is left waiting
        assert loop.run_until_complete(main()) == "told"
        guard.cancel()


class _OwnBaseException(BaseException):
    pass


@pytest.mark.parametrize("exc_type", [GeneratorExit, _OwnBaseException])
def test_another_base_exception_in_a_task_is_its_outcome_and_does_not_stop_the_loop(exc_type):
    reports = []

    async def raises():
        await runtime.sleep(0)
        raise exc_type("outcome")

    async def main():
        with pytest.raises(exc_type):
            await loop.spawn(raises(), color="x")
        await runtime.sleep(0)          # the loop still runs steps
        return "still running"

    loop = runtime.Loop(workers=2, on_error=reports.append)
    with loop:
        assert loop.run_until_complete(main()) == "still running"
    assert reports == []


def test_cancelling_a_wait_on_a_socket_closed_meanwhile_ends_the_task_and_frees_the_fd():
    """The closed socket's fileno() is -1: the cancelled wait stopped nothing and raised in the
    task's step, which then never delivered the cancellation (the task hung). The fd number must
    be free for the next socket that gets it."""
    a, b = socket.socketpair()

    async def waiter():
        await runtime.readable(a)

    async def main():
        task = loop.spawn(waiter())
        await runtime.sleep(0)
        number = a.fileno()
        a.close()
        task.cancel()
        with pytest.raises(runtime.CancelledError):
            await task
        c, d = socket.socketpair()
        reuser = c if c.fileno() == number else d
        got = runtime.Future()
        loop.add_reader(reuser, lambda: got.done() or got.set_result(reuser.recv(10)))
        (d if reuser is c else c).send(b"next")
        try:
            return loop.stats()["fds"], await got
        finally:
            loop.remove_reader(reuser)
            c.close()
            d.close()

    with runtime.Loop(workers=1) as loop:
        guard = loop.call_later(10, loop.stop)      # a failure, not a hang, if the task hangs
        assert loop.run_until_complete(main()) == (1, b"next")
        guard.cancel()
    b.close()


def test_a_pending_task_nothing_can_resume_is_reported_when_collected():
    reports = []

    async def orphan():
        await runtime.Future()          # nobody else has it: nothing can ever complete it

    async def main():
        loop.spawn(orphan(), color="o")
        await runtime.call_in_color("o", lambda: None)      # orphan is at its await now

    loop = runtime.Loop(workers=2, on_error=reports.append)
    with loop:
        loop.run_until_complete(main())
        gc.collect()
    assert [(r.color, r.callback) for r in reports] == [
        ("o", "task test_a_pending_task_nothing_can_resume_is_reported_when_collected.<locals>"
              ".orphan (destroyed while pending)")]


def test_cancelled_error_is_a_base_exception_as_in_asyncio():
    assert issubclass(runtime.CancelledError, BaseException)
    assert not issubclass(runtime.CancelledError, Exception)


def test_a_task_catching_exception_does_not_swallow_its_cancellation():
    """`except Exception:` around an await (log it and carry on) is common in server code: it must
    let the cancellation through, as in asyncio since 3.8. The finally blocks still run."""
    started, cleaned = runtime.Future(), []

    async def careless():
        started.set_result(None)
        try:
            await runtime.sleep(30)
        except Exception:
            return "swallowed"
        finally:
            cleaned.append("finally")
        return "woke up"

    async def main():
        task = loop.spawn(careless(), color=1)
        await started
        assert task.cancel()
        with pytest.raises(runtime.CancelledError):
            await task
        return "cancelled"

    with runtime.Loop(workers=2) as loop:
        assert loop.run_until_complete(main()) == "cancelled"
    assert cleaned == ["finally"]


def _done_callbacks_after(first, ran):
    """Three done callbacks: `first`, then two that record that they ran."""
    return [first, lambda f: ran.append("second"), lambda f: ran.append("third")]


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt])
@pytest.mark.parametrize("completes", ["a future", "a task"])
def test_a_done_callback_that_exits_lets_the_later_ones_run_then_stops_the_loop(completes, exc_type):
    """One of the later callbacks may be a waiting task's wake-up: skipping it would leave that
    task pending for ever. So every callback runs first; then the exit stops the loop as usual."""
    reports, ran = [], []

    def exits(fut):
        raise exc_type(2)

    async def returns():
        return "done"

    with runtime.Loop(workers=2, on_error=reports.append) as loop:
        if completes == "a task":
            fut = loop.spawn(returns(), color=1)
        else:
            fut = runtime.Future()
            loop.call_soon(fut.set_result, "done", color=1)
        for fn in _done_callbacks_after(exits, ran):
            fut.add_done_callback(fn)
        guard = loop.call_later(10, loop.stop)      # a failure, not a hang, if nothing stops it
        with pytest.raises(exc_type):
            loop.run()
        guard.cancel()
    assert ran == ["second", "third"]
    assert [(r.color, type(r.exception)) for r in reports] == [(1, exc_type)]


def test_a_done_callback_raising_cancelled_error_is_reported_and_the_loop_goes_on():
    """A done callback that asks a cancelled task for its result gets its CancelledError: an
    ordinary bug in that callback, reported; the other callbacks run and the loop carries on."""
    reports, ran = [], []

    async def waits():
        await runtime.Future()

    with runtime.Loop(workers=2, on_error=reports.append) as loop:
        task = loop.spawn(waits(), color=1)
        for fn in _done_callbacks_after(lambda t: t.result(), ran):
            task.add_done_callback(fn)
        task.cancel()
        loop.call_soon(loop.stop, color=1)
        loop.run()
    assert ran == ["second", "third"]
    assert [(r.color, type(r.exception)) for r in reports] == [(1, runtime.CancelledError)]
    assert "future done callback" in reports[0].callback
