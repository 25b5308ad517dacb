"""The runtime speedup benchmark runs exactly the callbacks it times, each on its color's op."""
from __future__ import annotations

import pytest

from runtime.benchmarks import speedup


def counting_ops():
    """make_op for throughput(): every op made records its calls in a list of its own."""
    made = []

    def make_op():
        calls = []
        made.append(calls)
        return lambda: calls.append(1)
    return made, make_op


@pytest.mark.parametrize("workers", [1, 2])
def test_distinct_colors_each_run_their_share_on_their_own_op(workers):
    made, make_op = counting_ops()
    rate = speedup.throughput(make_op, 103, workers, "distinct")
    ncolors = 4 * workers
    assert rate > 0
    assert [len(calls) for calls in made] == [len(range(c, 103, ncolors)) for c in range(ncolors)]


def test_a_single_color_runs_every_callback_on_one_op():
    made, make_op = counting_ops()
    speedup.throughput(make_op, 50, 2, "single")
    assert [len(calls) for calls in made] == [50]


def test_fewer_ops_than_colors_still_ends():
    made, make_op = counting_ops()
    speedup.throughput(make_op, 3, 2, "distinct")
    assert sum(len(calls) for calls in made) == 3


def test_no_ops_is_refused():
    with pytest.raises(ValueError):
        speedup.throughput(counting_ops()[1], 0, 1, "single")
