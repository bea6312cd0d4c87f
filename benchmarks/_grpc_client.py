"""A grpc.aio load client driven through stdin, so that one process serves a whole benchmark.

Each stdin line is a JSON request ``{"target": "127.0.0.1:N", "duration": S, "warmup": S,
"concurrency": C, "rate": R}``; the answer is one JSON line ``{"rpcs", "errors", "seconds",
"rate", "p50_ms", "p99_ms"}``. Without ``rate``, C callers call back to back (closed loop: the
most the server answers); with it, calls start at R per second whatever the answers do (open
loop), at most C at a time. Channels stay open between requests, so connecting is never
measured. Calls cycle over the Oracle's eight methods with raw-bytes requests.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import grpc
import grpc.aio

from sidecar.demo import METHODS, full_method

REQUEST = b"q" * 32
_perf = time.perf_counter


def _identity(b: bytes) -> bytes:
    return b


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, int(q / 100 * len(ordered) + 0.5) - 1))]


class Client:
    def __init__(self) -> None:
        self.channels: dict[str, tuple[grpc.aio.Channel, list[Any]]] = {}

    def calls(self, target: str) -> list[Any]:
        if target not in self.channels:
            channel = grpc.aio.insecure_channel(target)
            calls = [channel.unary_unary(full_method(m), request_serializer=_identity,
                                         response_deserializer=_identity) for m in METHODS]
            self.channels[target] = (channel, calls)
        return self.channels[target][1]

    async def drive(self, target: str, seconds: float, concurrency: int,
                    latencies: list[float] | None) -> tuple[int, int]:
        calls = self.calls(target)
        done = errors = 0
        stop_at = _perf() + seconds

        async def worker(k: int) -> None:
            nonlocal done, errors
            i = k
            while _perf() < stop_at:
                call = calls[i & 7]
                i += 1
                t0 = _perf()
                try:
                    await call(REQUEST, timeout=10)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                if latencies is not None:
                    latencies.append(_perf() - t0)
                done += 1

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        return done, errors

    async def paced(self, target: str, seconds: float, rate: float, concurrency: int,
                    latencies: list[float]) -> tuple[int, int]:
        calls = self.calls(target)
        room = asyncio.Semaphore(concurrency)
        done = errors = 0

        async def one(i: int) -> None:
            nonlocal done, errors
            async with room:
                t0 = _perf()
                try:
                    await calls[i & 7](REQUEST, timeout=10)
                except grpc.aio.AioRpcError:
                    errors += 1
                    return
                latencies.append(_perf() - t0)
                done += 1

        tasks: set[asyncio.Task[None]] = set()
        start, n = _perf(), 0
        while (elapsed := _perf() - start) < seconds:
            while n < int(elapsed * rate):
                task = asyncio.create_task(one(n))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
            await asyncio.sleep(0.001)
        if tasks:
            await asyncio.gather(*tasks)
        return done, errors

    async def run(self, req: dict[str, Any]) -> dict[str, Any]:
        target, concurrency = req["target"], int(req.get("concurrency", 16))
        if req.get("warmup", 0) > 0:
            await self.drive(target, float(req["warmup"]), concurrency, None)
        latencies: list[float] = []
        t0 = _perf()
        if req.get("rate"):
            done, errors = await self.paced(target, float(req["duration"]), float(req["rate"]),
                                            concurrency, latencies)
        else:
            done, errors = await self.drive(target, float(req["duration"]), concurrency,
                                            latencies)
        seconds = _perf() - t0
        latencies.sort()
        return {"rpcs": done, "errors": errors, "seconds": seconds, "rate": done / seconds,
                "p50_ms": _percentile(latencies, 50) * 1000,
                "p99_ms": _percentile(latencies, 99) * 1000}


async def main() -> None:
    client = Client()
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        print(json.dumps(await client.run(json.loads(line))), flush=True)
    for channel, _ in client.channels.values():
        await channel.close()


if __name__ == "__main__":
    asyncio.run(main())
