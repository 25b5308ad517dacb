"""The claims table: each claim, the paper's value, ours, the range we expect, and whether it is met.

Read from the CSVs only (so it can be rebuilt any time with `python -m experiments.claims`), written
to artifact/results/claims.csv and artifact/claims.md, and printed at the end of `make reproduce`.
The paper's values are the abstract's three numbers; every other row has no paper value ("-") and
checks a property of our artifact that the paper's argument rests on. "Expected" is the range we
commit to before running; "modelled" in a value's description means the discrete-event model.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

from experiments import common, figlib, model_fit, model_validation, sched_compare, sfs_throughput

NAME = "claims"
# The measured CSVs the claims are computed from (the model's inputs besides).
SOURCES = ("sfs_throughput", "web_throughput", "runtime_dispatch", "runtime_speedup", "sched_compare",
           "lines_changed", "gil_handoff", "gil_split")


@dataclass
class Claim:
    key: str
    claim: str
    paper: str
    ours: float | None
    ours_text: str
    low: float
    high: float
    evidence: str                      # the command that checks it, and its figure
    unit: str = ""                     # of low/high in the expected column, e.g. "%"

    @property
    def status(self) -> str:
        if self.ours is None or (isinstance(self.ours, float) and math.isnan(self.ours)):
            return "not run"
        return "met" if self.low <= self.ours <= self.high else "NOT met"

    @property
    def expected(self) -> str:
        u = self.unit
        if math.isinf(self.high):
            return f">= {self.low:g}{u}"
        if self.low <= 0 and not math.isinf(self.high):
            return f"<= {self.high:g}{u}"
        return f"{self.low:g}{u} .. {self.high:g}{u}"

    def row(self) -> dict:
        return {"key": self.key, "claim": self.claim, "paper": self.paper, "ours": self.ours_text,
                "ours_value": self.ours, "expected": self.expected, "status": self.status,
                "evidence": self.evidence}


def _speedup(df, where: dict, value: str, cpus: int, base_where: dict, cpu_col: str = "cpus"):
    def med(cond, k):
        sub = df
        for col, v in cond.items():
            sub = sub[sub[col] == v]
        sub = sub[sub[cpu_col] == k]
        return float(sub[value].median()) if len(sub) else None
    top, base = med(where, cpus), med(base_where, 1)
    return top / base if top and base else None


def _fmt(x, suffix="x", digits=2) -> str:
    return "-" if x is None else f"{x:.{digits}f}{suffix}"


def _needs_two_cpus(claim: Claim, cpus: int) -> Claim:
    """A claim about what a second CPU (or worker on its own CPU) gains, measured where there was
    only one: 1 CPU vs 1 CPU reads about 1.0x, "met" or "NOT met" by the accident of its range.
    It is "not run" instead, and says why."""
    if cpus == 1:
        claim.ours, claim.ours_text = None, "needs 2 CPUs; 1 here"
    return claim


def sfs_claims(results: Path | None) -> list[Claim]:
    df = figlib.read_csv("sfs_throughput", results)
    measured = modelled = None
    top, block = 0, None
    if df is not None:
        df = df[df["python"] == "3.11"]
        block = sfs_throughput.headline_block(df, sfs_throughput.HEADLINE_SUITE)
    if df is not None and block is not None:
        sub = df[(df["suite"] == sfs_throughput.HEADLINE_SUITE) & (df["block_kib"] == block)]
        top = int(sub["cpus"].max())
        measured = _speedup(sub, {"mode": "colors_on"}, "mb_per_s", top, {"mode": "colors_off"})
        cases = {c.mode: c for c in model_fit.sfs_cases(sub)}
        if "colors_on" in cases and "colors_off" in cases:
            modelled = cases["colors_on"].predict(4) / cases["colors_off"].predict(1)
    cfg = f"{sfs_throughput.HEADLINE_SUITE}, {block} KiB reads" if block else "sfs2003"
    return [
        Claim("sfs-4cpu", f"SFS: colored crypto, 4 CPUs vs unmodified on 1 CPU (modelled; {cfg})",
              "2.5x", modelled, _fmt(modelled), 2.0, math.inf, "make fig-sfs -> artifact/figures/sfs_throughput.png"),
        _needs_two_cpus(Claim("sfs-measured", f"SFS: colored vs unmodified on 1 CPU, measured on {top or '?'} "
                              f"CPUs ({cfg})", "-", measured, _fmt(measured), 1.2, float(max(top, 2)),
                              "make fig-sfs -> artifact/figures/sfs_throughput.png"), top),
    ]


def web_claims(results: Path | None) -> list[Claim]:
    df = model_fit.normalise_web_modes(figlib.read_csv("web_throughput", results))
    out = []
    cases = model_fit.web_cases(df)
    by = {(c.python, c.mode): c for c in cases}

    def modelled(python, mode, base_python=None):
        case, base = by.get((python, mode)), by.get((base_python or python, "colors_off"))
        if case is None and python == "3.13t" and ("3.11", mode) in by:
            case = model_fit.replace_python(by[("3.11", mode)], "3.13t")
            base = model_fit.replace_python(by[("3.11", "colors_off")], "3.13t") if ("3.11", "colors_off") in by else None
        if case is None or base is None:
            return None
        return case.predict(4) / base.predict(1)

    measured = None
    top = 0
    if df is not None:
        ours = df[(df["server"] == "colorloop") & (df["python"] == "3.11")]
        if len(ours):
            top = int(ours["cpus"].max())
            measured = _speedup(ours, {"mode": "colors_on"}, "requests_per_s", top, {"mode": "colors_off"})
        ncopy_measured = _speedup(ours, {"mode": "ncopy"}, "requests_per_s", top, {"mode": "colors_off"}) if len(ours) else None
    else:
        ncopy_measured = None
    fig = "make fig-web -> artifact/figures/web_throughput.png"
    ft_fig = "make freethreaded fig-web -> artifact/figures/web_throughput.png"   # 3.13t measured too
    ft_measured = df is not None and (df["python"] == "3.13t").any()
    # The abstract's 1.5x is the libasync-smp server's, not N-copy's: the paper column stays empty.
    out.append(Claim("web-4cpu-ncopy", "web server: N-copy (one process per CPU), 4 CPUs vs 1 (modelled)",
                     "-", modelled("3.11", "ncopy"), _fmt(modelled("3.11", "ncopy")), 1.5, math.inf, fig))
    out.append(Claim("web-4cpu-3.13t", "web server: colored on free-threaded 3.13t, 4 CPUs vs 1 (modelled"
                     + (" from 3.13t costs)" if ft_measured else " from 3.11 costs without the GIL)"),
                     "1.5x", modelled("3.13t", "colors_on"), _fmt(modelled("3.13t", "colors_on")), 1.5, math.inf,
                     ft_fig))
    out.append(Claim("web-4cpu-3.11", "web server: colored on 3.11 (GIL), 4 CPUs vs 1 (modelled): "
                     "the GIL should hold it under the paper's 1.5x, but not far below uncolored "
                     "(0.8x)", "1.5x",
                     modelled("3.11", "colors_on"), _fmt(modelled("3.11", "colors_on")), 0.8, 1.5, fig))
    out.append(_needs_two_cpus(Claim("web-measured-ncopy", f"web server: N-copy vs colors off, measured on "
                                     f"{top or '?'} CPUs", "-", ncopy_measured, _fmt(ncopy_measured), 1.1,
                                     float(max(top, 2)), fig), top))
    out.append(_needs_two_cpus(Claim("web-measured-3.11", f"web server: colored (3.11) vs colors off, measured "
                                     f"on {top or '?'} CPUs", "-", measured, _fmt(measured), 0.8,
                                     float(max(top, 2)), fig), top))
    # The free-threaded track's own goal: at least 1.6x on 2 CPUs, i.e. 0.8 per CPU.
    ft_speedup, ft_top = None, 0
    if ft_measured:
        ft = df[(df["server"] == "colorloop") & (df["python"] == "3.13t")]
        ft_top = int(ft["cpus"].max())
        ft_speedup = _speedup(ft, {"mode": "colors_on"}, "requests_per_s", ft_top, {"mode": "colors_on"})
    # Its baseline is the colored server itself on 1 CPU, as the goal was set; the figure's speedup
    # axis divides by colors off on 1 CPU, so the claim names its baseline and gives that ratio too.
    vs_off = (_speedup(ft, {"mode": "colors_on"}, "requests_per_s", ft_top, {"mode": "colors_off"})
              if ft_measured else None)
    out.append(_needs_two_cpus(Claim("web-measured-3.13t", f"web server: colored on free-threaded 3.13t, "
                                     f"measured on {ft_top or '?'} CPUs vs itself on 1 CPU (vs colors off on "
                                     f"1 CPU: {_fmt(vs_off)})", "-", ft_speedup, _fmt(ft_speedup),
                                     0.8 * max(ft_top, 2), float(max(ft_top, 2)), ft_fig), ft_top))
    return out


def lines_claims(results: Path | None) -> list[Claim]:
    """Two readings of the paper's "about 90 lines of 12,000": the count, and the share. Our
    server is an order of magnitude smaller than SFS, so the share is the harder one to match."""
    df = figlib.read_csv("lines_changed", results)
    count = pct = None
    text = "-"
    if df is not None:
        r = df.iloc[0]
        count = float(r["changed_lines"])
        pct = 100.0 * r["changed_lines"] / r["total_lines"]
        text = f"{int(r['changed_lines'])} of {int(r['total_lines'])} ({pct:.2f}%)"
    fig = "make fig-lines -> artifact/figures/lines_changed.png"
    return [
        Claim("lines", "lines changed to color the SFS crypto (count)",
              f"about {figlib.PAPER_LINES_CHANGED}", count, text, 0.0, 100.0, fig),
        Claim("lines-share", "lines changed to color the SFS crypto, % of the server",
              f"about {figlib.PAPER_LINES_CHANGED} of {figlib.PAPER_LINES_TOTAL:,} (0.75%)",
              pct, "-" if pct is None else f"{pct:.2f}%", 0.0, 3.0, fig),
    ]


def model_claim(results: Path | None) -> Claim:
    rows = [r for r in model_validation.validate(results) if not r["calibration"]]
    share = worst = None
    if rows:
        share = 100.0 * sum(abs(r["error_pct"]) <= model_validation.GOAL_PCT for r in rows) / len(rows)
        worst = max(abs(r["error_pct"]) for r in rows)
    text = "-" if share is None else f"{share:.0f}% of {len(rows)} points (worst {worst:.0f}%)"
    return Claim("model", "model within 15% of every measured point (SFS, web, runtime)", "-",
                 share, text, 100.0, math.inf,
                 "make fig-model -> artifact/results/model_validation.csv, figures/model_validation.png",
                 unit="% of points")


def runtime_claims(results: Path | None) -> list[Claim]:
    out = []
    fig = "make fig-callbacks -> artifact/figures/callback_cost.png"
    d = figlib.read_csv("runtime_dispatch", results)
    ratio = None
    if d is not None:
        d = d[(d["python"] == "3.11") & (d["path"] == "same_thread")]
        med = d.groupby("impl")["ns_per_callback"].median()
        if "colorloop" in med and "asyncio" in med:
            ratio = float(med["colorloop"] / med["asyncio"])
    out.append(Claim("dispatch", "default-color callback cost vs asyncio call_soon (same thread), ratio",
                     "-", ratio, _fmt(ratio), 0.0, 2.0, fig))
    s = figlib.read_csv("runtime_speedup", results)
    single = distinct = None
    top = 0
    if s is not None:
        s = s[s["python"] == "3.11"]
        top = int(s["workers"].max())
        single = _speedup(s, {"workload": "sha256", "colors": "single"}, "ops_per_s", top,
                          {"workload": "sha256", "colors": "single"}, cpu_col="workers")
        distinct = _speedup(s, {"workload": "sha256", "colors": "distinct"}, "ops_per_s", top,
                            {"workload": "sha256", "colors": "distinct"}, cpu_col="workers")
    out.append(_needs_two_cpus(Claim("one-color-serial", f"one color gains nothing from more workers: sha256 "
                                     f"on one color, {top} workers vs 1 (that its callbacks never overlap is "
                                     "tested by make test)", "-", single, _fmt(single), 0.0, 1.2, fig), top))
    out.append(_needs_two_cpus(Claim("gil-free-scales", f"GIL-free work on distinct colors scales: sha256, "
                                     f"{top} workers vs 1", "-", distinct, _fmt(distinct),
                                     0.75 * max(top, 2), float(max(top, 2)), fig), top))
    # The free-threaded track's other goal: pure-Python callbacks of distinct colors scale too.
    pure, ft_top = None, 0
    s = figlib.read_csv("runtime_speedup", results)
    if s is not None and (s["python"] == "3.13t").any():
        s = s[s["python"] == "3.13t"]
        ft_top = int(s["workers"].max())
        pure = _speedup(s, {"workload": "purepython", "colors": "distinct"}, "ops_per_s", ft_top,
                        {"workload": "purepython", "colors": "distinct"}, cpu_col="workers")
    out.append(_needs_two_cpus(Claim("pure-python-3.13t", f"pure-Python work on distinct colors, "
                                     f"free-threaded 3.13t: {ft_top or '?'} workers vs 1", "-", pure,
                                     _fmt(pure), 0.9 * max(ft_top, 2), float(max(ft_top, 2)),
                                     "make freethreaded fig-callbacks -> artifact/figures/callback_cost.png"),
                               ft_top))
    return out


def sched_claims(results: Path | None) -> list[Claim]:
    df = figlib.read_csv("sched_compare", results)
    gains = sched_compare.steal_gain(df) if df is not None else {}
    fig = "make fig-sched -> artifact/figures/sched_compare.png"
    allowed = (figlib.read_machine("sched_compare", results) or {}).get("cpus_allowed")
    cpus = len(allowed) if isinstance(allowed, list) else 0
    return [
        # stealing gains only where the idle worker has a CPU of its own to run the stolen color on
        _needs_two_cpus(Claim("steal-collide", "work stealing vs hash placement, colors that hash to one "
                              "worker (steal/hash)", "-", gains.get("collide"), _fmt(gains.get("collide")),
                              1.2, math.inf, fig), cpus),
        Claim("steal-short", "stealing's own cost on tiny callbacks (steal/hash); Mely: up to 33% cost",
              "-", gains.get("short"), _fmt(gains.get("short")), 0.67, math.inf, fig),
    ]


def build(results: Path | None = None) -> list[Claim]:
    claims = []
    for part in (sfs_claims, web_claims, lines_claims, runtime_claims, sched_claims,
                 lambda r: [model_claim(r)]):
        try:
            claims.extend(part(results))
        except Exception as exc:       # a malformed CSV must not hide the other claims
            claims.append(Claim(getattr(part, "__name__", "claims"), f"(could not evaluate: {exc})", "-",
                                None, "-", 0, 0, "-"))
    return claims


def write(claims: list[Claim], results: Path | None = None) -> Path:
    folder = results or figlib.results_dir()
    rows = [c.row() for c in claims]
    path = figlib.write_derived(NAME, rows, list(SOURCES), folder)
    if folder == common.RESULTS:
        quick = sorted(s for s in SOURCES if (figlib.read_machine(s, folder) or {}).get("quick"))
        md = ([f"From a QUICK run (short trials) for: {', '.join(f'{s}.csv' for s in quick)}. "
               "The full run's numbers are in git: `git checkout artifact/` restores them.", ""]
              if quick else [])
        md += ["| claim | paper | ours | expected | status | how to check |", "|---|---|---|---|---|---|"]
        md += [f"| {r['claim']} | {r['paper']} | {r['ours']} | {r['expected']} | {r['status']} | `{r['evidence']}` |"
               for r in rows]
        (common.RESULTS.parent / "claims.md").write_text(
            "# Claims table (generated by `python -m experiments.claims`; do not edit)\n\n" + "\n".join(md) + "\n")
    return path


def print_claims(claims: list[Claim]) -> None:
    """Left-aligned, one claim per line, the claim text wrapped: readable at the end of a log."""
    import textwrap

    cols = ("paper", "ours", "expected", "status")
    rows = [c.row() for c in claims]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    text_w = 64
    print("\n" + "claim".ljust(text_w) + "  " + "  ".join(c.ljust(widths[c]) for c in cols))
    print("-" * (text_w + 2 + sum(widths.values()) + 2 * (len(cols) - 1)))
    for r in rows:
        lines = textwrap.wrap(r["claim"], text_w) or [""]
        print(lines[0].ljust(text_w) + "  " + "  ".join(str(r[c]).ljust(widths[c]) for c in cols))
        for extra in lines[1:]:
            print("  " + extra)
    met = sum(c.status == "met" for c in claims)
    print(f"\n{met} of {len(claims)} claims met; "
          f"{sum(c.status == 'not run' for c in claims)} not run (their CSV is missing, or they need "
          "more CPUs than this machine let us use)")


def main(argv=None) -> None:
    argparse.ArgumentParser(prog="python -m experiments.claims",
                            description="Build the claims table from the CSVs in artifact/results/, "
                                        "print it, and write claims.csv and artifact/claims.md."
                            ).parse_args(argv)
    claims = build()
    path = write(claims)
    print_claims(claims)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
