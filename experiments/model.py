"""A discrete-event model of the colored scheduler, to predict CPU counts this machine does not have.

We can measure 1 and 2 CPUs here; the paper's claims are about 4. The model keeps only what the
measurements can give it: each request is a short chain of callbacks, each callback has a part that
holds the GIL (`held_s`: interpreter work) and a part that does not (`free_s`: cipher, MAC, hash,
syscalls), callbacks of one color run one at a time, `workers` threads share `cpus` CPUs, and one
global lock stands for the GIL (absent on the free-threaded build, and private to each process in
the N-copy configuration). Closed-loop clients issue the next request when the previous reply is
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


class Store:
    """An unbounded FIFO queue whose `get` blocks the process until an item is there."""

    def __init__(self, sim: Sim) -> None:
        self.sim, self.items, self.getters = sim, deque(), deque()

    def put(self, item) -> None:
        if self.getters:
            resume = self.getters.popleft()
            self.sim.at(0.0, lambda: resume(item))
        else:
            self.items.append(item)

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
            self.store.getters.append(resume)


class _NoLock:
    """The free-threaded build: GIL-held parts need no global lock."""

    def acquire(self):
        return Timeout(0.0)

    def release(self) -> None:
        pass


# --------------------------------------------------------------------------------------------
# The colored server.


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
    gil_switch_s: float = 0.0          # extra GIL-held time when the GIL passes to another thread
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
    servers = [_Server(sim, cpu, cfg.gil, workers, cfg.scheduler, jittered, busy, cfg.gil_switch_s)
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

    def __init__(self, sim, cpu, gil, workers, scheduler, jittered, busy, gil_switch_s=0.0) -> None:
        self.sim, self.cpu, self.jittered, self.busy = sim, cpu, jittered, busy
        self.gil = Resource(sim, 1) if gil else _NoLock()
        # Handing the GIL to a thread that waits for it costs a wake-up on another core and cold
        # caches: measured by experiments.gil_handoff, charged while the GIL is held.
        self.gil_switch_s = gil_switch_s if gil else 0.0
        self.last_holder = None
        self.scheduler = scheduler
        self.workers = workers
        self.color_ids: dict = {}
        if scheduler == "hash":
            self.queues = [Store(sim) for _ in range(workers)]
        else:
            self.runnable = Store(sim)
            self.pending: dict = {}      # color -> deque of callbacks not yet started
            self.active: set = set()     # colors queued in `runnable` or running
        for wid in range(workers):
            sim.process(self._worker(wid))

    def submit(self, cid, stages, reply) -> None:
        self._enqueue(_Callback(cid, stages, 0, reply))

    def _color(self, cb: "_Callback"):
        return 0 if cb.stage.color == "serial" else ("conn", cb.cid)

    def _enqueue(self, cb: "_Callback") -> None:
        color = self._color(cb)
        if self.scheduler == "hash":
            # Colors are numbered in order of first use, so connections spread evenly over workers
            # and the serial color lands on worker 0, as a good hash would place them.
            index = self.color_ids.setdefault(color, len(self.color_ids))
            self.queues[index % self.workers].put(cb)
            return
        self.pending.setdefault(color, deque()).append(cb)
        if color not in self.active:
            self.active.add(color)
            self.runnable.put(color)

    def _worker(self, wid: int) -> Iterator:
        while True:
            if self.scheduler == "hash":
                cb = yield self.queues[wid].get()
                color = None
            else:
                color = yield self.runnable.get()
                cb = self.pending[color].popleft()
            yield from self._run(cb, wid)
            if color is not None:
                if self.pending[color]:
                    self.runnable.put(color)
                else:
                    self.active.discard(color)
            nxt = cb.index + 1
            if nxt < len(cb.stages):
                self._enqueue(_Callback(cb.cid, cb.stages, nxt, cb.reply))
            else:
                cb.reply.put(True)

    def _run(self, cb: "_Callback", wid: int) -> Iterator:
        stage = cb.stage
        if stage.held_s > 0:
            # Only a contended hand-off costs a wake-up: a thread that finds the GIL free takes it
            # (with colors off, the default color may move between workers at no such cost).
            contended = isinstance(self.gil, Resource) and self.gil.free == 0
            yield self.gil.acquire()
            yield self.cpu.acquire()
            d = self.jittered(stage.held_s)
            if contended and self.last_holder is not None and self.last_holder != wid:
                d += self.gil_switch_s
            self.last_holder = wid
            yield Timeout(d)
            self.cpu.release()
            self.gil.release()
            self.busy["gil"] += d
            self.busy["cpu"] += d
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


def event_stages(held_s: float, free_s: float, dispatch_s: float, calls: int = 2) -> tuple[Stage, ...]:
    """A request that arrives as an fd event: the loop thread (the default color) polls and
    dispatches it, then the connection's color runs it, releasing the GIL at each of its `calls`
    socket calls (the web server: recv, then send). Every release is a chance for another thread
    to take the GIL, so the request is `calls` GIL-holding pieces after the dispatch."""
    dispatch_s = min(dispatch_s, held_s)
    rest = held_s - dispatch_s
    calls = max(1, calls)
    return ((Stage("serial", dispatch_s, 0.0),) if dispatch_s > 0 else ()) + tuple(
        Stage("conn", rest / calls, free_s / calls) for _ in range(calls))
