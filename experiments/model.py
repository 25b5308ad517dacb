"""A discrete-event model of the colored scheduler, to predict CPU counts this machine does not have.

We can measure 1 and 2 CPUs here; the paper's claims are about 4. The model keeps only what the
measurements can give it: each request is a short chain of callbacks, each callback has a part that
holds the GIL (`held_s`: interpreter work) and a part that does not (`free_s`: cipher, MAC, hash,
syscalls), callbacks of one color run one at a time, `workers` threads share `cpus` CPUs, and one
global lock stands for the GIL (absent on the free-threaded build, and private to each process in
the N-copy configuration). Waking a sleeping thread on another CPU (a GIL waiter, an idle worker)
costs the waker time and the sleeper a latency, both as measured on this machine
(experiments.gil_handoff): on a VM whose idle vCPUs halt, that price decides how far short
callbacks scale. A thread that takes the GIL from a thread on another CPU also does its
interpreter work more slowly at first (the state the other thread wrote must cross between the
CPUs' caches): that measured switch time is added to the held part (`switch_s`). Closed-loop clients issue the next request when the previous reply is
in and their own per-reply work (`client_s`) is done; that work runs on the server's CPUs when the
load generator has none of its own, exactly as in the measured runs, and on at most
`client_threads` CPUs at once (the SFS load generator skims every connection in one thread, wrk
runs two threads), so that many connections do not count as many CPUs of client work.

Everything here is modelled, not measured: figures draw it dashed and label it "modelled".
Pure Python and deterministic for a given seed (durations get a seeded +-jitter so that
identical callbacks do not march in lockstep).
"""
from __future__ import annotations

import heapq
import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator

# --------------------------------------------------------------------------------------------
# A minimal process-oriented simulator: processes are generators that yield commands.


class Sim:
    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self.stopped = False

    def at(self, delay: float, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (self.now + delay, self._seq, fn))

    def process(self, gen: Iterator) -> None:
        self.at(0.0, lambda: self._step(gen, None))

    def _step(self, gen: Iterator, value) -> None:
        try:
            command = gen.send(value)
        except StopIteration:
            return
        command.start(self, lambda v=None: self._step(gen, v))

    def run(self) -> None:
        while self._heap and not self.stopped:
            self.now, _, fn = heapq.heappop(self._heap)
            fn()


class Timeout:
    def __init__(self, delay: float) -> None:
        self.delay = delay

    def start(self, sim: Sim, resume) -> None:
        sim.at(self.delay, resume)


class Resource:
    """`capacity` identical units handed out first come, first served (a lock when capacity is 1)."""

    def __init__(self, sim: Sim, capacity: int) -> None:
        self.sim, self.free, self.waiters = sim, capacity, deque()

    def acquire(self) -> "_Acquire":
        return _Acquire(self)

    def release(self) -> None:
        if self.waiters:
            self.sim.at(0.0, self.waiters.popleft())
        else:
            self.free += 1


class _Acquire:
    def __init__(self, resource: Resource) -> None:
        self.resource = resource

    def start(self, sim: Sim, resume) -> None:
        if self.resource.free > 0:
            self.resource.free -= 1
            sim.at(0.0, resume)
        else:
            self.resource.waiters.append(resume)


class WakeCosts:
    """What waking a sleeping thread on another CPU costs: the waker's time (`signal`) and the time
    until the sleeper runs (`latency`), both as measured functions of how long the sleeper has
    slept (a vCPU idle for long is woken through the hypervisor, dearer than one just idled).

    `points` are (slept_s, signal_s, latency) with latency either seconds or the measured
    quantiles (5, 25, 50, 75, 95 %) of its spread, from which each wake-up draws its own value:
    whether a woken thread arrives before the GIL is taken again is a race, and its odds depend on
    that spread. Between measured sleep lengths the nearer one is used; none: wake-ups are free."""

    QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)

    def __init__(self, points=(), rng: random.Random | None = None) -> None:
        self.points = sorted(points, key=lambda p: p[0])
        self.rng = rng or random.Random(0)

    def __bool__(self) -> bool:
        return bool(self.points)

    def _nearest(self, slept: float):
        return min(self.points, key=lambda p: abs(math.log(max(slept, 1e-9) / p[0])))

    def signal(self, slept: float) -> float:
        return self._nearest(slept)[1] if self.points else 0.0

    def latency(self, slept: float) -> float:
        if not self.points:
            return 0.0
        spread = self._nearest(slept)[2]
        if isinstance(spread, (int, float)):
            return float(spread)
        u = self.rng.uniform(self.QUANTILES[0], self.QUANTILES[-1])
        for (q0, v0), (q1, v1) in zip(zip(self.QUANTILES, spread), zip(self.QUANTILES[1:], spread[1:])):
            if u <= q1:
                return v0 + (u - q0) / (q1 - q0) * (v1 - v0)
        return float(spread[-1])


class Store:
    """An unbounded FIFO queue whose `get` blocks the process until an item is there.

    A process that had to wait is asleep. A `put` wakes the longest sleeper, which runs after the
    wake-up latency and takes the oldest item if one is left; if another process took it
    meanwhile (as an idle colorloop worker may find its work stolen), it sleeps again."""

    def __init__(self, sim: Sim, wake: WakeCosts | None = None) -> None:
        self.sim, self.items, self.getters = sim, deque(), deque()
        self.wake = wake or WakeCosts()

    def put(self, item, wake_sleeper: bool = True) -> float:
        """Queue `item`; if that wakes a sleeping getter, the waker's cost of it, else 0.
        `wake_sleeper=False` leaves it for whoever asks next (a worker putting back its own color)."""
        self.items.append(item)
        if not (wake_sleeper and self.getters):
            return 0.0
        resume, since = self.getters.popleft()
        slept = self.sim.now - since
        self.sim.at(self.wake.latency(slept), lambda: self._take_or_sleep(resume))
        return self.wake.signal(slept)

    def _take_or_sleep(self, resume) -> None:
        if self.items:
            resume(self.items.popleft())
        else:
            self.getters.append((resume, self.sim.now))

    def get(self) -> "_Get":
        return _Get(self)


class _Get:
    def __init__(self, store: Store) -> None:
        self.store = store

    def start(self, sim: Sim, resume) -> None:
        if self.store.items:
            item = self.store.items.popleft()
            sim.at(0.0, lambda: resume(item))
        else:
            self.store.getters.append((resume, sim.now))


class Gil:
    """CPython 3.11's GIL as a machine with costly cross-CPU wake-ups runs it.

    A thread that finds the GIL free takes it at once, even ahead of a thread already woken for
    it; a thread that finds it held goes to sleep on its condition variable. Releasing it while a
    thread sleeps means waking that thread: the releaser pays the waker's cost while it holds the
    GIL's mutex, and the sleeper runs after the wake-up latency, to find the GIL free, or taken
    again and sleep once more. A thread that comes for the GIL during that signal blocks on the
    mutex, so the releaser must wake it too once the signal is done (no longer holding the GIL).
    Both costs are measured (experiments.gil_handoff)."""

    def __init__(self, sim: Sim, wake: WakeCosts | None = None) -> None:
        self.sim, self.wake = sim, wake or WakeCosts()
        self.locked = False
        self.last_holder = None                 # the thread that held it last (CPython: last_holder)
        self.signalling = False
        self.signal_started = 0.0
        self.sleepers: deque = deque()          # (resume, asleep since) on the condition variable
        self.mutex_sleepers: deque = deque()    # blocked on the mutex during a signal

    def acquire(self) -> "_TakeGil":
        return _TakeGil(self)

    def signal_cost(self) -> float:
        """What releasing now would cost the releaser: waking the longest sleeper, if any."""
        return self.wake.signal(self.sim.now - self.sleepers[0][1]) if self.sleepers else 0.0

    def start_signal(self) -> None:
        self.signalling = True
        self.signal_started = self.sim.now

    def release(self) -> float:
        """Unlock and wake one sleeper, if any; returns what waking the threads blocked on the
        mutex meanwhile still costs the releaser."""
        signalled = self.sim.now - self.signal_started if self.signalling else 0.0
        self.locked = self.signalling = False
        if self.sleepers:
            woken, since = self.sleepers.popleft()
            # the measured latency runs from the start of the waker's signal, not its end
            slept = self.sim.now - signalled - since
            self.sim.at(max(0.0, self.wake.latency(slept) - signalled), lambda w=woken: self._take_or_sleep(w))
        cost = 0.0
        while self.mutex_sleepers:               # woken one after another, each from its signal's start
            woken, since = self.mutex_sleepers.popleft()
            slept = self.sim.now - since
            self.sim.at(cost + self.wake.latency(slept), lambda w=woken: self._take_or_sleep(w))
            cost += self.wake.signal(slept)
        return cost

    def _try_take(self, resume) -> bool:
        """Take the GIL if it is free; else put `resume` to sleep where it would block: on the
        mutex during a signal, on the condition variable otherwise."""
        if self.signalling or self.locked:
            (self.mutex_sleepers if self.signalling else self.sleepers).append((resume, self.sim.now))
            return False
        self.locked = True
        return True

    def _take_or_sleep(self, resume) -> None:
        if self._try_take(resume):
            resume()


class _TakeGil:
    def __init__(self, gil: Gil) -> None:
        self.gil = gil

    def start(self, sim: Sim, resume) -> None:
        if self.gil._try_take(resume):
            sim.at(0.0, resume)


class _NoLock:
    """The free-threaded build: GIL-held parts need no global lock."""

    last_holder = None

    def acquire(self):
        return Timeout(0.0)

    def signal_cost(self) -> float:
        return 0.0

    def start_signal(self) -> None:
        pass

    def release(self) -> float:
        return 0.0


# --------------------------------------------------------------------------------------------
# The colored server.

STREAK = 16         # callbacks of one color a worker runs in a row (runtime.scheduler.STREAK)


@dataclass(frozen=True)
class Stage:
    """One callback of a request: `color` is "serial" (the default color 0) or "conn" (the client's)."""

    color: str
    held_s: float
    free_s: float = 0.0


@dataclass(frozen=True)
class Config:
    stages: tuple[Stage, ...]          # the callbacks every request runs through, in order
    cpus: int                          # CPUs the server may use
    workers: int | None = None         # worker threads per server process (default: cpus)
    processes: int = 1                 # N-copy: independent single-loop processes, own GIL each
    gil: bool = True                   # False: the free-threaded build
    clients: int = 8                   # closed-loop clients (connections), one color each
    depth: int = 1                     # requests each client keeps outstanding (pipelining)
    client_s: float = 0.0              # client CPU time per reply
    client_cpus: int = 0               # CPUs of the load generator; 0 = shares the server's
    client_threads: int = 0            # threads doing the client work; 0 = one per connection
    scheduler: str = "hash"            # "hash": color -> one worker's queue; "steal": any idle worker
    requests: int = 3000               # replies to count after warm-up
    warmup: int = 300
    wake_costs: tuple = ()             # (slept_s, waker's cost s, latency s) of cross-CPU wake-ups
    switch_s: float = 0.0              # GIL-held time added when the GIL was last held by another thread
    jitter: float = 0.2                # durations are uniform in [1-jitter, 1+jitter] x nominal
    seed: int = 1


@dataclass
class Result:
    throughput: float                  # replies per second of simulated time
    gil_busy: float                    # fraction of time the (first) GIL was held
    cpu_busy: float                    # mean fraction of the server CPUs busy
    extra: dict = field(default_factory=dict)


def simulate(cfg: Config) -> Result:
    """Run the model to `warmup + requests` replies and return the steady-state throughput."""
    if cfg.cpus < 1 or cfg.clients < 1 or cfg.requests < 1:
        raise ValueError(f"need cpus, clients and requests >= 1: {cfg}")
    if cfg.scheduler not in ("hash", "steal"):
        raise ValueError(f"unknown scheduler {cfg.scheduler!r}")
    sim = Sim()
    rng = random.Random(cfg.seed)
    cpu = Resource(sim, cfg.cpus)
    client_cpu = Resource(sim, cfg.client_cpus) if cfg.client_cpus > 0 else cpu
    client_threads = Resource(sim, cfg.client_threads) if cfg.client_threads > 0 else None
    busy = {"gil": 0.0, "cpu": 0.0}

    def jittered(nominal: float) -> float:
        if nominal <= 0.0:
            return 0.0
        return nominal * rng.uniform(1.0 - cfg.jitter, 1.0 + cfg.jitter)

    workers = cfg.workers or cfg.cpus
    # On one CPU every wake-up is local, and what it costs is inside the measured 1-CPU service
    # time; with more, a sleeping thread is woken across CPUs, at the measured cost.
    wake = WakeCosts(cfg.wake_costs if cfg.cpus > 1 else (), rng)
    # Likewise, a thread taking the GIL from a thread on another CPU first pulls the interpreter
    # state that thread wrote into its own caches: measured as the longer GIL-held work then.
    switch_s = cfg.switch_s if cfg.cpus > 1 and cfg.gil else 0.0
    servers = [_Server(sim, cpu, cfg.gil, workers, cfg.scheduler, jittered, busy, wake, switch_s)
               for _ in range(max(1, cfg.processes))]

    done = {"n": 0, "t0": None}
    total = cfg.warmup + cfg.requests

    def client(cid: int) -> Iterator:
        server = servers[cid % len(servers)]
        while not sim.stopped:
            reply = Store(sim)
            server.submit(cid, cfg.stages, reply)
            yield reply.get()
            if cfg.client_s > 0:
                if client_threads is not None:
                    yield client_threads.acquire()
                yield client_cpu.acquire()
                yield Timeout(jittered(cfg.client_s))
                client_cpu.release()
                if client_threads is not None:
                    client_threads.release()
            done["n"] += 1
            if done["n"] == cfg.warmup:
                done["t0"] = sim.now
                busy["gil"] = busy["cpu"] = 0.0
            if done["n"] >= total:
                sim.stopped = True

    for cid in range(cfg.clients):
        for _ in range(max(1, cfg.depth)):
            sim.process(client(cid))
    sim.run()
    t0 = done["t0"] if done["t0"] is not None else 0.0
    elapsed = sim.now - t0
    if elapsed <= 0:
        raise RuntimeError("the model made no progress: every stage has zero cost")
    return Result(throughput=cfg.requests / elapsed,
                  gil_busy=busy["gil"] / elapsed,
                  cpu_busy=busy["cpu"] / (elapsed * cfg.cpus))


class _Server:
    """One server process: `workers` threads, colors placed by hash or taken by idle workers."""

    def __init__(self, sim, cpu, gil, workers, scheduler, jittered, busy,
                 wake: WakeCosts | None = None, switch_s: float = 0.0) -> None:
        self.sim, self.cpu, self.jittered, self.busy = sim, cpu, jittered, busy
        self.switch_s = switch_s
        # Waking an idle worker (colorloop releases the lock it sleeps on) costs the waker the
        # same as a GIL hand-off, with the GIL held; the worker runs after the same latency.
        self.gil = Gil(sim, wake) if gil else _NoLock()
        self.scheduler = scheduler
        self.workers = workers
        self.color_ids: dict = {}
        if scheduler == "hash":
            self.queues = [Store(sim, wake) for _ in range(workers)]
        else:
            self.runnable = Store(sim, wake)
            self.pending: dict = {}      # color -> deque of callbacks not yet started
            self.active: set = set()     # colors queued in `runnable` or running
        for wid in range(workers):
            sim.process(self._worker(wid))

    def submit(self, cid, stages, reply) -> None:
        self._enqueue(_Callback(cid, stages, 0, reply))

    def _color(self, cb: "_Callback"):
        return 0 if cb.stage.color == "serial" else ("conn", cb.cid)

    def _enqueue(self, cb: "_Callback") -> float:
        """Queue `cb` by its color; what waking a sleeping worker for it costs (0: none asleep)."""
        color = self._color(cb)
        if self.scheduler == "hash":
            # Colors are numbered in order of first use, so connections spread evenly over workers
            # and the serial color lands on worker 0, as a good hash would place them.
            index = self.color_ids.setdefault(color, len(self.color_ids))
            return self.queues[index % self.workers].put(cb)
        self.pending.setdefault(color, deque()).append(cb)
        if color not in self.active:
            self.active.add(color)
            return self.runnable.put(color)
        return 0.0

    def _worker(self, wid: int) -> Iterator:
        color, streak = None, 0
        while True:
            if self.scheduler == "hash":
                cb = yield self.queues[wid].get()
                color = None
            elif color is None or not self.pending[color] or streak >= STREAK:
                if color is not None and self.pending[color]:
                    self.runnable.put(color, wake_sleeper=False)  # its streak is over: others' turn
                color, streak = (yield self.runnable.get()), 0
            # a color with more work stays on its worker for up to STREAK callbacks, as in
            # colorloop's scheduler: no wake-up, no hand-off
            if color is not None:
                cb = self.pending[color].popleft()
                streak += 1
            yield from self._run(cb, wid)
            signal = 0.0
            if color is not None and not self.pending[color]:
                self.active.discard(color)
                color = None
            nxt = cb.index + 1
            if nxt < len(cb.stages):
                signal = self._enqueue(_Callback(cb.cid, cb.stages, nxt, cb.reply))
            else:
                cb.reply.put(True)
            if signal > 0:
                yield from self._hold_gil(signal, wid)

    def _hold_gil(self, seconds: float, wid: int) -> Iterator:
        """GIL-held work of `seconds` on a CPU, longer if another thread held the GIL last;
        waking the next GIL sleeper is charged at release."""
        yield self.gil.acquire()
        yield self.cpu.acquire()
        d = seconds
        if self.gil.last_holder not in (None, wid):
            d += self.switch_s
        self.gil.last_holder = wid
        yield Timeout(d)
        signal = self.gil.signal_cost()
        if signal > 0:
            self.gil.start_signal()
            yield Timeout(signal)
            d += signal
        self.busy["gil"] += d
        blocked = self.gil.release()
        if blocked > 0:
            yield Timeout(blocked)
            d += blocked
        self.cpu.release()
        self.busy["cpu"] += d

    def _run(self, cb: "_Callback", wid: int) -> Iterator:
        stage = cb.stage
        if stage.held_s > 0:
            yield from self._hold_gil(self.jittered(stage.held_s), wid)
        if stage.free_s > 0:
            yield self.cpu.acquire()
            d = self.jittered(stage.free_s)
            yield Timeout(d)
            self.cpu.release()
            self.busy["cpu"] += d


@dataclass(frozen=True)
class _Callback:
    cid: int
    stages: tuple
    index: int
    reply: Store

    @property
    def stage(self) -> Stage:
        return self.stages[self.index]


# --------------------------------------------------------------------------------------------
# The configurations the experiments measure, expressed as stage chains.


def request_stages(held_s: float, free_s: float, colored: bool,
                   dispatch_s: float = 0.0) -> tuple[Stage, ...]:
    """A request whose interpreter work stays in the default color and whose GIL-free work is
    colored per connection (libasync-smp's SFS: crypto callbacks colored, the rest unchanged).
    Uncolored, both parts run in the default color, i.e. one at a time. Colored, the crypto
    callback is a second callback, which holds the GIL at least for its own dispatch."""
    if not colored:
        return (Stage("serial", held_s, free_s),)
    dispatch_s = min(dispatch_s, held_s)
    stages = []
    if held_s - dispatch_s > 0:
        stages.append(Stage("serial", held_s - dispatch_s, 0.0))
    stages.append(Stage("conn", dispatch_s, free_s))
    return tuple(stages)


def conn_stages(held_s: float, free_s: float) -> tuple[Stage, ...]:
    """A request handled entirely in its connection's color, as one callback."""
    return (Stage("conn", held_s, free_s),)


def event_stages(held_s: float, free_s: float, calls: int = 2) -> tuple[Stage, ...]:
    """A request that arrives as an fd event: the worker whose poller watches the connection (the
    home worker of its color) dispatches it to itself and runs it on the connection's color,
    releasing the GIL at each of its `calls` socket calls (the web server: recv, then send). Every
    release is a chance for another thread to take the GIL, so the request is `calls` GIL-holding
    pieces. (Before each worker polled its own fds, the loop thread dispatched every event: a
    serial stage of its own.)"""
    calls = max(1, calls)
    return tuple(Stage("conn", held_s / calls, free_s / calls) for _ in range(calls))
