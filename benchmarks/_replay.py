"""Many sidecar targets from one real sidecar: its answers, replayed on many ports.

``python -m benchmarks._replay --upstream PORT --port N [--port N ...]``: every GET on any of
the ports is answered with what the real sidecar on 127.0.0.1:PORT answered for the same path
and query, fetched at most once a second. So twenty "pods" cost the machine one sidecar, and a
dashboard or alerter asking them all at once measures itself, not twenty Python processes
fighting over two cores. Prints ``ready`` once listening; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time

import aiohttp
from aiohttp import web


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", type=int, required=True)
    parser.add_argument("--port", type=int, action="append", required=True)
    args = parser.parse_args()
    cache: dict[str, tuple[float, int, bytes, str]] = {}
    locks: dict[str, asyncio.Lock] = {}
    session = aiohttp.ClientSession()

    async def answer(request: web.Request) -> web.Response:
        key = request.path_qs
        lock = locks.setdefault(key, asyncio.Lock())
        async with lock:
            hit = cache.get(key)
            if hit is None or time.monotonic() - hit[0] > 1.0:
                async with session.get(f"http://127.0.0.1:{args.upstream}{key}",
                                       headers={"Accept": request.headers.get("Accept", "*/*")}
                                       ) as up:
                    hit = (time.monotonic(), up.status, await up.read(),
                           up.headers.get("Content-Type", "application/octet-stream"))
                cache[key] = hit
        response = web.Response(status=hit[1], body=hit[2])
        response.headers["Content-Type"] = hit[3]
        return response

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    for port in args.port:
        await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await runner.cleanup()
    await session.close()


if __name__ == "__main__":
    asyncio.run(main())
