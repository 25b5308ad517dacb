"""The paper's guarantee under stress: per color, callbacks run exactly once, never overlap, in order.

Callbacks are scheduled from several threads in random order, on both schedulers, with even and
skewed color loads. Each callback checks a per-color in-flight counter on entry (mutual exclusion)
and appends itself to its color's trace; the test compares every trace with the exact order in
which the producers enqueued (they record it under a lock that also covers call_soon).
"""
import hashlib
import random
import socket
import threading

import pytest

import runtime

PRODUCERS = 4


class Recorder:
    """Per-color expected order, observed order and in-flight counters."""

    def __init__(self):
        self.lock = threading.Lock()
        self.expected = {}
        self.observed = {}
        self.in_flight = {}
        self.overlaps = []
        self.threads_seen = {}

    def enter(self, color, token):
        with self.lock:
            n = self.in_flight.get(color, 0) + 1
            self.in_flight[color] = n
            if n > 1:
                self.overlaps.append((color, token))
            self.observed.setdefault(color, []).append(token)
            self.threads_seen.setdefault(color, set()).add(threading.get_ident())

    def leave(self, color):
        with self.lock:
            self.in_flight[color] -= 1


def run_stress(scheduler, workers, colors, per_producer, seed, skew=False):
    rng = random.Random(seed)
    rec = Recorder()
    total = PRODUCERS * per_producer
    done = threading.Event()
    counter = [0]
    count_lock = threading.Lock()
    payload = b"x" * 4096

    def callback(color, token):
        rec.enter(color, token)
        # Work that releases the GIL, so that two workers really can be inside at once.
        hashlib.sha256(payload).digest()
        rec.leave(color)
        with count_lock:
            counter[0] += 1
            if counter[0] == total:
                done.set()

    if skew:
        # Most callbacks on a few hot colors that all hash to worker 0, as in a server whose
        # busy connections happen to share a home worker: the case work stealing exists for.
        weights = [50 if i % workers == 0 and i < 3 * workers else 1 for i in range(colors)]
    else:
        weights = [1] * colors
    plans = [[rng.choices(range(colors), weights)[0] for _ in range(per_producer)]
             for _ in range(PRODUCERS)]

    loop = runtime.Loop(workers=workers, scheduler=scheduler)
    start = threading.Barrier(PRODUCERS + 1)

    def producer(p):
        start.wait()
        for i, color in enumerate(plans[p]):
            token = (p, i)
            with rec.lock:
                rec.expected.setdefault(color, []).append(token)
                loop.call_soon(callback, color, token, color=color)

    threads = [threading.Thread(target=producer, args=(p,)) for p in range(PRODUCERS)]
    for t in threads:
        t.start()
    watcher = threading.Thread(target=lambda: (done.wait(60), loop.stop()))
    watcher.start()
    start.wait()
    loop.run()
    for t in threads + [watcher]:
        t.join()
    stats = loop.stats()
    loop.close()
    return rec, total, counter[0], stats


@pytest.mark.parametrize("scheduler", ["hash", "steal"])
@pytest.mark.parametrize("skew", [False, True], ids=["even", "skewed"])
def test_each_color_serial_ordered_exactly_once(scheduler, skew):
    rec, total, ran, stats = run_stress(scheduler, workers=4, colors=37, per_producer=1500,
                                        seed=hash((scheduler, skew)) & 0xFFFF, skew=skew)
    assert ran == total
    assert stats["callbacks"] >= total
    assert rec.overlaps == []
    assert set(rec.observed) == set(rec.expected)
    for color, expected in rec.expected.items():
        assert rec.observed[color] == expected, f"color {color} ran out of order"


def test_stealing_moves_whole_colors_and_keeps_them_serial():
    """Skewed load on one worker: the others steal, yet no color runs on two workers at once."""
    rec, total, ran, stats = run_stress("steal", workers=3, colors=24, per_producer=1000,
                                        seed=7, skew=True)
    assert ran == total
    assert rec.overlaps == []
    for color, expected in rec.expected.items():
        assert rec.observed[color] == expected
    assert stats["steals"] > 0


def test_hash_placement_never_steals_and_keeps_a_color_on_one_thread():
    rec, total, ran, stats = run_stress("hash", workers=3, colors=24, per_producer=500, seed=3)
    assert ran == total
    assert stats["steals"] == 0
    assert all(len(threads) == 1 for threads in rec.threads_seen.values())


@pytest.mark.parametrize("scheduler", ["hash", "steal"])
def test_fd_stress_each_connection_read_in_order_by_one_callback_at_a_time(scheduler):
    """Readers on many colors, polled by the workers that own their colors: writers on other
    threads send numbered records in random bursts; every stream must arrive whole and in order,
    and no reader may overlap itself or another callback of its color (a timer of the same color
    pokes at the same state meanwhile)."""
    workers, conns, records = 4, 48, 150
    rng = random.Random(2003)
    loop = runtime.Loop(workers=workers, scheduler=scheduler)
    rec = Recorder()
    pairs = [socket.socketpair() for _ in range(conns)]
    got = [bytearray() for _ in range(conns)]
    expected = [b"".join(b"%d:%d;" % (i, n) for n in range(records)) for i in range(conns)]
    finished = threading.Event()
    left = [conns]
    left_lock = threading.Lock()

    def on_readable(i):
        color = ("conn", i)
        rec.enter(color, "read")
        try:
            data = pairs[i][0].recv(rng.choice((7, 64, 4096)))
        except BlockingIOError:
            data = None
        if data:
            hashlib.sha256(data * 64).digest()          # release the GIL inside the callback
            got[i] += data
            if len(got[i]) == len(expected[i]):
                loop.remove_reader(pairs[i][0])
                with left_lock:
                    left[0] -= 1
                    if left[0] == 0:
                        finished.set()
        rec.leave(color)

    def tick(i):
        rec.enter(("conn", i), "tick")
        rec.leave(("conn", i))

    for i, (a, _) in enumerate(pairs):
        a.setblocking(False)
        loop.add_reader(a, on_readable, i, color=("conn", i))
        loop.call_every(0.001, tick, i, color=("conn", i))

    def writer(k):
        order = list(range(k, conns, 4))
        pos = {i: 0 for i in order}
        while order:
            i = rng.choice(order)
            burst = expected[i][pos[i]:pos[i] + rng.choice((1, 5, 40, 300))]
            pairs[i][1].sendall(burst)
            pos[i] += len(burst)
            if pos[i] == len(expected[i]):
                order.remove(i)

    writers = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in writers:
        t.start()
    watcher = threading.Thread(target=lambda: (finished.wait(60), loop.stop()))
    watcher.start()
    loop.run()
    for t in writers + [watcher]:
        t.join()
    loop.close()
    for a, b in pairs:
        a.close()
        b.close()
    assert finished.is_set(), f"{left[0]} connections still incomplete"
    assert rec.overlaps == []
    assert [bytes(g) for g in got] == expected
