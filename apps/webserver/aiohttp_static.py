"""aiohttp's static file handler: the Python web server a user would otherwise pick (a peer).

`python -m apps.webserver.aiohttp_static --root DIR --port P [--reuse-port]` serves DIR with
`app.router.add_static("/", DIR)` on the default asyncio loop, with access logging off (our server
logs nothing per request either). aiohttp is single-threaded, so the benchmark runs k of these
processes on one port (SO_REUSEPORT), each pinned to one CPU: aiohttp's own N-copy.
Imports aiohttp, so it is not for the free-threaded interpreter.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys

from aiohttp import web


async def serve(root: str, host: str, port: int, reuse_port: bool) -> None:
    app = web.Application()
    app.router.add_static("/", root, show_index=False, follow_symlinks=False)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None, backlog=1024)
    await site.start()
    print(f"serving http://{host}:{port}/ (aiohttp, pid {os.getpid()})", flush=True)
    await asyncio.Event().wait()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m apps.webserver.aiohttp_static")
    p.add_argument("--root", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--reuse-port", action="store_true")
    args = p.parse_args(argv)
    try:
        asyncio.run(serve(args.root, args.host, args.port, args.reuse_port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
