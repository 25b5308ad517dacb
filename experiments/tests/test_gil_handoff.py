"""The GIL hand-off input: interpolation, and the fit recovering a known switch cost."""
import pytest

from experiments import gil_handoff
from experiments.model import Config, conn_stages, simulate


def test_switch_cost_interpolates_on_log_held_time():
    table = [(1e-6, 10e-6), (100e-6, 30e-6)]
    assert gil_handoff.switch_cost(1e-7, table) == 10e-6
    assert gil_handoff.switch_cost(10e-6, table) == pytest.approx(20e-6)
    assert gil_handoff.switch_cost(1e-3, table) == 30e-6
    assert gil_handoff.switch_cost(10e-6, []) == 0.0


def test_fit_recovers_the_switch_cost_the_model_was_given():
    held, free, switch = 15e-6, 9e-6, 20e-6
    cfg = Config(stages=conn_stages(held, free), cpus=2, clients=2, client_cpus=2, gil_switch_s=switch,
                 requests=1500, warmup=150)
    measured = simulate(cfg).throughput
    assert gil_handoff.fit_switch_cost(held, free, measured) == pytest.approx(switch, rel=0.15)


def test_two_threads_run_and_are_counted():
    assert gil_handoff.rate(gil_handoff._free, 2, gil_handoff.common.allowed_cpus(), 0.05) > 0
