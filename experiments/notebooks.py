"""Execute the notebooks in notebooks/ against a results folder, so that they can never be stale.

Each notebook reads its CSVs from $COLORLOOP_RESULTS (default: artifact/results). Executed copies,
with their outputs and figures, go to artifact/notebooks-executed/; the sources in notebooks/ stay
output-free so that a diff shows only what a person changed.

    python -m experiments.notebooks [--results DIR] [--out DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from experiments import common

NOTEBOOKS = common.REPO / "notebooks"
EXECUTED = common.REPO / "artifact" / "notebooks-executed"
TIMEOUT_S = 300


def notebook_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def execute(paths: list[Path], results: Path, out: Path, timeout: int = TIMEOUT_S,
            progress: bool = True) -> list[Path]:
    """Run every cell of each notebook with COLORLOOP_RESULTS=results; raise on the first error."""
    import nbformat
    from nbclient import NotebookClient

    out.mkdir(parents=True, exist_ok=True)
    written = []
    old = os.environ.get("COLORLOOP_RESULTS")
    os.environ["COLORLOOP_RESULTS"] = str(Path(results).resolve())
    try:
        iterator = paths
        if progress:
            from tqdm import tqdm
            iterator = tqdm(paths, desc="notebooks", unit="nb")
        for path in iterator:
            nb = nbformat.read(path, as_version=4)
            client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                    resources={"metadata": {"path": str(path.parent)}})
            client.execute()
            target = out / path.name
            nbformat.write(nb, target)
            written.append(target)
    finally:
        if old is None:
            os.environ.pop("COLORLOOP_RESULTS", None)
        else:
            os.environ["COLORLOOP_RESULTS"] = old
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=common.results_dir())
    parser.add_argument("--out", type=Path, default=EXECUTED)
    args = parser.parse_args(argv)
    paths = notebook_paths()
    if not paths:
        sys.exit(f"no notebooks in {NOTEBOOKS}")
    for p in execute(paths, args.results, args.out):
        print(f"executed {p}")


if __name__ == "__main__":
    main()
