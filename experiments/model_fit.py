"""From measured CSVs to model parameters, modelled points, and the per-point validation.

Every parameter is measured, at one CPU, per application and configuration (mode):
  service  1 / throughput at 1 CPU: the wall time one request/read/op takes the server when it has
           one CPU (it holds the overheads no profile sees: wake-ups, the loopback stack, the
           machine's other tenants); the 1-CPU points therefore calibrate and are marked so
  held_s   the share of it that holds the GIL, in the proportion measured by the profiles
           (server CPU outside crypto / outside socket calls / outside the GIL-releasing call)
  free_s   the rest (cipher+MAC, hash, socket calls): runs in parallel, less the part of each
           such call that still holds the GIL (arguments, its output buffer, the cache misses
           after it), measured with perf uprobes where they can be placed (experiments.gil_split)
  wake     what waking a thread on another CPU costs the waker, and how long until it runs
           (experiments.gil_handoff, measured apart): the GIL's hand-offs and idle workers' wake-ups
  switch_s the extra interpreter work of a thread that takes the GIL from a thread on another CPU
           (experiments.gil_handoff, measured apart: the same loop timed after such a hand-off
           and on one thread)
  client_s the load generator's CPU per reply, done by `client_threads` threads (SFS: one
           skimming thread; web: wrk's threads); each validated point gets the value measured at
           that point, since sharing the server's CPUs makes it dearer (context switches)
  clients, depth, scheduler: as the benchmark ran
No multi-CPU throughput is used to set a parameter. (A web CSV from before wrk's CPU time was
measured, `client_cpu_s_per_request`, lacks it; then wrk's cost is derived from the N-copy run on
all CPUs, that point is marked `calibration` in model_validation.csv, and the output says so.)
"""
from __future__ import annotations

import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace

import pandas as pd

from experiments import common
from experiments.model import Config, conn_stages, event_stages, request_stages, simulate

SFS_BYTES_PER_MB = 1e6          # apps.sfs_like.bench reports decimal megabytes per second
MODEL_REQUESTS = 2000           # replies simulated per point (after 200 of warm-up)
PREDICT_CPUS = list(range(1, 17))
# A QUICK run predicts fewer CPU counts: the curves' shape, for under half the simulation time.
QUICK_PREDICT_CPUS = [1, 2, 3, 4, 6, 8, 12, 16]


def predict_cpus(up_to: int = 16) -> list[int]:
    """The CPU counts a figure's modelled curves are predicted at, up to `up_to`."""
    chosen = QUICK_PREDICT_CPUS if common.quick() else PREDICT_CPUS
    return [k for k in chosen if k <= up_to]


@dataclass
class Case:
    """One configuration of one application on one interpreter, with its measured points."""

    app: str                      # "sfs", "web", "runtime"
    python: str
    config: str                   # human-readable: suite / block / mode / server ...
    mode: str                     # colors_off, colors_on, ncopy, distinct, single
    held_s: float
    free_s: float
    clients: int
    client_s: float = 0.0
    depth: int = 1                # requests in flight per connection
    client_threads: int = 0       # load-generator threads (0: one per connection)
    wake_costs: tuple = ()        # cross-CPU wake-ups: (slept_s, waker's s, latency quantiles) (gil_handoff)
    dispatch_s: float = 0.0       # GIL-held time of dispatching one callback (runtime_dispatch)
    switch_s: float = 0.0         # GIL-held time added after the GIL moved threads (gil_handoff)
    scheduler: str = "hash"       # the placement the measured server used
    unit: str = "replies/s"
    to_unit: float = 1.0          # measured unit per modelled reply/s
    baseline: str = ""            # config string of the case that defines speedup 1.0
    group: str = ""               # cases drawn in one panel share a group
    measured: list[dict] = field(default_factory=list)   # cpus, median, min, max, disjoint
    notes: list[str] = field(default_factory=list)
    calibration_cpus: set = field(default_factory=set)

    @property
    def gil(self) -> bool:
        return not self.python.endswith("t")

    def config_for(self, cpus: int, client_cpus: int, clients: int | None = None) -> Config:
        clients = clients or self.clients
        if self.mode in ("colors_on", "distinct"):
            if self.app == "sfs":
                stages = request_stages(self.held_s, self.free_s, colored=True, dispatch_s=self.dispatch_s)
            elif self.app == "web":
                stages = event_stages(self.held_s, self.free_s)
            else:
                stages = conn_stages(self.held_s, self.free_s)
            return Config(stages=stages, cpus=cpus, gil=self.gil, clients=clients,
                          client_s=self.client_s, client_cpus=client_cpus,
                          requests=MODEL_REQUESTS, warmup=MODEL_REQUESTS // 10)
        if self.mode == "ncopy":
            return Config(stages=conn_stages(self.held_s, self.free_s), cpus=cpus, workers=1,
                          processes=cpus, gil=True, clients=clients, client_s=self.client_s,
                          client_cpus=client_cpus, requests=MODEL_REQUESTS,
                          warmup=MODEL_REQUESTS // 10)
        # colors_off / single: everything in the default color, i.e. one callback at a time
        return Config(stages=request_stages(self.held_s, self.free_s, colored=False), cpus=cpus,
                      gil=self.gil, clients=clients, client_s=self.client_s,
                      client_cpus=client_cpus, requests=MODEL_REQUESTS,
                      warmup=MODEL_REQUESTS // 10)

    def full_config(self, cpus: int, client_cpus: int, clients: int | None = None,
                    client_threads: int | None = None) -> Config:
        return replace(self.config_for(cpus, client_cpus, clients), depth=self.depth,
                       scheduler=self.scheduler, wake_costs=self.wake_costs, switch_s=self.switch_s,
                       client_threads=self.client_threads if client_threads is None else client_threads)

    def modelled(self, cpus: int, client_cpus: int, clients: int | None = None,
                 client_threads: int | None = None) -> float:
        return simulate(self.full_config(cpus, client_cpus, clients, client_threads)).throughput * self.to_unit

    def predict_config(self, cpus: int) -> Config:
        """Beyond this machine: the load generator on CPUs of its own, as many as it can use (as
        the paper's client machines), and at least two connections per CPU so that colors are not
        what runs out."""
        clients = max(self.clients, 2 * cpus)
        return self.full_config(cpus, client_cpus=clients, clients=clients, client_threads=0)

    def predict(self, cpus: int) -> float:
        return simulate(self.predict_config(cpus)).throughput * self.to_unit


def simulate_many(configs: list[Config]) -> list[float]:
    """Throughput of each configuration. Each simulation is deterministic and independent of the
    others, so a long list is spread over this machine's CPUs (a plain CPU-bound step, run when no
    benchmark is): the same numbers, in about half the time on 2 CPUs."""
    jobs = min(len(configs) // 8, len(os.sched_getaffinity(0)))
    if jobs < 2:
        return [simulate(cfg).throughput for cfg in configs]
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(_throughput, configs, chunksize=4))


def _throughput(cfg: Config) -> float:
    return simulate(cfg).throughput


def _median(df: pd.DataFrame, column: str) -> float | None:
    if column not in df.columns:
        return None
    values = pd.to_numeric(df[column], errors="coerce").dropna()
    return float(values.median()) if len(values) else None


def _measured_points(df: pd.DataFrame, value: str, cpu_col: str = "cpus", client_s=None) -> list[dict]:
    """Median, spread and CPU placement per CPU count; with `client_s(rows)`, also the load
    generator's CPU per reply measured at that point (an input of the model, never its output)."""
    points = []
    for cpus, sub in df.groupby(cpu_col):
        vals = pd.to_numeric(sub[value], errors="coerce").dropna()
        if not len(vals):
            continue
        disjoint = True
        if "client_cpus_disjoint" in sub.columns:
            disjoint = bool(sub["client_cpus_disjoint"].astype(str).str.lower()
                            .isin(["true", "1", "1.0"]).all())
        point = {"cpus": int(cpus), "median": float(vals.median()), "min": float(vals.min()),
                 "max": float(vals.max()), "disjoint": disjoint}
        if client_s is not None:
            point["client_s"] = client_s(sub)
        points.append(point)
    return points


def split_service(rate1: float, held_cpu: float, free_cpu: float) -> tuple[float, float]:
    """The 1-CPU wall time per request, 1 / rate1, split in the measured held:free proportion."""
    service = 1.0 / rate1
    total = held_cpu + free_cpu
    share = held_cpu / total if total > 0 else 1.0
    return service * share, service * (1.0 - share)


def _wake(table, switch_s: float) -> dict:
    """The measured costs of moving work between CPUs (wake-ups, GIL switches), as Case fields."""
    return {"wake_costs": tuple(table or ()), "switch_s": switch_s}


def _load_wake_costs(table):
    if table is not None:
        return table
    from experiments import gil_handoff

    return gil_handoff.wake_costs()


def _load_switch_cost(switch_s):
    if switch_s is not None:
        return switch_s
    from experiments import gil_handoff

    return gil_handoff.switch_cost()


def _load_held_in_call(table):
    if table is not None:
        return table
    from experiments import gil_split

    return gil_split.held_in_call_table()


def held_part(table: dict, python: str, call: str, timed_s: float) -> float:
    """Of a call timed whole at `timed_s`, the seconds that hold the GIL (gil_split; 0 where
    unmeasured), never more than the call."""
    return min(max(0.0, table.get((python, call), 0.0)), max(0.0, timed_s))


def dispatch_cost(df: pd.DataFrame | None) -> float:
    """Seconds per default-color callback on one worker (runtime_dispatch.csv), or 0."""
    if df is None or "impl" not in df.columns:
        return 0.0
    sub = df[(df["impl"] == "colorloop") & (df["path"] == "same_thread")]
    return float(sub["ns_per_callback"].median()) * 1e-9 if len(sub) else 0.0


def _truthy(series: pd.Series) -> bool:
    return bool(series.astype(str).str.lower().isin(["true", "1", "1.0"]).any())


# --------------------------------------------------------------------------------------------


def sfs_cases(df: pd.DataFrame | None, wake_costs=None, dispatch_s: float | None = None,
              switch_s: float | None = None, held_in_call: dict | None = None) -> list[Case]:
    """Per suite, block and mode, from that mode's 1-CPU rows: the read's wall time at 1 CPU split
    as server CPU outside the crypto and send calls (GIL held) against the crypto calls' and the
    send calls' time (both release the GIL; a 64 KiB sendmsg is most of a READ's non-crypto time),
    less the part of the reply's seal that holds the GIL (gil_split); the client's cost from its
    measured CPU use per read."""
    if df is None or "mode" not in df.columns:
        return []
    table = _load_wake_costs(wake_costs)
    switch_s = _load_switch_cost(switch_s)
    held_in_call = _load_held_in_call(held_in_call)
    if dispatch_s is None:
        from experiments import figlib
        dispatch_s = dispatch_cost(figlib.read_csv("runtime_dispatch"))
    df = df[df["mode"].isin(["colors_off", "colors_on"])]
    cases = []
    for (python, suite, block), sub in df.groupby(["python", "suite", "block_kib"]):
        to_unit = int(block) * 1024 / SFS_BYTES_PER_MB
        clients = int(pd.to_numeric(sub["clients"], errors="coerce").median()) if "clients" in sub else 8
        depth = int(pd.to_numeric(sub["depth"], errors="coerce").median()) if "depth" in sub else 1
        scheduler = str(sub["scheduler"].iloc[0]) if "scheduler" in sub else "hash"
        base = f"{suite} {int(block)}KiB colors_off"
        for mode, msub in sub.groupby("mode"):
            # each mode's own 1-CPU costs: coloring changes them (thread hand-offs, cache)
            one = msub[msub["cpus"] == 1]
            other, crypto = _median(one, "other_s_per_read"), _median(one, "crypto_s_per_read")
            if other is None or crypto is None:
                continue
            sealed_held = held_part(held_in_call, str(python), f"seal/{suite}/{int(block)}k", crypto)
            other, crypto = other + sealed_held, crypto - sealed_held
            send = _median(one, "send_s_per_read")
            if send is not None:                 # the send calls release the GIL too
                other, crypto = max(0.0, other - send), crypto + send
            notes = []
            reads1 = _median(one, "mb_per_s") / to_unit
            # Every callback holds the GIL at least to be dispatched; a profile that finds less
            # (crypto timed by the wall clock while another process had the CPU) is floored there.
            floor = dispatch_s * (2 if mode == "colors_on" else 1)
            if other < floor:
                notes.append(f"{suite} {int(block)} KiB {mode}: measured interpreter time per read "
                             f"below one dispatch; floored at {floor * 1e6:.1f} µs")
            held, free = split_service(reads1, max(other, floor), crypto)
            decrypts = "client_decrypts" in one.columns and _truthy(one["client_decrypts"])
            client_s = _median(one, "client_s_per_read")
            if client_s is None:
                client_s = _sfs_client_s(one, to_unit)
            if client_s is None:
                client_s = (free if decrypts else 0.0) + held
                notes.append("client cost per read not in CSV: assumed = server's interpreter time"
                             + (" + crypto (client decrypts)" if decrypts else ""))
            cases.append(Case(
                app="sfs", python=str(python), config=f"{suite} {int(block)}KiB {mode}", mode=mode,
                held_s=held, free_s=free, clients=max(1, clients), client_s=client_s, depth=depth,
                # apps.sfs_like.loadgen: one thread skims every connection; decrypting clients
                # run a thread each
                client_threads=max(1, clients) if decrypts else 1,
                scheduler=scheduler if scheduler in ("hash", "steal") else "hash",
                **_wake(table, switch_s), dispatch_s=dispatch_s,
                unit="MB/s", to_unit=to_unit, baseline=base,
                group=f"{suite} {int(block)}KiB",
                measured=_measured_points(msub, "mb_per_s",
                                          client_s=lambda rows, u=to_unit: _sfs_client_s(rows, u)),
                notes=notes, calibration_cpus={1}))
    return cases


def _sfs_client_s(rows: pd.DataFrame, to_unit: float) -> float | None:
    """The load generator's CPU seconds per read in these rows (its CPU use over reads per second)."""
    if "client_cpu_util" not in rows.columns:
        return None
    util = pd.to_numeric(rows["client_cpu_util"], errors="coerce")
    reads = pd.to_numeric(rows["mb_per_s"], errors="coerce") / to_unit
    per_read = (util / reads).dropna()
    return float(per_read.median()) if len(per_read) else None


WEB_MODES = {"off": "colors_off", "on": "colors_on"}


def normalise_web_modes(df: pd.DataFrame | None) -> pd.DataFrame | None:
    """The web benchmark writes modes off/on/ncopy; the figures speak of colors_off/colors_on."""
    if df is None or "mode" not in df.columns:
        return df
    df = df.copy()
    df["mode"] = df["mode"].replace(WEB_MODES)
    return df


def web_cases(df: pd.DataFrame | None, wake_costs=None,
              switch_s: float | None = None) -> list[Case]:
    """The colorloop server's three modes; the peers (nginx, Apache, aiohttp) are not modelled.
    (No dispatch cost of its own: an fd event is dispatched inside its connection's stages.)"""
    if df is None or "server" not in df.columns:
        return []
    table = _load_wake_costs(wake_costs)
    switch_s = _load_switch_cost(switch_s)
    df = normalise_web_modes(df)
    ours = df[df["server"] == "colorloop"]
    cases = []
    for python, sub in ours.groupby("python"):
        one = sub[sub["cpus"] == 1]
        if not len(one):
            continue
        notes = []
        held_cpu = _median(one, "gil_held_s_per_request")
        free_cpu = _median(one, "gil_free_s_per_request")
        if held_cpu is None or free_cpu is None:
            held_cpu, free_cpu = 1.0, 0.0
            notes.append("GIL-held/free split per request not in CSV: all taken as GIL-held")
        connections = int(pd.to_numeric(sub["connections"], errors="coerce").median()) if "connections" in sub else 16
        wrk_threads = int(pd.to_numeric(sub["wrk_threads"], errors="coerce").median()) if "wrk_threads" in sub else 0
        off1 = _median(one[one["mode"] == "colors_off"], "requests_per_s") or _median(one, "requests_per_s")
        client_s = _median(one, "client_cpu_s_per_request")
        calibration = set()
        if client_s is None:
            held, free = split_service(off1, held_cpu, free_cpu)
            client_s, calibration = _client_cost_from_ncopy(sub, held + free)
            notes.append("wrk's CPU per request is not measured: derived from the N-copy run on all CPUs "
                         "(that point is a calibration, not a validation)")
        for mode, msub in sub.groupby("mode"):
            rate1 = _median(msub[msub["cpus"] == 1], "requests_per_s") or off1
            held, free = split_service(rate1, held_cpu, free_cpu)
            cases.append(Case(
                app="web", python=str(python), config=f"colorloop {mode}", mode=mode,
                held_s=held, free_s=free, clients=max(1, connections), client_s=client_s,
                client_threads=wrk_threads, **_wake(table, switch_s),
                unit="requests/s", baseline="colorloop colors_off", group="colorloop",
                measured=_measured_points(msub, "requests_per_s",
                                          client_s=lambda rows: _median(rows, "client_cpu_s_per_request")),
                notes=list(notes),
                calibration_cpus={1} | (calibration if mode == "ncopy" else set())))
    return cases


def _client_cost_from_ncopy(sub: pd.DataFrame, server_s: float) -> tuple[float, set]:
    """N copies on k shared CPUs keep all k busy with server + wrk work: k / rate = server + wrk."""
    ncopy = sub[sub["mode"] == "ncopy"]
    points = [p for p in _measured_points(ncopy, "requests_per_s") if not p["disjoint"]]
    if not points:
        return 0.0, set()
    top = max(points, key=lambda p: p["cpus"])
    return max(0.0, top["cpus"] / top["median"] - server_s), {top["cpus"]}


def runtime_cases(df: pd.DataFrame | None, wake_costs=None, dispatch_s: float = 0.0,
                  switch_s: float | None = None, held_in_call: dict | None = None) -> list[Case]:
    """Per workload and colors: 1 / ops-per-s at 1 worker, split by the GIL-releasing call's
    measured time less the part of it that holds the GIL (gil_split); the GIL-held part is at
    least one callback's dispatch (runtime_dispatch)."""
    if df is None or "workload" not in df.columns:
        return []
    table = _load_wake_costs(wake_costs)
    switch_s = _load_switch_cost(switch_s)
    held_in_call = _load_held_in_call(held_in_call)
    cases = []
    for (python, workload), sub in df.groupby(["python", "workload"]):
        for colors, csub in sub.groupby("colors"):
            one = csub[csub["workers"] == 1]
            rate1 = _median(one, "ops_per_s")
            free_cpu = _median(one, "gil_free_s_per_op")
            if rate1 is None or free_cpu is None:
                continue
            service = 1.0 / rate1
            free_cpu -= held_part(held_in_call, str(python), f"speedup/{workload}", free_cpu)
            free = min(free_cpu, service)
            held = max(service - free, min(dispatch_s, service))
            free = service - held
            mode = "distinct" if colors == "distinct" else "single"
            cases.append(Case(
                app="runtime", python=str(python), config=f"{workload} {colors} colors", mode=mode,
                held_s=held, free_s=free, clients=16, unit="ops/s", **_wake(table, switch_s),
                baseline=f"{workload} single colors", group=str(workload),
                measured=_measured_points(csub, "ops_per_s", cpu_col="workers"), calibration_cpus={1}))
    return cases


def handoff_cases(points: list[dict], wake_costs=None, switch_s: float | None = None,
                  held_in_call: dict | None = None) -> list[Case]:
    """experiments.gil_handoff's two looping threads: h and f measured alone (f less the part of
    the sha256 call that holds the GIL, gil_split), the 1-thread rate calibrates them, the
    2-thread rate checks the model's GIL with the measured wake-up costs."""
    table = _load_wake_costs(wake_costs)
    switch_s = _load_switch_cost(switch_s)
    held_in_call = _load_held_in_call(held_in_call)
    cases = []
    for p in points:
        moved = held_part(held_in_call, p["python"], f"handoff/sha256_{p.get('free_kib', 16)}k",
                          p["free_s"])
        measured = []
        for threads, values in sorted(p["rates"].items()):
            values = sorted(values)
            if values:
                measured.append({"cpus": threads, "median": float(pd.Series(values).median()),
                                 "min": values[0], "max": values[-1], "disjoint": True})
        cases.append(Case(
            app="runtime", python=p["python"],
            config=f"GIL hand-off, {p['held_s'] * 1e6:.0f} us held, {p['free_s'] * 1e6:.0f} us free",
            mode="distinct", held_s=p["held_s"] + moved, free_s=p["free_s"] - moved, clients=16,
            unit="ops/s",
            **_wake(table, switch_s), baseline="", group="gil_handoff", measured=measured, calibration_cpus={1}))
    return cases


# --------------------------------------------------------------------------------------------


def validate(cases: list[Case], cpus_allowed: int) -> list[dict]:
    """Model every measured point under the CPU placement it was measured with."""
    points = []
    for case in cases:
        for p in case.measured:
            k = p["cpus"]
            client_cpus = max(0, cpus_allowed - k) if p["disjoint"] else 0
            if case.app == "runtime":
                client_cpus = case.clients      # no load generator: submissions are free
            # The load generator's CPU per reply as measured at this point (sharing the server's
            # CPUs makes it dearer: context switches), where the CSV has it.
            here = case if p.get("client_s") is None else replace(case, client_s=p["client_s"])
            points.append((case, p, here, here.full_config(k, client_cpus=client_cpus)))
    throughputs = simulate_many([cfg for *_, cfg in points])
    rows = []
    for (case, p, here, _), throughput in zip(points, throughputs):
        k = p["cpus"]
        modelled = throughput * here.to_unit
        rows.append({
            "app": case.app, "python": case.python, "config": case.config, "cpus": k,
            "client_cpus_disjoint": p["disjoint"], "unit": case.unit,
            "measured": p["median"], "modelled": modelled,
            "error_pct": 100.0 * (modelled - p["median"]) / p["median"] if p["median"] else math.nan,
            "calibration": k in case.calibration_cpus,
            "held_s": case.held_s, "free_s": case.free_s, "client_s": here.client_s,
            "clients": case.clients,
        })
    return rows


def predictions(cases: list[Case], cpus_list: list[int] | None = None) -> list[dict]:
    """Modelled throughput and speedup (vs the same app's uncolored 1-CPU case) for 1..16 CPUs
    (`predict_cpus()` unless `cpus_list` is given)."""
    cpus_list = predict_cpus() if cpus_list is None else cpus_list
    rows = []
    by_key = {(c.app, c.python, c.group, c.config): c for c in cases}
    bases = {}
    for case in cases:
        base = by_key.get((case.app, case.python, case.group, case.baseline))
        if base is not None:
            bases.setdefault((case.app, case.python, case.group), base)
    jobs = [(case, k) for case in cases for k in cpus_list] + [(base, 1) for base in bases.values()]
    values = [t * case.to_unit for (case, _), t in
              zip(jobs, simulate_many([case.predict_config(k) for case, k in jobs]))]
    base_value = dict(zip(bases, values[len(cases) * len(cpus_list):]))
    for i, case in enumerate(cases):
        for j, k in enumerate(cpus_list):
            value = values[i * len(cpus_list) + j]
            ref = base_value.get((case.app, case.python, case.group))
            rows.append({"app": case.app, "python": case.python, "config": case.config,
                         "group": case.group, "mode": case.mode, "cpus": k, "unit": case.unit,
                         "modelled": value, "speedup": value / ref if ref else math.nan})
    return rows


def replace_python(case: Case, python: str) -> Case:
    """The same measured parameters on another interpreter (e.g. what 3.13t would do without GIL)."""
    return replace(case, python=python, measured=[], calibration_cpus=set())
