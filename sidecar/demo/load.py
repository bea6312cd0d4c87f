"""``oracle-sidecar load``: real gRPC traffic to any Oracle, and what the client saw.

Calls go out from ``--concurrency`` asyncio workers over one grpc.aio channel, optionally paced
to ``--rate`` calls per second, with methods picked by smooth weighted round-robin from ``--mix``
(the same sequence on every run, so ``--requests 800`` sends exactly 100 calls per method).
It stops after ``--requests`` calls or ``--duration`` seconds, or on SIGINT/SIGTERM (calls in
flight are then cancelled and not counted).

``--json`` prints one JSON object at the end::

    {"target": "localhost:50052", "total": 2000, "ok": 1950, "errors": 50,
     "duration_seconds": 1.52, "rate_per_second": 1315.8, "interrupted": false,
     "by_method": {"GetReading": {"OK": 240, "Internal": 10}, ...},
     "by_code": {"OK": 1950, "Internal": 50},
     "latency_ms": {"p50": 0.9, "p95": 2.1, "p99": 3.4, "max": 8.0, "mean": 1.1},
     "latency_ms_by_method": {"GetReading": {"p50": ...}, ...}}

Codes are ``grpc.StatusCode`` names. Latency is measured around each call, in milliseconds,
percentiles by nearest rank. On a terminal, a progress line goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc

from sidecar import options
from sidecar.demo import METHODS
from sidecar.demo._pb import oracle_pb2_grpc as pb_grpc
from sidecar.demo.samples import make_request
from sidecar.protocol import CODES

__all__ = ["Plan", "Tally", "WeightedRoundRobin", "configure", "drive", "parse_mix", "run"]


@dataclass(frozen=True)
class Plan:
    """What to send; ``requests`` and ``duration`` both None means until stopped."""

    target: str = "localhost:50052"
    requests: int | None = None
    duration: float | None = None
    concurrency: int = 8
    rate: float | None = None
    mix: tuple[tuple[str, int], ...] = tuple((m, 1) for m in METHODS)
    timeout: float = 30.0


@dataclass
class Tally:
    """What came back: counts per method and code, and every latency in milliseconds."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    sent: int = 0
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    interrupted: bool = False

    def record(self, method: str, code: str, ms: float) -> None:
        """Count one finished call."""
        self.counts.setdefault(method, Counter())[code] += 1
        self.latencies.setdefault(method, []).append(ms)

    @property
    def done(self) -> int:
        """Calls finished so far."""
        return sum(sum(c.values()) for c in self.counts.values())

    @property
    def errors(self) -> int:
        """Calls finished with a code other than OK."""
        return sum(n for c in self.counts.values() for code, n in c.items() if code != "OK")

    def summary(self, target: str) -> dict[str, Any]:
        """The JSON object ``--json`` prints."""
        elapsed = (self.finished or time.perf_counter()) - self.started
        by_code: Counter[str] = Counter()
        for counts in self.counts.values():
            by_code.update(counts)
        total = sum(by_code.values())
        every = [ms for values in self.latencies.values() for ms in values]
        return {
            "target": target,
            "total": total,
            "ok": by_code.get("OK", 0),
            "errors": total - by_code.get("OK", 0),
            "duration_seconds": round(elapsed, 3),
            "rate_per_second": round(total / elapsed, 1) if elapsed > 0 else 0.0,
            "interrupted": self.interrupted,
            "by_method": {m: dict(sorted(c.items())) for m, c in sorted(self.counts.items())},
            "by_code": dict(sorted(by_code.items())),
            "latency_ms": percentiles(every),
            "latency_ms_by_method": {m: percentiles(v) for m, v in sorted(self.latencies.items())},
        }


def percentiles(values: Iterable[float]) -> dict[str, float]:
    """p50/p95/p99 by nearest rank, max and mean, rounded to microseconds; zeros when empty."""
    ordered = sorted(values)
    if not ordered:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}

    def rank(p: float) -> float:
        return round(ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)], 3)

    return {"p50": rank(50), "p95": rank(95), "p99": rank(99), "max": round(ordered[-1], 3),
            "mean": round(sum(ordered) / len(ordered), 3)}


class WeightedRoundRobin:
    """Smooth weighted round-robin (as nginx does it): ``A=2,B=1`` gives A B A, A B A, ..."""

    def __init__(self, weights: Iterable[tuple[str, int]]) -> None:
        self._weights = [(name, w) for name, w in weights if w > 0]
        if not self._weights:
            raise ValueError("the mix needs at least one method with a weight above zero")
        self._total = sum(w for _, w in self._weights)
        self._current = [0] * len(self._weights)

    def next(self) -> str:
        """The next name in the sequence."""
        best = 0
        for k, (_, weight) in enumerate(self._weights):
            self._current[k] += weight
            if self._current[k] > self._current[best]:
                best = k
        self._current[best] -= self._total
        return self._weights[best][0]


async def drive(plan: Plan, tally: Tally, stop: asyncio.Event) -> None:
    """Send the calls of ``plan`` and record them in ``tally`` until done or ``stop`` is set."""
    picker = WeightedRoundRobin(plan.mix)
    deadline = time.perf_counter() + plan.duration if plan.duration is not None else None
    interval = 1.0 / plan.rate if plan.rate else 0.0
    loop = asyncio.get_running_loop()
    next_at = loop.time()

    def claim() -> tuple[int, str] | None:
        if stop.is_set() or (plan.requests is not None and tally.sent >= plan.requests):
            return None
        if deadline is not None and time.perf_counter() >= deadline:
            return None
        tally.sent += 1
        return tally.sent - 1, picker.next()

    async def pace() -> None:
        nonlocal next_at
        now = loop.time()
        at = max(next_at, now)  # after a stall, carry on at the rate; no catch-up burst
        next_at = at + interval
        if at > now:
            await asyncio.sleep(at - now)

    async with grpc.aio.insecure_channel(plan.target) as channel:
        stub = pb_grpc.OracleServiceStub(channel)
        calls: dict[str, Callable[..., Any]] = {m: getattr(stub, m) for m in METHODS}

        async def worker() -> None:
            while True:
                if interval:
                    await pace()
                ticket = claim()
                if ticket is None:
                    return
                i, method = ticket
                started = time.perf_counter()
                try:
                    await calls[method](make_request(method, i), timeout=plan.timeout)
                    code = "OK"
                except grpc.aio.AioRpcError as err:
                    code = CODES[err.code().value[0]]  # Go's name, as the sidecar's
                tally.record(method, code, (time.perf_counter() - started) * 1000)

        workers = [asyncio.create_task(worker()) for _ in range(plan.concurrency)]
        stopped = asyncio.create_task(stop.wait())
        try:
            pending: set[asyncio.Future[Any]] = set(workers)
            while pending:
                done, _ = await asyncio.wait(pending | {stopped},
                                             return_when=asyncio.FIRST_COMPLETED)
                pending -= done
                if stopped in done:
                    tally.interrupted = True
                    break
        finally:
            for task in [*workers, stopped]:
                task.cancel()
            await asyncio.gather(*workers, stopped, return_exceptions=True)
    tally.finished = time.perf_counter()


async def _progress(plan: Plan, tally: Tally) -> None:
    """Redraw one status line on stderr twice a second."""
    last_done, last_at = 0, time.perf_counter()
    while True:
        await asyncio.sleep(0.5)
        now, done = time.perf_counter(), tally.done
        rate = (done - last_done) / (now - last_at)
        last_done, last_at = done, now
        of = f"/{plan.requests}" if plan.requests else ""
        left = ""
        if plan.duration:
            left = f"  {max(plan.duration - (now - tally.started), 0):.0f} s left"
        sys.stderr.write(f"\r\x1b[K{done}{of} calls  {tally.errors} errors  "
                         f"{rate:.0f} RPC/s{left}")
        sys.stderr.flush()


async def _main(plan: Plan, show_progress: bool) -> Tally:
    tally = Tally()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    progress = asyncio.create_task(_progress(plan, tally)) if show_progress else None
    try:
        await drive(plan, tally, stop)
    finally:
        if progress is not None:
            progress.cancel()
            await asyncio.gather(progress, return_exceptions=True)
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return tally


def render(summary: dict[str, Any]) -> str:
    """The human-readable report: totals, then one row per method."""
    codes = list(summary["by_code"])
    lines = [
        f"{summary['target']}: {summary['total']} calls in {summary['duration_seconds']} s "
        f"({summary['rate_per_second']} RPC/s), {summary['errors']} errors"
        + (" (interrupted)" if summary["interrupted"] else ""),
        "",
        f"{'method':<20}" + "".join(f"{c:>12}" for c in codes) + f"{'p50 ms':>10}{'p95 ms':>10}"
        f"{'p99 ms':>10}",
    ]
    rows = [*summary["by_method"].items(), ("all", summary["by_code"])]
    for method, counts in rows:
        latency = (summary["latency_ms"] if method == "all"
                   else summary["latency_ms_by_method"][method])
        lines.append(f"{method:<20}" + "".join(f"{counts.get(c, 0):>12}" for c in codes)
                     + "".join(f"{latency[p]:>10.2f}" for p in ("p50", "p95", "p99")))
    return "\n".join(lines)


# -- command line ------------------------------------------------------------------------------

def parse_mix(text: str) -> list[tuple[str, int]]:
    """``GetReading=3,HealthCheck`` -> [("GetReading", 3), ("HealthCheck", 1)]."""
    mix = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        method, eq, weight = item.partition("=")
        method = method.strip()
        if method not in METHODS:
            raise argparse.ArgumentTypeError(
                f"{method!r} is not a method of the Oracle ({', '.join(METHODS)})")
        try:
            value = int(weight) if eq else 1
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r}: the weight must be a whole number") \
                from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{item!r}: the weight must be zero or more")
        mix.append((method, value))
    return mix


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the load generator's flags, each with its env twin."""
    options.add(parser, "--target", env="ORACLE_TARGET", type=options.host_port,
                default="localhost:50052", help="the Oracle, HOST:PORT")
    options.add(parser, "--requests", env="LOAD_REQUESTS", type=options.positive_int,
                help="stop after this many calls")
    options.add(parser, "--duration", env="LOAD_DURATION", type=options.positive_duration,
                help="stop after this many seconds (without either: until Ctrl-C)")
    options.add(parser, "--concurrency", env="LOAD_CONCURRENCY", type=options.positive_int,
                default=8, help="calls in flight at most")
    options.add(parser, "--rate", env="LOAD_RATE", type=options.positive_float,
                help="calls per second at most (default: as fast as the Oracle answers)")
    options.add(parser, "--mix", env="LOAD_MIX", type=parse_mix, repeat=True,
                help="METHOD[=WEIGHT],... (default: every method, equal weights)")
    options.add(parser, "--timeout", env="LOAD_TIMEOUT", type=options.positive_duration,
                default=30.0, help="deadline of each call, in seconds")
    options.flag(parser, "--json", env="LOAD_JSON",
                 help="print one JSON object with the results instead of a table")


def run(args: argparse.Namespace) -> int:
    """Send the traffic, print the report; 0 when the run completed (errors are reported)."""
    mix = tuple(pair for part in (args.mix or []) for pair in part) or Plan.mix
    if not any(weight > 0 for _, weight in mix):
        print("load: error: --mix needs a method with a weight above zero", file=sys.stderr)
        return 2
    plan = Plan(target=args.target, requests=args.requests, duration=args.duration,
                concurrency=args.concurrency, rate=args.rate, mix=mix, timeout=args.timeout)
    tally = asyncio.run(_main(plan, show_progress=sys.stderr.isatty()))
    summary = tally.summary(plan.target)
    print(json.dumps(summary) if args.json else render(summary), flush=True)
    return 0
