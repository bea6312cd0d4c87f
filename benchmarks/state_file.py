"""The sidecar's state file: what a save and a load cost, against ingesting the pushes.

In-process on the real code: a Store fed real encoded snapshots from 1, 8 or 64 reporting
processes with 8 methods each (every code and bucket in use), then ``StateFile.save()`` (JSON,
temporary file, rename) and ``StateFile.load()`` timed over rounds. Each process pushes once a
second and a save happens at most every ``SAVE_EVERY`` seconds when only counts change, so the
ratio that matters is one save per ``SAVE_EVERY`` seconds against ``SAVE_EVERY`` seconds of
ingest.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.report import Section, table
from sidecar import protocol
from sidecar.persist import SAVE_EVERY, StateFile
from sidecar.store import Store

METHODS = 8


def _snapshot(source: int, seq: int) -> list[bytes]:
    n = len(protocol.DEFAULT_BUCKETS) + 1
    rows = []
    for m in range(METHODS):
        calls = 1000 * seq + m
        hist = [calls // n] * n
        hist[0] += calls - sum(hist)
        rows.append({"service": "nps.oracle.OracleService", "method": f"Method{m}",
                     "type": "unary", "started": calls,
                     "codes": {"OK": calls - 3, "Unavailable": 1, "Internal": 2}
                     if "Unavailable" in protocol.CODES else
                     {"OK": calls - 3, "UNAVAILABLE": 1, "INTERNAL": 2},
                     "hist": hist, "sum": 0.01 * calls, "max": 0.5,
                     "exceptions": {"ValueError": 2}})
    return protocol.encode(
        source={"id": f"{source:016x}", "pid": 1000 + source, "started": time.time() - 60,
                "service": "nps.oracle.OracleService", "version": "1"},
        seq=seq, time=time.time(), buckets=protocol.DEFAULT_BUCKETS, rows=rows,
        health="healthy", checks={}, reporter={}, final=False)


def _on_loop(state: StateFile) -> tuple[float, float]:
    """A save made on the event loop (``StateFile.save_on_loop``): the CPU time the loop's
    thread spends on it, and the longest step it gives the loop (another task counts its
    turns meanwhile, in a second save)."""
    async def cpu() -> float:
        t0 = time.thread_time()
        assert await state.save_on_loop()
        return time.thread_time() - t0

    async def longest() -> float:
        saving, steps = state.save_on_loop(), [0.0]
        last = time.thread_time()
        while not saving.done():
            await asyncio.sleep(0)
            now = time.thread_time()
            steps.append(now - last)
            last = now
        assert saving.result()
        return max(steps)

    return asyncio.run(cpu()), asyncio.run(longest())


def _measure(processes: int, rounds: int, directory: Path
             ) -> tuple[float, float, float, float, float, int]:
    """(ingest µs per snapshot, save ms, the loop's ms of a save on it, its longest step ms,
    load ms, file bytes), medians over ``rounds``."""
    sock = str(directory / f"p{processes}.sock")
    store = Store()
    seq = 1
    for p in range(processes):
        for d in _snapshot(p, seq):
            assert store.ingest(d) is None
    ingest, save, loop, step, load = [], [], [], [], []
    state = StateFile(sock, store)
    for _ in range(rounds):
        seq += 1
        datagrams = [d for p in range(processes) for d in _snapshot(p, seq)]
        t0 = time.perf_counter()
        for d in datagrams:
            store.ingest(d)
        ingest.append((time.perf_counter() - t0) / processes * 1e6)
        t0 = time.perf_counter()
        assert state.save()
        save.append((time.perf_counter() - t0) * 1e3)
        on_loop = _on_loop(state)
        loop.append(on_loop[0] * 1e3)
        step.append(on_loop[1] * 1e3)
        fresh = Store()
        t0 = time.perf_counter()
        assert StateFile(sock, fresh).load()
        load.append((time.perf_counter() - t0) * 1e3)
        assert fresh.totals() == store.totals()
    size = Path(state.path).stat().st_size
    return (statistics.median(ingest), statistics.median(save), statistics.median(loop),
            statistics.median(step), statistics.median(load), size)


def run(quick: bool, machine: str, command: str) -> Section:
    rounds = 5 if quick else 30
    rows = []
    shares = []
    with tempfile.TemporaryDirectory(prefix="bench-state-") as tmp:
        for processes in (1, 8, 64):
            ingest_us, save_ms, loop_ms, step_ms, load_ms, size = _measure(
                processes, rounds, Path(tmp))
            # per SAVE_EVERY seconds: one save against SAVE_EVERY pushes of every process
            share = save_ms * 1e3 / (SAVE_EVERY * processes * ingest_us)
            shares.append(share)
            rows.append((str(processes), f"{size / 1024:,.1f} KiB", f"{save_ms:.2f}",
                         f"{loop_ms:.2f} / {step_ms:.2f}", f"{load_ms:.2f}",
                         f"{ingest_us:.0f}",
                         f"{save_ms * 1e3 / SAVE_EVERY / 1e4:.3f} %", f"{share:.1%}"))
    t = table(["processes × 8 methods", "state file", "save ms", "on the loop: CPU ms / step ms",
               "load ms", "ingest µs per snapshot", "saves: one core, share", "saves ÷ ingest"],
              rows, right=(0, 1, 2, 3, 4, 5, 6, 7))
    section = Section(
        key="state",
        title="7. The state file: save and load against ingest",
        intro=(f"In-process on the real code, median of {rounds} rounds: a Store fed real "
               f"encoded snapshots (8 methods, every code and bucket in use) from 1, 8 or 64 "
               f"processes; then `StateFile.save()` (JSON, temporary file, rename) and "
               f"`StateFile.load()` into a fresh store (checked equal). A running sidecar "
               f"saves on its event loop (`StateFile.save_on_loop`): the state taken at once, "
               f"encoded in slices of at most a millisecond, written by a thread; the fourth "
               f"column is the CPU time the loop's thread spends on such a save and the "
               f"longest step it gives the loop. With only counts "
               f"changing a save happens at most every {SAVE_EVERY:g} s, while each process "
               f"pushes once a second: the last column is one save against {SAVE_EVERY:g} s "
               f"of ingest. A source appearing or leaving saves at once (at most every "
               f"0.1 s)." + (" Quick mode: figures indicative only." if quick else "")),
        machine=machine,
        command=command,
        tables=[t],
    )
    core = [float(r[6].rstrip(" %")) for r in rows]
    section.targets = [("periodic saves use under 1 % of one core",
                        f"{max(core):.3f} % at most (64 processes)", max(core) < 1.0)]
    section.notes = [
        f"A save costs about as much as one round of pushes (a snapshot from every process), "
        f"and happens once per "
        f"{SAVE_EVERY:g} s at most: {min(shares):.0%}–{max(shares):.0%} on top of the ingest "
        f"work, which is itself a fraction of a percent of a core at one push per process per "
        f"second.",
    ]
    return section
