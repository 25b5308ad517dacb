"""The discrete-event model on parameters whose answer is known in closed form."""
import pytest

from experiments.model import Config, Stage, conn_stages, request_stages, simulate

H, F = 100e-6, 400e-6


def rate(**kw):
    kw.setdefault("requests", 600)
    kw.setdefault("warmup", 60)
    kw.setdefault("clients", 16)
    return simulate(Config(**kw)).throughput


def test_one_worker_gives_the_serial_rate():
    assert rate(stages=conn_stages(H, F), cpus=1) == pytest.approx(1 / (H + F), rel=0.05)


def test_gil_free_work_without_a_gil_scales_linearly():
    one = rate(stages=conn_stages(0.0, F), cpus=1, gil=False)
    for k in (2, 4, 8):
        assert rate(stages=conn_stages(0.0, F), cpus=k, gil=False) == pytest.approx(k * one, rel=0.08)


def test_gil_held_work_does_not_scale():
    one = rate(stages=conn_stages(H, 0.0), cpus=1)
    assert rate(stages=conn_stages(H, 0.0), cpus=8) == pytest.approx(one, rel=0.05)


def test_free_threaded_build_lets_interpreter_work_scale():
    one = rate(stages=conn_stages(H, 0.0), cpus=1, gil=False)
    assert rate(stages=conn_stages(H, 0.0), cpus=4, gil=False) == pytest.approx(4 * one, rel=0.08)


def test_gil_bounds_mixed_work_at_one_over_held_time():
    # Amdahl through the GIL: never more than 1/H, approached with many CPUs
    r = rate(stages=conn_stages(H, F), cpus=16, clients=64)
    assert r <= 1 / H * 1.05
    assert r > 0.8 / H


def test_one_color_never_runs_in_parallel():
    one = rate(stages=request_stages(0.0, F, colored=False), cpus=1, gil=False)
    assert rate(stages=request_stages(0.0, F, colored=False), cpus=8, gil=False) == pytest.approx(one, rel=0.05)


def test_ncopy_processes_each_have_their_own_gil():
    one = rate(stages=conn_stages(H, F), cpus=1, workers=1, processes=1)
    assert rate(stages=conn_stages(H, F), cpus=4, workers=1, processes=4) == pytest.approx(4 * one, rel=0.08)


def test_a_load_generator_sharing_the_cpus_costs_throughput():
    own = rate(stages=conn_stages(0.0, F), cpus=2, gil=False, client_s=F, client_cpus=2)
    shared = rate(stages=conn_stages(0.0, F), cpus=2, gil=False, client_s=F, client_cpus=0)
    assert own == pytest.approx(2 / F, rel=0.08)
    assert shared == pytest.approx(2 / (2 * F), rel=0.08)     # both sides' work on the same 2 CPUs


def test_client_work_runs_on_at_most_its_threads():
    # 16 connections but one load-generator thread: its work is serial, so F per reply bounds the
    # rate at 1 / F even with 4 CPUs to share; one thread per connection would use them all.
    one_thread = rate(stages=conn_stages(0.0, F / 10), cpus=4, gil=False, client_s=F, client_threads=1)
    per_conn = rate(stages=conn_stages(0.0, F / 10), cpus=4, gil=False, client_s=F)
    assert one_thread == pytest.approx(1 / F, rel=0.08)
    assert per_conn > 3 * one_thread


# cross-CPU wake-ups as gil_handoff measures them: (slept_s, waker's cost, latency)
WAKE = ((5e-6, 20e-6, 40e-6), (500e-6, 30e-6, 60e-6))


def test_a_default_color_stays_on_its_worker_and_pays_no_wake_up():
    # One color (colors off) on 2 workers: it keeps running where it runs, so nobody sleeps on
    # the GIL and no worker is woken for it; with 2 busy colors the GIL passes, at a price.
    serial = dict(stages=request_stages(H, F, colored=False), cpus=2, scheduler="steal")
    assert rate(wake_costs=WAKE, **serial) == pytest.approx(rate(**serial), rel=0.03)
    busy = dict(stages=conn_stages(H, H / 4), cpus=2, scheduler="steal")
    assert rate(wake_costs=WAKE, **busy) < 0.8 * rate(**busy)


def test_wake_ups_cost_nothing_on_one_cpu_or_without_a_gil_to_pass():
    one = dict(stages=conn_stages(H, F), cpus=1)
    assert rate(wake_costs=WAKE, **one) == pytest.approx(rate(**one), rel=0.01)
    nogil = dict(stages=conn_stages(H, F), cpus=4, clients=32, gil=False)
    assert rate(wake_costs=WAKE, **nogil) == pytest.approx(4 / (H + F), rel=0.08)


def test_a_thread_finding_the_gil_free_takes_it_ahead_of_a_woken_one():
    from experiments.model import Gil, Sim, Timeout, WakeCosts

    sim = Sim()
    gil = Gil(sim, WakeCosts([(1e-6, 2.0, 10.0)]))
    order = []

    def thread(name, start, hold):
        yield Timeout(start)
        yield gil.acquire()
        order.append((name, sim.now))
        yield Timeout(hold)
        gil.release()

    sim.process(thread("a", 0.0, 5.0))     # holds 0..5
    sim.process(thread("b", 1.0, 5.0))     # sleeps at 1; woken at 5, runs at 15
    sim.process(thread("c", 6.0, 20.0))    # finds the GIL free at 6: takes it, holds to 26
    sim.run()
    # b, woken at 5, arrives at 15 to find c holding it: back to sleep, woken again at 26
    assert order == [("a", 0.0), ("c", 6.0), ("b", 36.0)]


def test_a_woken_thread_runs_the_measured_latency_after_its_waker_began_to_signal():
    # gil_handoff times the latency from the moment the waker starts its release call, so a
    # release that spends 2 (the waker's cost) before unlocking leaves the sleeper 10 - 2 more.
    from experiments.model import Gil, Sim, Timeout, WakeCosts

    sim = Sim()
    gil = Gil(sim, WakeCosts([(1e-6, 2.0, 10.0)]))
    ran = {}

    def holder():
        yield gil.acquire()
        yield Timeout(5.0)
        assert gil.signal_cost() == 2.0          # someone sleeps: waking them costs 2
        gil.start_signal()
        yield Timeout(2.0)
        gil.release()

    def sleeper():
        yield Timeout(1.0)
        yield gil.acquire()
        ran["b"] = sim.now

    sim.process(holder())
    sim.process(sleeper())
    sim.run()
    assert ran["b"] == pytest.approx(5.0 + 10.0)


def test_a_thread_coming_during_a_release_blocks_on_the_mutex_and_costs_the_releaser_a_wake_up():
    from experiments.model import Gil, Sim, Timeout, WakeCosts

    sim = Sim()
    gil = Gil(sim, WakeCosts([(1e-6, 2.0, 10.0)]))
    ran, extra = {}, {}

    def holder():
        yield gil.acquire()
        ran["a"] = sim.now
        yield Timeout(5.0)
        gil.start_signal()                       # b sleeps: waking it takes 5..7
        yield Timeout(gil.signal_cost())
        extra["a"] = gil.release()

    def thread(name, start, hold):
        yield Timeout(start)
        yield gil.acquire()
        ran[name] = sim.now
        yield Timeout(hold)
        gil.release()

    sim.process(holder())
    sim.process(thread("b", 1.0, 1.0))      # condition variable: runs 10 after the signal began
    sim.process(thread("c", 6.0, 1.0))      # came during the signal: the mutex, woken at 7
    sim.run()
    assert extra["a"] == 2.0                     # the releaser pays c's wake-up too
    assert ran == {"a": 0.0, "b": 15.0, "c": 17.0}


def test_wake_latency_is_drawn_from_the_measured_spread_of_the_nearest_sleep_length():
    import random

    from experiments.model import WakeCosts

    spread = (10.0, 20.0, 30.0, 40.0, 50.0)
    wake = WakeCosts([(1e-6, 1.0, spread), (1e-3, 7.0, tuple(10 * v for v in spread))], random.Random(3))
    draws = sorted(wake.latency(2e-6) for _ in range(2000))
    assert 10.0 <= draws[0] and draws[-1] <= 50.0
    assert draws[1000] == pytest.approx(30.0, abs=2.0)
    assert wake.signal(2e-6) == 1.0 and wake.signal(5e-4) == 7.0
    assert 100.0 <= wake.latency(5e-3) <= 500.0
    assert not WakeCosts() and WakeCosts().latency(1.0) == 0.0


def test_stealing_balances_what_hash_placement_piles_on_one_worker():
    # The default color lives on worker 0, and hashing also puts half the connections there:
    # worker 0 carries F per request (serial) + F for half the requests -> R <= 1 / (1.5 F).
    # Stealing spreads the connections' work: 2 F per request over 2 workers -> R close to 1 / F.
    common = dict(stages=request_stages(F, F, colored=True), cpus=2, gil=False, clients=4)
    hashed = rate(scheduler="hash", **common)
    stolen = rate(scheduler="steal", **common)
    assert hashed == pytest.approx(1 / (1.5 * F), rel=0.1)
    assert stolen > hashed * 1.2


def test_same_seed_same_answer_and_seed_matters():
    cfg = dict(stages=conn_stages(H, F), cpus=3, clients=7, requests=300, warmup=30)
    assert simulate(Config(seed=5, **cfg)).throughput == simulate(Config(seed=5, **cfg)).throughput
    assert simulate(Config(seed=5, **cfg)).throughput != simulate(Config(seed=6, **cfg)).throughput


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError):
        simulate(Config(stages=conn_stages(H, F), cpus=0))
    with pytest.raises(ValueError):
        simulate(Config(stages=conn_stages(H, F), cpus=1, scheduler="random"))
    with pytest.raises(RuntimeError):
        simulate(Config(stages=(Stage("conn", 0.0, 0.0),), cpus=1, requests=10, warmup=1))


def test_gil_bound_threads_pay_a_wake_up_per_pass():
    # GIL-bound threads on 8 CPUs: each release wakes a sleeper, which costs the releaser the
    # waker's cost with the GIL still held (20 µs here), so a pass costs at least H + 20 µs
    free = rate(stages=conn_stages(H, F), cpus=8, clients=32)
    taxed = rate(stages=conn_stages(H, F), cpus=8, clients=32, wake_costs=WAKE)
    assert free == pytest.approx(1 / H, rel=0.05)
    assert taxed <= 1 / (H + 20e-6) * 1.05
    assert taxed < free * 0.9


def test_taking_the_gil_from_another_thread_costs_the_measured_switch_time():
    # GIL-bound threads on 8 CPUs take the GIL from one another on every pass: each pass costs
    # H plus the switch time. One thread (one color) keeps it and pays nothing extra, and neither
    # does a single CPU (the 1-CPU time already holds whatever it costs there) nor the
    # free-threaded build (no GIL to move).
    S = H / 4
    bound = dict(stages=conn_stages(H, F), cpus=8, clients=32)
    assert rate(switch_s=S, **bound) == pytest.approx(1 / (H + S), rel=0.05)
    assert rate(**bound) == pytest.approx(1 / H, rel=0.05)
    serial = dict(stages=request_stages(H, F, colored=False), cpus=2)
    assert rate(switch_s=S, **serial) == pytest.approx(rate(**serial), rel=0.01)
    one = dict(stages=conn_stages(H, F), cpus=1)
    assert rate(switch_s=S, **one) == pytest.approx(rate(**one), rel=0.01)
    nogil = dict(stages=conn_stages(H, F), cpus=4, clients=32, gil=False)
    assert rate(switch_s=S, **nogil) == pytest.approx(rate(**nogil), rel=0.01)


def test_colored_crypto_callback_holds_the_gil_for_its_dispatch():
    stages = request_stages(H, F, colored=True, dispatch_s=5e-6)
    assert [(s.color, s.held_s, s.free_s) for s in stages] == [("serial", H - 5e-6, 0.0), ("conn", 5e-6, F)]


def test_an_fd_event_runs_on_its_connections_color_in_pieces_between_socket_calls():
    from experiments.model import event_stages

    stages = event_stages(30e-6, 10e-6, calls=2)
    assert [s.color for s in stages] == ["conn", "conn"]      # its own worker polls it: no loop hop
    assert sum(s.held_s for s in stages) == pytest.approx(30e-6)
    assert sum(s.free_s for s in stages) == pytest.approx(10e-6)
    # with costly wake-ups, more GIL pieces per request cost more on several threads, nothing on one
    one = rate(stages=stages, cpus=1, wake_costs=WAKE)
    assert one == pytest.approx(1 / 40e-6, rel=0.05)
    pieces = rate(stages=stages, cpus=2, clients=16, wake_costs=WAKE)
    whole = rate(stages=conn_stages(30e-6, 10e-6), cpus=2, clients=16, wake_costs=WAKE)
    assert pieces < whole


def test_validation_uses_the_client_cost_measured_at_each_shared_point():
    from experiments.model_fit import Case, validate

    case = Case(app="web", python="3.11", config="colorloop colors_off", mode="colors_off",
                held_s=H / 10, free_s=0.0, clients=8, client_s=1e-6, client_threads=2,
                measured=[{"cpus": 1, "median": 1.0, "min": 1.0, "max": 1.0, "disjoint": True,
                           "client_s": 1e-6},
                          {"cpus": 2, "median": 1.0, "min": 1.0, "max": 1.0, "disjoint": False,
                           "client_s": 4 * H}])
    one, two = validate([case], cpus_allowed=2)
    assert one["client_s"] == 1e-6 and two["client_s"] == 4 * H
    # 2 wrk threads each spending 4 H per reply on the shared CPUs bound the rate at 2 / (4 H)
    assert two["modelled"] == pytest.approx(2 / (4 * H), rel=0.1)


def test_simulating_many_configurations_at_once_gives_each_its_own_answer_in_order():
    from experiments.model_fit import simulate_many

    configs = [Config(stages=conn_stages(10e-6, 5e-6 * (i % 4)), cpus=1 + i % 3, clients=4,
                      requests=300, warmup=30, seed=i) for i in range(20)]
    assert simulate_many(configs) == [simulate(cfg).throughput for cfg in configs]
    assert len(set(simulate_many(configs))) > 5     # distinct configurations, distinct answers
