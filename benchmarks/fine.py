"""Benchmark 8: what the fine histogram (issue 14) costs, against the classic buckets alone.

Both variants run in this one process, interleaved round by round: "classic" is the reporter's
record path as it was before the fine histogram (one ``bisect_left`` over the 14 classic bounds
into a 15-entry list), "fine" is the path now (one ``bisect_left`` over the 685 fine bounds into
a 686-entry list; the classic counts are summed from it once per push). The loop is the isolated
benchmark's reporter loop: ``series()``, ``started += 1``, two ``perf_counter()`` calls,
``observe()``, cycling over the Oracle's 8 methods.

Then the bytes of the Oracle's push (8 methods, realistic durations, and the worst case of every
fine bucket in use), and the sidecar's memory for 1 000 methods: a child process per variant
feeds a real Store (decode, apply, history ring) an hour of pushes on a simulated clock, enough
to fill the ring as a real hour would (60 points 5 s apart, then one a minute), and reports its
RSS. The classic variant sends the same rows without their ``fine`` field, as an older reporter
does, so everything else is the same.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import random
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks.isolated import record_loop
from benchmarks.procs import ROOT
from benchmarks.report import Section, spread, table
from sidecar import protocol
from sidecar.demo import METHODS, SERVICE, full_method
from sidecar.reporter.core import Reporter

__all__ = ["run"]

perf = time.perf_counter
FULL = [full_method(m) for m in METHODS]
# Typical seconds per Oracle method (log-normal around it, sigma 0.5), as the demo's load shows.
TYPICAL = dict(zip(METHODS, (0.012, 0.018, 0.009, 0.045, 0.006, 0.26, 0.021, 0.001),
                   strict=True))


def reporter(variant: str, methods: list[str] = FULL, socket_path: str = "/nonexistent") -> Any:
    """A reporter recording the ``fine`` way (now) or the ``classic`` way (before issue 14)."""
    rep = Reporter(SERVICE, "bench", methods, socket_path, max_series=2000)
    if variant == "classic":  # the record path before the fine histogram, statement for statement
        rep._fine = None
        rep._record_bounds = rep.buckets
        rep._n_record = len(rep.buckets) + 1
        rep._reset_state()
    return rep


def traffic(rep: Any, calls: int, seed: int = 1, methods: list[str] = FULL,
            typical: Callable[[int], float] | None = None) -> None:
    """``calls`` log-normal durations per method."""
    rng = random.Random(seed)
    for j, full in enumerate(methods):
        series = rep.series(full)
        base = typical(j) if typical else TYPICAL[full.rsplit("/", 1)[1]]
        for _ in range(calls):
            rep.observe(series, base * rng.lognormvariate(0, 0.5))


def push_bytes(rep: Any, strip_fine: bool = False) -> list[int]:
    rows = rep.rows()
    if strip_fine:
        for row in rows:
            row.pop("fine", None)
    datagrams = protocol.encode(
        source={"id": rep.source_id, "pid": 1, "started": 1.0}, seq=1, time=2.0,
        buckets=rep.buckets, rows=rows, health="healthy", checks={}, reporter={})
    return [len(d) for d in datagrams]


# -- memory: one child process per variant -------------------------------------------------------

def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def memory_child(variant: str, methods: int, calls_per_step: int) -> dict[str, Any]:
    """An hour of pushes of ``methods`` methods into a Store on a simulated clock."""
    from sidecar.exposition import Exposition
    from sidecar.store import Store

    class Clock:
        now = 1000.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    started = 1.7e9 + clock.now  # the processes start with the sidecar: no prehistory
    store = Store(stale_after=1e9, expire_after=1e9, max_series=methods + 10, clock=clock,
                  wall=lambda: 1.7e9 + clock.now)
    names = [f"/{SERVICE}/Method{j:04d}" for j in range(methods)]
    rep = reporter("fine", names)
    rng = random.Random(7)
    typical = [0.002 * 1.005 ** j for j in range(methods)]  # 2 ms to ~300 ms across methods
    gc.collect()
    rss_start = _rss_mib()
    sizes: list[int] = []
    ingest_ms: list[float] = []
    # 55 points a minute apart, then 60 points 5 s apart: the ring of a sidecar after an hour.
    steps = [60.0] * 55 + [5.0] * 60
    for seq, step in enumerate(steps, 1):
        clock.now += step
        for full, base in zip(names, typical, strict=True):
            series = rep.series(full)
            for _ in range(calls_per_step):
                rep.observe(series, base * rng.lognormvariate(0, 0.5))
        rows = rep.rows()
        if variant == "classic":
            for row in rows:
                row.pop("fine", None)
        datagrams = protocol.encode(
            source={"id": rep.source_id, "pid": 1, "started": started}, seq=seq,
            time=1.7e9 + clock.now, buckets=rep.buckets, rows=rows, health="healthy",
            checks={}, reporter={})
        sizes = [len(d) for d in datagrams]
        t0 = perf()
        for d in datagrams:
            reason = store.ingest(d)
            assert reason is None, reason
        ingest_ms.append((perf() - t0) * 1000)
        store.tick()
    gc.collect()
    t0 = perf()
    expo = Exposition(store)
    doc = expo.snapshot({"status": "healthy"})
    snapshot_ms = (perf() - t0) * 1000
    body = len(json.dumps(doc, separators=(",", ":")))
    history_ms = []
    for _ in range(2):  # the first sums every ring point, the second only the newest
        t0 = perf()
        expo.history()
        history_ms.append((perf() - t0) * 1000)
    return {"history_ms": history_ms, "ingest_ms": sorted(ingest_ms)[len(ingest_ms) // 2],
            "variant": variant, "methods": methods,
            "ring_points": len(store.ring),
            "rss_start": rss_start, "rss_end": _rss_mib(),
            "bytes_per_push": sum(sizes), "datagrams": len(sizes),
            "snapshot_ms": snapshot_ms, "snapshot_bytes": body}


def _memory(variant: str, methods: int, calls: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.fine", "--memory", variant, "--methods", str(methods),
         "--calls", str(calls)], cwd=ROOT, capture_output=True, check=True, timeout=900)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


# -- the run ------------------------------------------------------------------------------------

def run(quick: bool, machine: str, command: str) -> Section:
    rounds = 3 if quick else 9
    n = 50_000 if quick else 500_000
    variants = ("classic", "fine")
    loops = {v: record_loop(reporter(v)) for v in variants}
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    ratios = []
    for loop in loops.values():
        loop(5_000)  # warm up
    for r in range(rounds):
        for v in (variants if r % 2 == 0 else variants[::-1]):
            gc.collect()
            t0 = perf()
            loops[v](n)
            seconds[v].append((perf() - t0) / n)
        ratios.append(seconds["fine"][-1] / seconds["classic"][-1])
    us = {v: spread([s * 1e6 for s in seconds[v]]) for v in variants}
    ratio = spread(ratios)

    flush_ms: dict[str, list[float]] = {v: [] for v in variants}
    oracle: dict[str, list[int]] = {}
    for v in variants:
        rep = reporter(v)
        traffic(rep, 10_000)
        oracle[v] = push_bytes(rep)
        for _ in range(5):
            t0 = perf()
            push_bytes(rep)
            flush_ms[v].append((perf() - t0) * 1000)
    worst = reporter("fine")
    bounds = worst._record_bounds
    for full in FULL:  # every fine bucket of every method in use, with 6-digit counts
        series = worst.series(full)
        series.hist = [123_456] * len(series.hist)
        series.started = sum(series.hist)
        series.ok = series.started
    worst_bytes = push_bytes(worst)

    methods = 200 if quick else 1000
    calls = 5 if quick else 20
    memory = {v: _memory(v, methods, calls) for v in variants}

    rows1 = [(v, "bisect over 14 classic bounds" if v == "classic" else
              f"bisect over {len(bounds)} fine bounds", us[v].text(3),
              "1 (reference)" if v == "classic" else f"×{ratio.median:.2f} "
              f"(×{ratio.low:.2f}–×{ratio.high:.2f})", f"{n:,}") for v in variants]
    t1 = table(["record path", "what one recording does", "µs per RPC, median (min–max)",
                "× classic, median (min–max)", "n per round"], rows1, right=(2, 3, 4))
    rows2 = [
        ("Oracle, 8 methods × 10 000 calls, classic only (before)", f"{sum(oracle['classic']):,}",
         len(oracle["classic"]), spread(flush_ms["classic"]).text(3)),
        ("Oracle, 8 methods × 10 000 calls, classic + fine (after)", f"{sum(oracle['fine']):,}",
         len(oracle["fine"]), spread(flush_ms["fine"]).text(3)),
        ("worst case: every one of the 686 fine buckets used by all 8 methods",
         f"{sum(worst_bytes):,}", len(worst_bytes), "–"),
    ]
    t2 = table(["push", "bytes", "datagrams", "rows() + encode, ms median (min–max)"], rows2,
               right=(1, 2, 3))
    rows3 = [(v, f"{m['methods']:,}", m["ring_points"], f"{m['bytes_per_push']:,}",
              m["datagrams"], f"{m['ingest_ms']:.0f}", f"{m['rss_start']:.1f}",
              f"{m['rss_end']:.1f}",
              f"{m['rss_end'] - m['rss_start']:.1f}", f"{m['snapshot_ms']:.0f}",
              f"{m['snapshot_bytes'] / 1024:,.0f}",
              " / ".join(f"{x:.0f}" for x in m["history_ms"])) for v, m in memory.items()]
    t3 = table(["variant", "methods", "ring points", "bytes per push", "datagrams",
                "decode + apply per push, ms (median)",
                "RSS before, MiB", "RSS after an hour, MiB", "growth, MiB",
                "snapshot JSON, ms", "snapshot JSON, KiB", "history, first / next, ms"], rows3,
               right=tuple(range(1, 12)))
    section = Section(
        key="fine",
        title="8. The fine histogram: record path, push size, sidecar memory",
        intro=(__doc__ or "").split("\n\n", 1)[1].replace("\n", " ").strip()
        + (" Quick mode: few, short rounds, 200 methods; figures are indicative only."
           if quick else ""),
        machine=machine, command=command, tables=[t1, t2, t3])
    fine_us = us["fine"]
    section.targets = [
        ("reporter ≤ 1 µs per RPC (median, isolated) with the fine histogram",
         f"{fine_us.text(3)} µs (classic {us['classic'].text(3)} µs)", fine_us.median <= 1.0),
        ("the Oracle's push stays one datagram",
         f"{len(oracle['fine'])} datagram of {sum(oracle['fine']):,} bytes; worst case "
         f"{len(worst_bytes)} of {sum(worst_bytes):,} bytes", len(worst_bytes) == 1),
    ]
    grow = {v: m["rss_end"] - m["rss_start"] for v, m in memory.items()}
    section.notes = [
        f"The fine record path costs {1e3 * (fine_us.median - us['classic'].median):.0f} ns "
        f"more per RPC than the classic one (median of rounds): the binary search is "
        f"{math.ceil(math.log2(len(bounds) + 1))} steps instead of 4.",
        f"Sidecar memory for {methods:,} methods after an hour: the history ring holds "
        f"{memory['fine']['ring_points']} points of every method's totals; the fine counts add "
        f"{grow['fine'] - grow['classic']:.1f} MiB to the classic "
        f"{grow['classic']:.1f} MiB (each method here spreads over ~150 fine buckets; idle "
        f"methods share one copy across points).",
    ]
    return section


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--memory", choices=("classic", "fine"), required=True)
    parser.add_argument("--methods", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(memory_child(args.memory, args.methods, args.calls)))


if __name__ == "__main__":
    main()
