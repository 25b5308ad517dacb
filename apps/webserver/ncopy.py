"""N-copy: N independent single-threaded servers sharing one port (the paper's comparison).

Each copy is a separate `--colors off` process with its own listening socket bound with
SO_REUSEPORT, so the kernel spreads new connections over the copies; they share nothing, not even
the file cache. The parent checks that no one else holds the port, reserves it, starts the copies
(copy i pinned to the i-th CPU of `--cpus`, when given), prints the URL when all of them accept,
and stops them all when it is stopped or when any copy dies.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from .cli import cannot_listen


def check_port_free(host: str, port: int) -> None:
    """Raise OSError (EADDRINUSE) if another socket holds host:port.

    The holder and the copies bind with SO_REUSEPORT, which would let them join a server already
    listening there (another N-copy run, a `--reuse-port` server of the same user): two roots
    would then split the requests, silently. A bind without SO_REUSEPORT (with SO_REUSEADDR, as
    the servers use, so that connections in TIME_WAIT do not count) fails on a port in use.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound (not listening) SO_REUSEPORT socket: holds the port while the copies start."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def copy_command(args, port: int, cpu: int | None, index: int) -> list[str]:
    cmd = [sys.executable, "-m", "apps.webserver", "--root", args.root, "--host", args.host,
           "--port", str(port), "--colors", "off", "--reuse-port",
           "--max-connections", str(args.max_connections),
           "--header-timeout", str(args.header_timeout), "--idle-timeout", str(args.idle_timeout),
           "--cache-mb", str(args.cache_mb)]
    if cpu is not None:
        cmd += ["--cpus", str(cpu)]
    if args.stats_file:
        cmd += ["--stats-file", f"{args.stats_file}.{index}"]
    return cmd


def run_ncopy(args) -> int:
    cpus = args.cpu_list
    try:
        if args.port:                     # port 0: the holder gets a fresh one, in use by no one
            check_port_free(args.host, args.port)
        holder = reserve_port(args.host, args.port)
    except OSError as exc:
        raise cannot_listen(args.host, args.port, exc) from None
    port = holder.getsockname()[1]
    children: list[subprocess.Popen] = []
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for i in range(args.ncopy):
            cpu = cpus[i % len(cpus)] if cpus else None
            child = subprocess.Popen(copy_command(args, port, cpu, i), stdout=subprocess.PIPE,
                                     text=True)
            children.append(child)
            line = child.stdout.readline()
            if not line.startswith("serving "):
                raise RuntimeError(f"copy {i} did not start (exit {child.wait()})")
        holder.close()
        shown = f"[{args.host}]" if ":" in args.host else args.host
        print(f"serving http://{shown}:{port}/ (ncopy {args.ncopy}, pid {os.getpid()})", flush=True)
        # Wait until we are told to stop or a copy dies, then stop the rest.
        while not stopping:
            pid, status = os.wait()
            if any(c.pid == pid for c in children) and not stopping:
                print(f"ncopy: copy pid {pid} exited ({status}); stopping the others",
                      file=sys.stderr, flush=True)
                stop()
                return 1
        return 0
    except InterruptedError:
        return 0
    finally:
        stop()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        holder.close()
