"""A hostile user's calls: each must be refused with a clear error or handled, never kill the loop."""
import sys
import threading

import pytest

import runtime


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
