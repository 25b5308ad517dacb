"""The scheduler comparison's loads are what they claim to be (runs the real runtime, briefly)."""
import threading

import runtime
from experiments import sched_compare


def test_colliding_colors_really_run_on_one_worker():
    colors = sched_compare.colliding_colors(workers=2, want=4)
    assert len(set(colors)) == 4
    seen, lock = {}, threading.Lock()

    def record(c):
        with lock:
            seen[c] = threading.get_ident()

    with runtime.Loop(workers=2, scheduler="hash") as loop:
        for c in colors:
            loop.call_soon(record, c, color=c)
        loop.call_soon(loop.stop, color=colors[-1])
        loop.run()
    assert len(set(seen.values())) == 1


def test_a_trial_runs_every_callback_and_counts_steals():
    items = [(c, sched_compare.short_work, ()) for _ in range(20) for c in range(1, 9)]
    for scheduler in sched_compare.SCHEDULERS:
        result = sched_compare.run_trial(items, workers=2, scheduler=scheduler)
        assert result["ops_per_s"] > 0 and result["seconds"] > 0
        assert sum(int(n) for n in result["per_worker_callbacks"].split(";")) >= len(items)
        if scheduler == "hash":
            assert result["steals"] == 0


def test_loads_have_the_promised_shape():
    few = sched_compare.make_load("few_heavy", workers=2, quick=True)
    assert len({c for c, _, _ in few}) == 3
    short = sched_compare.make_load("short", workers=2, quick=True)
    assert {fn for _, fn, _ in short} == {sched_compare.short_work}
