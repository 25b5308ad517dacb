"""What both runtime benchmarks share: progress, the --json convention, and CSV output.

They must also run on free-threaded CPython 3.13t, where tqdm and pandas may be absent, so progress
falls back to plain lines on stderr, and `--json` prints the rows as one JSON line so that a 3.11
driver can collect a 3.13t run (experiments/freethreaded.py).
"""
from __future__ import annotations

import argparse
import json
import sys


def progress(total: int, desc: str):
    try:
        from tqdm import tqdm
        return tqdm(total=total, desc=desc, file=sys.stderr, leave=False)
    except ImportError:
        return _PlainProgress(total, desc)


class _PlainProgress:
    def __init__(self, total, desc):
        self.total, self.desc, self.n = total, desc, 0

    def update(self, n=1):
        self.n += n
        print(f"{self.desc}: {self.n}/{self.total}", file=sys.stderr, flush=True)

    def close(self):
        pass


def main(name: str, run_benchmark, columns: list[str], argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=f"write artifact/results/{name}.csv")
    parser.add_argument("--quick", action="store_true", help="the short version (also QUICK=1)")
    parser.add_argument("--json", action="store_true",
                        help="print the rows as one JSON line instead of writing the CSV")
    args = parser.parse_args(argv)
    from experiments.common import print_table, quick, write_results
    rows = run_benchmark(quick=args.quick or quick())
    if args.json:
        print(json.dumps(rows))
        return rows
    path = write_results(name, rows)
    print_table(rows, columns)
    print(f"wrote {path}")
    return rows
