"""`python -m apps.webserver`: serve a folder over HTTP/1.1 on the colored event loop.

    --colors off            one thread, every callback color 0 (the unchanged event-driven server)
    --colors on --workers N each connection on its own color, N worker threads
    --ncopy N               N independent colors-off processes sharing the port (SO_REUSEPORT)

It prints `serving http://HOST:PORT/` once it accepts connections (scripts wait for that line).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m apps.webserver", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="folder to serve")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    p.add_argument("--colors", choices=("on", "off"), default="off")
    p.add_argument("--workers", type=int, default=None,
                   help="worker threads (default: 1 with colors off, the CPU count with colors on)")
    p.add_argument("--scheduler", choices=("hash", "steal"), default="hash")
    p.add_argument("--ncopy", type=int, default=None,
                   help="run N single-threaded copies instead (refused if the port is in use)")
    p.add_argument("--cpus", default="", help="CPU list to run on, e.g. 0,1 (workers are pinned)")
    p.add_argument("--max-connections", type=int, default=1024)
    p.add_argument("--header-timeout", type=float, default=10.0,
                   help="seconds a client may take to send one whole request")
    p.add_argument("--idle-timeout", type=float, default=60.0,
                   help="seconds an idle keep-alive connection is kept")
    p.add_argument("--cache-mb", type=float, default=64.0, help="bound on cached file contents")
    p.add_argument("--reuse-port", action="store_true",
                   help="set SO_REUSEPORT (N-copy's copies use it): joins any server of the same "
                        "user already listening on the port, which then shares its connections")
    p.add_argument("--stats-file", default="",
                   help="write counters as JSON to this file on exit; with --ncopy N, copy i "
                        "writes FILE.i (FILE.0 ... FILE.N-1) and FILE itself is not written")
    p.add_argument("--profile-io", action="store_true",
                   help="time the socket calls (for the GIL-free/held split of the benchmark)")
    args = p.parse_args(argv)
    for flag, value, least in (("--workers", args.workers, 1), ("--ncopy", args.ncopy, 1),
                               ("--max-connections", args.max_connections, 1)):
        if value is not None and value < least:
            p.error(f"{flag} must be at least {least}, not {value}")
    for flag, value in (("--header-timeout", args.header_timeout),
                        ("--idle-timeout", args.idle_timeout), ("--cache-mb", args.cache_mb)):
        if not value > 0:
            p.error(f"{flag} must be positive, not {value}")
    if args.ncopy and args.colors == "on":
        p.error("--ncopy runs colors-off copies; do not combine it with --colors on")
    if not 0 <= args.port <= 65535:
        p.error(f"--port must be 0..65535 (0 picks a free one), not {args.port}")
    if not os.path.isdir(args.root):
        p.error(f"--root {args.root!r} is not a folder")
    if args.stats_file:
        problem = stats_file_problem(args.stats_file)
        if problem:
            p.error(f"--stats-file {args.stats_file!r}: {problem}")
    try:
        args.cpu_list = parse_cpus(args.cpus)
    except ValueError:
        p.error(f"--cpus {args.cpus!r}: expected CPU numbers and ranges, e.g. 0,1 or 0-3")
    allowed = sorted(os.sched_getaffinity(0))
    if set(args.cpu_list) - set(allowed):
        p.error(f"--cpus {args.cpus}: this process may only use CPUs {allowed}")
    return args


def stats_file_problem(path: str) -> str:
    """Why the counters could not be written to `path` at exit, or "" if they can.

    Checked at start-up: the file is written only when the server stops, and a folder that does
    not exist would be found out then, with the counters of the whole run lost. (With --ncopy the
    copies write path.0, path.1, ...: the same folder.) Permission bits do not tell everything (a
    read-only file system, /proc, a name ending in "/"), so the file is really opened: an existing
    one for appending, which changes nothing, a new one created and removed again.
    """
    if path.endswith(os.sep) or os.path.isdir(path):
        return "is a folder"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"folder {folder!r} does not exist"
    if os.path.exists(path):
        if not os.path.isfile(path):
            return "is not a regular file"
        try:
            open(path, "a").close()
        except OSError as exc:
            return f"cannot write it ({exc.strerror})"
        return ""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        os.unlink(path)
    except FileExistsError:
        return ""                            # made meanwhile by someone else: it exists now
    except OSError as exc:
        return f"cannot create it in {folder!r} ({exc.strerror})"
    return ""


def parse_cpus(text: str) -> list[int]:
    """'0,2-3' -> [0, 2, 3]; ValueError for anything else."""
    cpus: list[int] = []
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        first, last = int(lo), int(hi or lo)
        if first < 0 or last < first:
            raise ValueError(part)
        cpus.extend(range(first, last + 1))
    return cpus


def cannot_listen(host: str, port: int, exc: OSError) -> SystemExit:
    """A port in use or a host we cannot bind is the user's to fix: one line, no traceback."""
    return SystemExit(f"python -m apps.webserver: error: cannot listen on {host}:{port}: "
                      f"{exc.strerror or exc}")


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    if args.ncopy:
        from .ncopy import run_ncopy
        return run_ncopy(args)
    return serve(args)


def serve(args: argparse.Namespace) -> int:
    import runtime

    from .cache import FileCache
    from .colors import plan
    from .server import Server

    cpus = args.cpu_list
    if cpus:
        os.sched_setaffinity(0, cpus)
    colors = plan(args.colors)
    workers = args.workers or (len(os.sched_getaffinity(0)) if colors.parallel else 1)
    cache = FileCache(args.root, max_bytes=int(args.cache_mb * (1 << 20)))
    loop = runtime.Loop(workers=workers, scheduler=args.scheduler, pin=bool(cpus))
    server = Server(loop, cache, colors=colors, max_connections=args.max_connections,
                    header_timeout=args.header_timeout, idle_timeout=args.idle_timeout,
                    profile=args.profile_io)
    try:
        host, port = server.listen(args.host, args.port, reuse_port=args.reuse_port)
    except OSError as exc:
        loop.close()
        raise cannot_listen(args.host, args.port, exc) from None
    server.start()
    # Ctrl-C stops the server as SIGTERM does: counters written, status 0, no traceback.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, loop.stop)
    shown = f"[{host}]" if ":" in host else host
    print(f"serving http://{shown}:{port}/ (colors {args.colors}, {workers} worker"
          f"{'s' if workers > 1 else ''}, pid {os.getpid()})", flush=True)
    try:
        loop.run()
    finally:
        counts = server.final_counts()
        stats = loop.stats()
        counts["colors_used"] = len(stats["colors"])
        counts["workers_used"] = sum(1 for w in stats["workers"] if w["callbacks"])
        loop.close()
        if args.stats_file:
            write_stats(args.stats_file, counts)
    return 0


def write_stats(path: str, counts: dict) -> None:
    """Write the run's counters; if the file can no longer be written (its folder was removed
    while the server ran), say so in one line and print them to stderr rather than lose them."""
    try:
        with open(path, "w") as f:
            json.dump(counts, f)
    except OSError as exc:
        print(f"webserver: cannot write --stats-file {path!r} ({exc.strerror}); the counters: "
              f"{json.dumps(counts)}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
