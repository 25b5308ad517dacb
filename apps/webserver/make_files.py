"""`python -m apps.webserver.make_files DIR`: the benchmark's file set, and the list wrk requests.

The paper's web experiment only says "clients reading small cached files"; its file sizes are not
known to us, so we do not pretend to copy them. We follow the size classes of SPECweb99, the
standard static-web workload of that time (our choice, not the paper's): class 0 files of
0.1-0.9 KB (35% of files), class 1 of 1-9 KB (50%), class 2 of 10-90 KB (14%); SPECweb99's class 3
(100-900 KB, 1%) is left out because it is not "small". Within a class the nine sizes are equally
likely. Requests pick files uniformly, so the request mix has the same class shares: the mean
reply is about 10 KB and the median 3 KB (about 10 MB for 1,000 files), and everything fits in the server's cache.

The files are spread over subfolders with a few common extensions (so Content-Type varies), with
deterministic contents (a seed), plus an `index.html`. `paths.txt` in DIR lists every URL path,
one per line, for wrk's `mix.lua`.
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

CLASSES = [  # (share of files, sizes in bytes)
    (0.35, [100 * i for i in range(1, 10)]),
    (0.50, [1000 * i for i in range(1, 10)]),
    (0.14, [10_000 * i for i in range(1, 10)]),
]
EXTENSIONS = [".html", ".css", ".js", ".txt", ".png", ".json"]
PATHS_FILE = "paths.txt"


def make_files(root: str | Path, count: int = 1000, *, seed: int = 2003, folders: int = 10) -> list[str]:
    """Write `count` files under `root` and `root/paths.txt`; returns the URL paths."""
    rng = random.Random(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    weights = [share for share, _ in CLASSES]
    alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789 \n"
    paths = []
    for i in range(count):
        _, sizes = rng.choices(CLASSES, weights)[0]
        size = rng.choice(sizes)
        folder = root / f"dir{i % folders:02d}"
        folder.mkdir(exist_ok=True)
        name = f"file{i:05d}{EXTENSIONS[i % len(EXTENSIONS)]}"
        block = bytes(rng.choice(alphabet) for _ in range(256))
        (folder / name).write_bytes((block * (size // 256 + 1))[:size])
        paths.append(f"/{folder.name}/{name}")
    (root / "index.html").write_text("<!doctype html><title>colorloop</title><p>colorloop's "
                                     "benchmark files: see paths.txt</p>\n")
    paths.append("/index.html")
    (root / PATHS_FILE).write_text("\n".join(paths) + "\n")
    return paths


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m apps.webserver.make_files",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("dir")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--seed", type=int, default=2003)
    args = p.parse_args(argv)
    if Path(args.dir).exists() and not Path(args.dir).is_dir():
        p.error(f"{args.dir!r} exists and is not a folder")
    try:
        paths = make_files(args.dir, args.count, seed=args.seed)
    except OSError as exc:          # a parent that is a file, no permission, a full disk
        p.error(f"cannot write the files in {args.dir!r}: {exc.strerror or exc}")
    total = sum(f.stat().st_size for f in Path(args.dir).rglob("*") if f.is_file())
    print(f"{len(paths)} files, {total / 1e6:.1f} MB in {args.dir}; URL list in "
          f"{Path(args.dir) / PATHS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
