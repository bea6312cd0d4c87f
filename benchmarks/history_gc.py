"""Benchmark 11: an hour of history and Python's garbage collector (issue 15).

A store lives through an hour of 2 000 busy methods (benchmarks._scrape_load's history: every
method changed in every push, so each history point holds new totals for all of them), in this
process. Then a full garbage collection is timed with the history points as the sidecar keeps
them (``Totals.pack``: flat tuples the collector stops tracking), as Totals objects (out of the
collector's sight since sidecar.collector.untrack, but visited through the dicts that hold
them) and as the Totals objects the collector tracked before, side by side in the same run. A
full collection runs on the event loop (started by the background tick once enough young
collections have run, in a turn of its own: sidecar/collector.py), so its length is a loop
stall.
"""

from __future__ import annotations

import dataclasses
import gc
import statistics
import time
from typing import Any

from benchmarks._scrape_load import _history
from benchmarks.report import Section, table
from sidecar.stats import Totals
from sidecar.store import Store

__all__ = ["run"]

# Totals as they were before sidecar.collector.untrack: the same slotted dataclass, tracked.
_Tracked = dataclasses.make_dataclass(
    "Totals", [f.name for f in dataclasses.fields(Totals)], slots=True)


def _full_collections(rounds: int) -> tuple[list[float], int]:
    """(ms of each of ``rounds`` full collections, objects the collector tracks)."""
    times = []
    for _ in range(rounds):
        t0 = time.thread_time()
        gc.collect()
        times.append((time.thread_time() - t0) * 1e3)
    return times, len(gc.get_objects())


def _measure(series: int, rounds: int) -> dict[str, Any]:
    gc.collect()
    gc.freeze()  # as the sidecar does at start: the interpreter and modules are not counted
    try:
        shift = [-3600.0]
        store = Store(clock=lambda: time.monotonic() + shift[0],
                      wall=lambda: time.time() + shift[0])
        _history(store, shift, 3600.0, series)
        gc.collect()
        gc.collect()  # the newest points' parts, then the points (see Totals.pack)
        packed, packed_tracked = _full_collections(rounds)
        memo: dict[int, Any] = {}  # an unchanged method's point shared one object, as before
        objects = [{key: memo.setdefault(id(p), Totals.unpack(p)) for key, p in point.items()}
                   for _, _, point in store.ring]
        untracked, untracked_count = _full_collections(rounds)
        memo.clear()
        objects = [{key: memo.setdefault(id(p), _Tracked(**dataclasses.asdict(Totals.unpack(p))))
                    for key, p in point.items()} for _, _, point in store.ring]
        tracked, tracked_count = _full_collections(rounds)
        points = len(store.ring)
        del objects, store, memo
    finally:
        gc.unfreeze()
    return {"points": points, "packed": packed, "packed_tracked": packed_tracked,
            "untracked": untracked, "untracked_tracked": untracked_count,
            "objects": tracked, "objects_tracked": tracked_count}


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} / {max(values):.1f}"


def run(quick: bool, machine: str, command: str) -> Section:
    series = 500 if quick else 2000
    r = _measure(series, 3 if quick else 10)
    rows = [("Totals objects (before)", f"{r['objects_tracked']:,}", _ms(r["objects"])),
            ("Totals objects out of the collector's sight (collector.untrack)",
             f"{r['untracked_tracked']:,}", _ms(r["untracked"])),
            ("packed tuples (Totals.pack, now)", f"{r['packed_tracked']:,}", _ms(r["packed"]))]
    t = table([f"{r['points']} history points × {series:,} busy methods, kept as",
               "objects the GC tracks", "full collection ms median / max"], rows,
              right=(1, 2))
    ratio = statistics.median(r["objects"]) / statistics.median(r["packed"])
    untracked = statistics.median(r["untracked"]) / statistics.median(r["packed"])
    section = Section(
        key="history_gc",
        title="11. An hour of history and the garbage collector",
        intro=("In process: a store lives through an hour of busy methods (every method changed "
               "in every push; one history point per minute, every 5 s in the last five "
               "minutes), then full garbage collections are timed (thread CPU time) with its "
               "history points packed as the sidecar keeps them, and with the same points "
               "unpacked into the Totals objects it kept before. A full collection runs on "
               "the event loop, started by the background tick once enough young collections "
               "have run, in a turn of its own (sidecar/collector.py)."
               + (" Quick mode: figures indicative only." if quick else "")),
        machine=machine,
        command=command,
        tables=[t],
    )
    section.notes = [f"A full collection is ×{ratio:,.0f} shorter with packed points than with "
                     f"the tracked objects, ×{untracked:,.1f} shorter than with untracked ones "
                     f"(it still visits each through the dicts that hold them); the objects it "
                     f"still tracks are the store's dicts and the sidecar's own (the live totals "
                     f"are untracked too)."]
    return section
