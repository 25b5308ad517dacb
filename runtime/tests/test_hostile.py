"""A hostile user's calls: each must be refused with a clear error or handled, never kill the loop."""
import os
import sys
import threading
import weakref

import pytest

import runtime
from runtime import poller as poller_module


def stop_once_sleeping(loop):
    """stop() `loop` from another thread once its loop thread waits in select() with a timeout."""
    poller, sleeping = loop._pollers[0], threading.Event()
    real_select = poller.select

    def select(timeout):
        if timeout:
            sleeping.set()
        return real_select(timeout)
    poller.select = select
    threading.Thread(target=lambda: (sleeping.wait(5), loop.stop()), daemon=True).start()


@pytest.mark.parametrize("delay", [1e300, sys.float_info.max])
def test_a_huge_finite_delay_only_waits_and_does_not_crash_run(delay):
    """A finite delay is accepted, so it must not make select() overflow while the loop idles."""
    ran = []
    with runtime.Loop(workers=1) as loop:
        never = loop.call_later(delay, ran.append, "far future")
        stop_once_sleeping(loop)
        loop.run()
        never.cancel()
    assert ran == []


def test_stop_after_close_writes_nothing_into_a_file_that_reused_the_wakeup_pipe(tmp_path):
    """stop() is safe from any thread, so it may come late, after close(): its wake-up byte must
    not land in whatever file has since been given the pipe's fd number."""
    loop = runtime.Loop(workers=2)
    loop_fds = {fd for p in loop._pollers for fd in (p.wake_r, p.wake_w)}
    loop.close()
    files = [open(tmp_path / f"f{i}", "wb", buffering=0) for i in range(8)]
    try:
        assert loop_fds <= {f.fileno() for f in files}      # the pipes' numbers were reused
        loop.stop()
        loop.close()
    finally:
        for f in files:
            f.close()
    assert [(tmp_path / f"f{i}").read_bytes() for i in range(8)] == [b""] * 8


def test_a_wake_racing_close_on_another_thread_writes_only_into_the_open_pipe(monkeypatch):
    """wake() reads the pipe's fd number, then writes to it. A close() on another thread in
    between used to free that number, for the kernel to give to the next file opened, which then
    got the byte. Here wake() is held between the two steps until the close() has finished, or
    for half a second if close() waits for it."""
    poller = poller_module.Poller()
    pipe_inode = os.fstat(poller.wake_w).st_ino
    in_wake, closed, written_to = threading.Event(), threading.Event(), []

    class HeldWrite:
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def write(fd, data):
            in_wake.set()
            closed.wait(0.5)
            try:
                written_to.append("the pipe" if os.fstat(fd).st_ino == pipe_inode else "a file")
            except OSError:
                written_to.append("a freed fd number")
            return os.write(fd, data)
    monkeypatch.setattr(poller_module, "os", HeldWrite())
    waker = threading.Thread(target=poller.wake)
    waker.start()
    in_wake.wait(10)
    closer = threading.Thread(target=lambda: (poller.close(), closed.set()))
    closer.start()
    waker.join(10)
    closer.join(10)
    assert written_to == ["the pipe"]
    assert poller.wake_w == -1


@pytest.mark.parametrize("color", [0, 1])       # the loop thread, a worker thread
def test_an_error_handler_that_exits_stops_the_loop_and_leaves_the_color_runnable(color):
    """on_error=lambda r: sys.exit(1) is a natural "die on any error": it must stop run() with
    SystemExit as a callback raising it does, not kill the worker thread or leave the failed
    callback's color marked running forever (its later callbacks never running again)."""
    ran = []

    def exit_on_error(report):
        sys.exit(f"callback failed: {report.exception!r}")

    with runtime.Loop(workers=2, on_error=exit_on_error) as loop:
        loop.call_soon(lambda: 1 / 0, color=color)
        loop.call_soon(ran.append, "queued before the failure", color=color)
        with pytest.raises(SystemExit, match="ZeroDivisionError"):
            loop.run()
        assert ran == ["queued before the failure"]     # drained, as after any stop()
        loop.call_soon(ran.append, "next run", color=color)
        loop.call_soon(loop.stop, color=color)
        loop.run()
        assert loop.stats()["pending"] == 0
    assert ran == ["queued before the failure", "next run"]


@pytest.mark.parametrize("color", [0, 1])       # the loop thread's poller, a worker's
def test_an_fd_the_selector_refuses_is_refused_at_the_call(tmp_path, color):
    """epoll refuses a regular file (EPERM). add_reader() must raise that, as it raises EBADF for
    a closed fd, not return as if watching while the error only reaches on_error."""
    reports = []
    path = tmp_path / "plain-file"
    path.write_bytes(b"data")
    with runtime.Loop(workers=2, on_error=reports.append) as loop, open(path, "rb") as f:
        for add in (loop.add_reader, loop.add_writer):
            with pytest.raises(PermissionError):
                add(f, print, color=color)
        assert loop.stats()["fds"] == 0
        assert not loop.remove_reader(f)
    assert reports == []


def test_cancelled_far_timers_do_not_pile_up():
    """The timeout pattern: arm a far timer per request, cancel it when the request is done. A
    cancelled timer must not stay in the loop (with its callback's arguments) until its deadline,
    or memory grows with every request."""
    class Request:
        pass

    alive, fired = [], []
    with runtime.Loop(workers=1) as loop:
        loop.call_later(0, lambda: (fired.append("armed before"), loop.stop()))
        for _ in range(10_000):
            request = Request()
            alive.append(weakref.ref(request))
            loop.call_later(3600, print, request).cancel()
        del request
        held = sum(ref() is not None for ref in alive)
        assert held < 1000, f"{held} cancelled timers still held"
        loop.run()
    assert fired == ["armed before"]


def test_a_raising_done_callback_does_not_keep_a_waiting_task_asleep(caplog):
    """Future callbacks run one after another in set_result(); one that raises must not skip the
    rest, among them the wake-up of a task awaiting the future, nor raise into the thread that
    completed the future (often a plain thread handing a result over). It is logged there (a
    plain thread has no loop's on_error), or reported to on_error on a loop's thread."""
    reports, fut = [], runtime.Future()

    def complete_from_a_plain_thread():
        t = threading.Thread(target=fut.set_result, args=("handed over",))
        t.start()
        t.join()

    async def waiter():
        # On the task's own color, so it runs after this step has started waiting on fut.
        loop.call_soon(complete_from_a_plain_thread, color=runtime.current_color())
        return await fut

    with runtime.Loop(workers=2, on_error=reports.append) as loop:
        fut.add_done_callback(lambda f: 1 / 0)         # registered before the task waits
        watchdog = threading.Timer(10, loop.stop)      # a hang fails the test instead
        watchdog.start()
        try:
            assert loop.run_until_complete(waiter(), color=2) == "handed over"
        finally:
            watchdog.cancel()
    assert reports == []
    assert "future done callback" in caplog.text and "ZeroDivisionError" in caplog.text

    on_loop = runtime.Future()
    on_loop.add_done_callback(lambda f: 1 / 0)
    with runtime.Loop(workers=2, on_error=reports.append) as loop:
        loop.call_soon(on_loop.set_result, "on a worker", color=1)
        assert loop.run_until_complete(on_loop_waiter(on_loop), color=1) == "on a worker"
    assert [(type(r.exception), r.color) for r in reports] == [(ZeroDivisionError, 1)]


async def on_loop_waiter(fut):
    return await fut


@pytest.mark.parametrize("workers", [1, 2])
def test_per_color_stats_stay_bounded_with_a_new_color_per_connection(workers, monkeypatch):
    """A server with one color per connection ran a new color for every client: the stats kept an
    entry for every color that ever ran (about 250 bytes each, never freed). Past the bound, new
    colors are counted together under runtime.OTHER_COLORS, and no callback goes uncounted."""
    from runtime import scheduler
    monkeypatch.setattr(scheduler, "PER_COLOR_STATS_LIMIT", 50)
    n = 400
    with runtime.Loop(workers=workers) as loop:
        for i in range(n):
            loop.call_soon(lambda: None, color=("conn", i))
            loop.call_soon(lambda: None, color=("conn", i))      # a color's second callback too
        loop.call_soon(loop.stop, color=("conn", n - 1))
        loop.run()
        stats = loop.stats()
    colors = stats["colors"]
    assert len(colors) <= workers * 50 + 1
    assert runtime.OTHER_COLORS in colors and repr(runtime.OTHER_COLORS) == "<other colors>"
    assert sum(c["callbacks"] for c in colors.values()) == stats["callbacks"] == 2 * n + 1
    kept = [c for c in colors if c is not runtime.OTHER_COLORS]
    assert len(kept) >= 50 and all(colors[c]["callbacks"] in (1, 2, 3) for c in kept)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_task_that_awaits_itself_fails_instead_of_waiting_for_ever(workers):
    """As in asyncio: it could never be woken, and the loop would run on with it asleep."""
    me = []

    async def selfish():
        await me[0]

    async def main():
        me.append(loop.spawn(selfish(), color="selfish"))
        with pytest.raises(RuntimeError, match="cannot await itself"):
            await me[0]
        return "went on"

    with runtime.Loop(workers=workers) as loop:
        assert loop.run_until_complete(main(), color="main") == "went on"


def test_a_loop_that_cannot_make_all_its_pollers_leaks_none_of_those_it_made(monkeypatch):
    """Loop(workers=N) past the descriptor limit failed part-way and left the pipes and epoll fds
    of the pollers already made open, for good."""
    import os
    from runtime import loop as loop_module

    made = []
    real = loop_module.Poller

    def poller_until_the_fourth():
        if len(made) == 3:
            raise OSError(24, "Too many open files")
        made.append(real())
        return made[-1]

    monkeypatch.setattr(loop_module, "Poller", poller_until_the_fourth)
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError, match="Too many open files"):
        runtime.Loop(workers=8)
    assert len(made) == 3 and len(os.listdir("/proc/self/fd")) == before


class _MutableColor:
    """A color hashed by a field the program changes: misuse, but a worker must survive it."""

    def __init__(self, h):
        self.h = h

    def __hash__(self):
        return self.h

    def __eq__(self, other):
        return self is other


@pytest.mark.parametrize("policy", runtime.POLICIES)
def test_a_color_whose_hash_changes_while_queued_does_not_kill_its_worker(caplog, policy):
    """The scheduler finds an idle color's state by its hash to forget it; a KeyError there used
    to end worker 1's thread, and every color placed on it (5 here) waited for ever."""
    color, ran = _MutableColor(1), []

    def mutate():
        color.h = 3                    # still worker 1, but another dict slot
        ran.append("mutate")
        loop.call_soon(neighbour, color=5)

    def neighbour():
        ran.append("neighbour")
        loop.call_soon(again, color=color)

    def again():
        ran.append("again")
        loop.stop()

    with runtime.Loop(workers=2, scheduler=policy) as loop:
        loop.call_soon(mutate, color=color)
        give_up = loop.call_later(10, loop.stop)
        loop.run()
        give_up.cancel()
    assert ran == ["mutate", "neighbour", "again"]
    assert "immutable" in caplog.text


def test_two_threads_calling_run_at_once_start_one_run(monkeypatch):
    """run() checks that no thread runs the loop, then records its own. The first caller is held
    inside that window (its call of threading.current_thread()) until the second caller either
    reaches the window too (a race: two threads would run the loop) or is seen to wait."""
    loop = runtime.Loop(workers=1)
    real_current_thread = threading.current_thread
    callers, first_inside, second_inside = [], threading.Event(), threading.Event()

    def current_thread():
        me = real_current_thread()
        if len(callers) < 2 and me.name.startswith("run-caller") and me not in callers:
            callers.append(me)
            if len(callers) == 1:
                first_inside.set()
                second_inside.wait(0.5)     # the second caller blocks on the run lock meanwhile
            else:
                second_inside.set()
        return me
    monkeypatch.setattr(threading, "current_thread", current_thread)
    outcomes = []

    def call_run():
        try:
            loop.run()
            outcomes.append("ran")
        except RuntimeError as exc:
            outcomes.append(str(exc))
            loop.stop()

    threads = [threading.Thread(target=call_run, name=f"run-caller-{i}") for i in range(2)]
    threads[0].start()
    first_inside.wait(10)
    threads[1].start()
    for t in threads:
        t.join(10)
    monkeypatch.undo()
    if any(t.is_alive() for t in threads):
        loop.stop()
    loop.close()
    assert not second_inside.is_set()
    assert sorted(outcomes) == ["ran", "this loop is already running"]


@pytest.mark.parametrize("complete", ["set_result", "set_exception"])
def test_a_task_cannot_be_completed_from_outside_its_coroutine(complete):
    async def job():
        await runtime.sleep(0)
        return "its own result"

    async def main():
        task = loop.spawn(job())
        with pytest.raises(RuntimeError, match="cancel"):
            getattr(task, complete)(ValueError("from outside"))
        return await task

    with runtime.Loop(workers=1) as loop:
        assert loop.run_until_complete(main()) == "its own result"


def test_spawn_refuses_what_is_not_a_fresh_coroutine():
    """A generator or async generator is refused, as a function is; a coroutine already running
    as a task is refused too: a second task would resume its await with None."""
    def generator():
        yield

    async def async_generator():
        yield

    async def waits(fut):
        return await fut

    fut = runtime.Future()

    async def main():
        coro = waits(fut)
        first = loop.spawn(coro)
        await runtime.sleep(0)
        with pytest.raises(RuntimeError, match="not started yet"):
            loop.spawn(coro)
        fut.set_result("untouched")
        return await first

    with runtime.Loop(workers=1) as loop:
        for wrong in (generator(), async_generator(), generator):
            with pytest.raises(TypeError, match="needs a coroutine"):
                loop.spawn(wrong)
        assert loop.run_until_complete(main()) == "untouched"


class _CancelsAsItIsAwaited(runtime.Future):
    """Calls task.cancel() inside add_done_callback: the moment at which a cancel() from another
    thread can land, while the step is suspending the coroutine (its await set, not yet checked
    for a cancel), made deterministic."""

    task = None

    def add_done_callback(self, fn):
        super().add_done_callback(fn)
        if self.task is not None:
            self.task, task = None, self.task
            task.cancel()


@pytest.mark.parametrize("how", ["cancel twice", "cancel while suspending"])
def test_a_cancel_resumes_its_await_once_even_if_the_same_future_is_awaited_again(how):
    """The coroutine survives the cancel and awaits the same future again; the second step the
    cancel(s) scheduled must not resume that new await with None (it raised InvalidStateError)."""
    fut = _CancelsAsItIsAwaited()
    cancels = []

    async def stubborn():
        while True:
            try:
                return await fut
            except runtime.CancelledError:
                cancels.append("cancelled")

    async def main():
        task = loop.spawn(stubborn())
        if how == "cancel twice":
            await runtime.sleep(0)
            task.cancel()
            task.cancel()
        else:
            fut.task = task
        await runtime.call_in_color(0, lambda: None)     # resumes after the cancellation steps
        fut.set_result("the value")
        return await task

    with runtime.Loop(workers=1) as loop:
        assert loop.run_until_complete(main()) == "the value"
    assert cancels == ["cancelled"]


def test_a_tasks_color_cannot_be_changed():
    async def job():
        await runtime.sleep(0)

    async def main():
        task = loop.spawn(job(), color="a")
        with pytest.raises(AttributeError):
            task.color = "b"
        await task
        return task.color

    with runtime.Loop(workers=1) as loop:
        assert loop.run_until_complete(main()) == "a"


def test_run_until_complete_on_a_running_loop_is_refused_without_running_the_coroutine():
    ran = []

    async def job():
        ran.append("ran")

    coro = job()

    def nested():
        with pytest.raises(RuntimeError, match="already running"):
            loop.run_until_complete(coro)

    async def main():
        await runtime.call_in_color(0, nested)      # a step job() got would have run before this
        return ran

    with runtime.Loop(workers=1) as loop:
        assert loop.run_until_complete(main()) == []
    coro.close()
