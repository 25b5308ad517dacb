"""What the model predicts for costs of your own: throughput and speedup on 1..N CPUs.

The figures model our three applications from their measured costs. A reader porting another
event-driven program wants the same question answered for theirs: "my requests spend H µs in the
interpreter and F µs in calls that release the GIL; what would colors buy me on 8 CPUs?". This
prints the model's answer (experiments.model), with the cross-CPU wake-up and GIL switch costs
measured on this machine (artifact/results/gil_handoff.csv) unless told to take them as free.

    python -m experiments.predict --held-us 15 --free-us 170 --mode crypto --cpus 8
    python -m experiments.predict --held-us 40 --free-us 10 --mode conn --python 3.13t

Modes (how the program is colored):
  serial  every callback in the default color: the unchanged program (one at a time)
  crypto  the interpreter work in the default color, the GIL-free work on the connection's color
          (libasync-smp's SFS: only the crypto callbacks colored)
  conn    each request wholly on its connection's color
  ncopy   one single-threaded process per CPU (each with its own GIL)
Everything printed is modelled, not measured.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace

from experiments import gil_handoff, model_fit

MODES = {"serial": ("runtime", "colors_off"), "crypto": ("sfs", "colors_on"),
         "conn": ("runtime", "distinct"), "ncopy": ("runtime", "ncopy")}


MAX_US = 1e6          # a second per request: past that the model's answer is no longer about colors
MIN_REQUEST_US = 0.1  # less than one bytecode's time: no Python request is that cheap


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text}")
    if value > MAX_US:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_US:g} µs (one second), not {text}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"must be 1..64, not {value}")
    return value


def make_case(held_s: float, free_s: float, mode: str, python: str, clients: int,
              client_s: float, measured_costs: bool, scheduler: str = "steal") -> model_fit.Case:
    app, case_mode = MODES[mode]
    wake = gil_handoff.wake_costs() if measured_costs else ()
    switch = gil_handoff.switch_cost() if measured_costs else 0.0
    return model_fit.Case(app=app, python=python, config=f"{mode}: {held_s * 1e6:g} µs held, "
                          f"{free_s * 1e6:g} µs free", mode=case_mode, held_s=held_s, free_s=free_s,
                          clients=clients, client_s=client_s, wake_costs=tuple(wake), switch_s=switch,
                          scheduler=scheduler)


def predict(case: model_fit.Case, cpus: int) -> list[dict]:
    """Per CPU count: modelled replies/s and speedup over the same program on 1 CPU, and over its
    serial (uncolored) form on 1 CPU."""
    serial = replace(case, mode="colors_off", app="runtime")
    configs = [case.predict_config(k) for k in range(1, cpus + 1)] + [serial.predict_config(1)]
    rates = model_fit.simulate_many(configs)
    base_serial = rates[-1]
    return [{"cpus": k, "replies_per_s": r, "speedup": r / rates[0], "vs_serial_1cpu": r / base_serial}
            for k, r in zip(range(1, cpus + 1), rates)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.predict", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--held-us", type=_positive, required=True,
                        help="µs per request that hold the GIL (interpreter work)")
    parser.add_argument("--free-us", type=_positive, required=True,
                        help="µs per request in calls that release the GIL (crypto, hashing, I/O)")
    parser.add_argument("--mode", choices=sorted(MODES), default="conn",
                        help="how the program is colored (default conn; see below)")
    parser.add_argument("--python", choices=["3.11", "3.13t"], default="3.11",
                        help="3.13t: no GIL (default 3.11)")
    parser.add_argument("--cpus", type=_count, default=16, help="model 1..CPUS (default 16)")
    parser.add_argument("--clients", type=_count, default=8,
                        help="connections, one color each (at least 2 per CPU are used)")
    parser.add_argument("--client-us", type=_positive, default=0.0,
                        help="the load generator's CPU per reply, on CPUs of its own (default 0)")
    parser.add_argument("--scheduler", choices=["steal", "hash"], default="steal",
                        help="how colors find workers: idle workers steal them (default; what the "
                             "SFS server uses) or each color hashed to one worker (runtime.Loop's "
                             "default, uneven with few colors)")
    parser.add_argument("--free-wakeups", action="store_true",
                        help="take cross-CPU wake-ups and GIL switches as free, instead of this "
                             "machine's measured costs")
    args = parser.parse_args(argv)
    if args.held_us + args.free_us <= 0:
        parser.error("a request must cost something: --held-us and --free-us are both 0")
    if args.held_us + args.free_us < MIN_REQUEST_US:
        parser.error(f"a request of {args.held_us + args.free_us:g} µs is cheaper than any Python "
                     f"request (at least {MIN_REQUEST_US:g} µs in all)")
    measured = not args.free_wakeups
    if measured and not gil_handoff.wake_costs():
        print("note: no gil_handoff.csv with wake-up costs found; wake-ups taken as free "
              "(run make fig-gil to measure them)", file=sys.stderr)
    case = make_case(args.held_us * 1e-6, args.free_us * 1e-6, args.mode, args.python,
                     args.clients, args.client_us * 1e-6, measured, args.scheduler)
    rows = predict(case, args.cpus)
    print(f"MODELLED (experiments.model), {case.config}, Python {args.python}, {args.scheduler}, "
          f"{'wake-ups priced as measured here' if measured else 'free wake-ups'}")
    print(f"{'CPUs':>4}  {'replies/s':>12}  {'speedup':>8}  {'vs serial on 1 CPU':>18}")
    for r in rows:
        print(f"{r['cpus']:>4}  {r['replies_per_s']:>12,.0f}  {r['speedup']:>7.2f}x  "
              f"{r['vs_serial_1cpu']:>17.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
