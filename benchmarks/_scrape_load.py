"""Scrape load on a sidecar, one role per process so that no role waits on another's GIL.

``python -m benchmarks._scrape_load ROLE ...``, each role ending by itself after ``--seconds``
and printing one JSON line:

- ``push``: cumulative snapshots of ``--series`` methods, every method changed in each, one
  every ``--every`` seconds (encoded before the clock starts), in datagrams of at most
  ``--part-bytes``.
- ``scrape``: GET /metrics every ``--every`` seconds, text and OpenMetrics in turn, and
  /api/v1/snapshot every ``--json-every`` times; how many series each answer held.
- ``probe``: GET /livez on a new connection every ``--every`` seconds, as the kubelet does;
  every probe's duration.
- ``serve``: the sidecar's app in this process (with ``--history``, after living through that
  much busy history first) with a monitor on its event loop: for each 1 ms
  timer, how late it ran (wall clock: the loop's stalls, waits for a CPU included) and the CPU
  time the loop's thread spent in between (its own work, whatever the machine's load).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.client
import json
import socket
import sys
import time
from typing import Any

from sidecar import protocol

__all__ = ["snapshots"]

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def snapshots(series: int, pushes: int, started: float, limit: int = protocol.MAX_DATAGRAM,
              source: str = "scrape-load", final: bool = False) -> list[list[bytes]]:
    """``pushes`` cumulative snapshots of ``series`` methods, every method changed in each,
    from the process ``source`` (whose last one says it is exiting when ``final``)."""
    n = len(protocol.DEFAULT_BUCKETS) + 1
    rows: list[dict[str, Any]] = [
        {"service": "load.v1.Load", "method": f"Method{j:04d}", "type": "unary", "started": 0,
         "codes": {"OK": 0, protocol.CODES[13]: 0}, "hist": [0] * n, "sum": 0.0, "max": 0.3}
        for j in range(series)]
    out = []
    for seq in range(1, pushes + 1):
        for j, row in enumerate(rows):
            k = 50 + (seq * 7 + j) % 100
            row["started"] += k
            row["codes"]["OK"] += k - 1
            row["codes"][protocol.CODES[13]] += 1
            row["hist"][(seq + j) % 7] += k
            row["sum"] += k * 0.004
        out.append(protocol.encode(
            source={"id": source, "pid": 4243, "started": started,
                    "service": "load.v1.Load", "version": "bench"},
            seq=seq, time=time.time(), buckets=protocol.DEFAULT_BUCKETS, rows=rows,
            health="healthy", checks={}, reporter={"dropped": 0, "send_errors": 0,
                                                   "overflow": 0}, limit=limit,
            final=final and seq == pushes))
    return out


def push(args: argparse.Namespace) -> dict[str, Any]:
    pushes = snapshots(args.series, max(1, int(args.seconds / args.every)), time.time(),
                       args.part_bytes)
    print(json.dumps({"ready": True}), flush=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as tx:
        start = time.monotonic()
        for i, parts in enumerate(pushes):
            for part in parts:
                tx.sendto(part, args.socket)
            time.sleep(max(0.0, start + (i + 1) * args.every - time.monotonic()))
    return {"pushes": len(pushes), "parts": len(pushes[0])}


def scrape(args: argparse.Namespace) -> dict[str, Any]:
    kinds: list[tuple[str, dict[str, str]]] = [("/metrics", {}),
                                               ("/metrics", {"Accept": OPENMETRICS})]
    kinds = kinds * max(1, args.json_every // 2)
    if args.json_every:
        kinds[-1] = ("/api/v1/snapshot", {})
    marker = {"/metrics": b"grpc_server_handled_total{", "/api/v1/snapshot": b'"method"'}
    done = []
    end = time.monotonic() + args.seconds
    i = 0
    while time.monotonic() < end:
        path, headers = kinds[i % len(kinds)]
        conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
        t0 = time.monotonic()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        seconds = time.monotonic() - t0
        conn.close()
        done.append({"path": path, "om": bool(headers), "status": response.status,
                     "seconds": seconds, "count": body.count(marker[path])})
        i += 1
        time.sleep(max(0.0, args.every - seconds))
    return {"scrapes": done}


def probe(args: argparse.Namespace) -> dict[str, Any]:
    seconds, statuses = [], []
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=10)
            conn.request("GET", "/livez")
            response = conn.getresponse()
            response.read()
            conn.close()
            statuses.append(response.status)
        except OSError as err:
            statuses.append(str(err))
        seconds.append(time.monotonic() - t0)
        time.sleep(max(0.0, args.every - seconds[-1]))
    return {"seconds": seconds, "statuses": statuses}


def _history(store: Any, shift: list[float], seconds: float, series: int) -> None:
    """Take ``store`` through the last ``seconds`` as a sidecar running that long lives them:
    an earlier process of the service pushed ``series`` busy methods (once a minute, and every
    5 s in the last five minutes, enough for every history point the sidecar keeps), then
    exited (its totals retired, as after any restart of the service), and the store's clock
    (``now + shift[0]``) moves with it up to now."""
    from sidecar.store import RING_FINE, RING_STEP

    times = [ago for ago in [*range(int(seconds), int(RING_FINE), -60),
                             *range(int(RING_FINE), 0, -int(RING_STEP))] if ago <= seconds]
    if not times:
        return
    pushes = snapshots(series, len(times), time.time() - seconds, source="an-hour-before",
                       final=True)
    for ago, parts in zip(times, pushes, strict=True):
        shift[0] = -ago
        for part in parts:
            store.ingest(part)
        store.tick()
    shift[0] = 0.0


def serve(args: argparse.Namespace) -> dict[str, Any]:
    from aiohttp import web

    from sidecar.server import Settings, create_app
    from sidecar.store import Store

    async def main() -> dict[str, Any]:
        shift = [-args.history]  # the store's clock: a sidecar started --history seconds ago
        store = Store(clock=lambda: time.monotonic() + shift[0],
                      wall=lambda: time.time() + shift[0])
        app = create_app(Settings(socket=args.socket, host="127.0.0.1", port=args.port), store)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()  # start-up, and what it freezes out of the GC, come first
        _history(store, shift, args.history, args.series)
        gc.collect()  # what the hour's ticks collected (sidecar.collector.full_if_due)
        await web.TCPSite(runner, "127.0.0.1", args.port).start()
        print(json.dumps({"ready": True}), flush=True)
        loop = asyncio.get_running_loop()
        lags, cpu, full = [], [], []
        started = [0.0]

        def collections(phase: str, info: dict[str, Any]) -> None:
            if info["generation"] == 2:
                if phase == "start":
                    started[0] = time.thread_time()
                else:
                    full.append(time.thread_time() - started[0])

        gc.callbacks.append(collections)
        end = loop.time() + args.seconds
        while loop.time() < end:
            t0, c0 = loop.time(), time.thread_time()
            await asyncio.sleep(0.001)
            lags.append(loop.time() - t0 - 0.001)
            cpu.append(time.thread_time() - c0)
        gc.callbacks.remove(collections)
        await runner.cleanup()
        return {"lags": lags, "cpu": cpu, "full": full}

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._scrape_load")
    parser.add_argument("role", choices=["push", "scrape", "probe", "serve"])
    parser.add_argument("--socket", default="")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--every", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json-every", type=int, default=4,
                        help="every this many scrapes, /api/v1/snapshot instead (0: never)")
    parser.add_argument("--part-bytes", type=int, default=protocol.MAX_DATAGRAM,
                        help="largest datagram a push is split into")
    parser.add_argument("--history", type=float, default=0.0,
                        help="serve: seconds of busy history the store has lived through "
                             "before serving (3600: every history point it keeps)")
    args = parser.parse_args()
    role = {"push": push, "scrape": scrape, "probe": probe, "serve": serve}[args.role]
    json.dump(role(args), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
