"""When the garbage collector runs in the sidecar: full collections only in a step of their own."""

from __future__ import annotations

import asyncio
import gc
import sys
from typing import Any

import pytest

from sidecar import collector


async def test_full_collections_run_only_when_the_tick_asks_and_in_a_step_of_their_own(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Taken over, allocations that would have started full collections start none; the tick's
    full_if_due() runs one once as many young collections have run, after the loop has turned;
    giving back (by every taker) restores the interpreter's
    own thresholds."""
    thresholds = gc.get_threshold()
    full: list[str] = []
    turns: list[int] = []

    def seen(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and info["generation"] == 2:
            full.append(f"after {len(turns)} turns")

    give_back = collector.take_over()
    other = collector.take_over()  # a second server in this process
    gc.callbacks.append(seen)
    try:
        kept = [[i] for i in range(50 * thresholds[0] * thresholds[1])]  # survivors, in bulk
        assert gc.get_count()[2] >= thresholds[2] and full == []
        await collector.full_if_due()  # nothing else is waiting: collected all the same
        assert full == ["after 0 turns"]

        async def count() -> None:
            while True:
                turns.append(1)
                await asyncio.sleep(0)

        counter = asyncio.ensure_future(count())
        await asyncio.sleep(0)
        kept += [[i] for i in range(50 * thresholds[0] * thresholds[1])]
        before = len(turns)
        await collector.full_if_due()
        assert len(full) == 2 and full[1] != f"after {before} turns"  # the loop turned first
        counter.cancel()
        await collector.full_if_due()  # no young collection since: nothing to do
        assert len(full) == 2
    finally:
        gc.callbacks.remove(seen)
        other()
        assert gc.get_threshold()[2] != thresholds[2]  # one taker still holds it
        give_back()
    assert gc.get_threshold() == thresholds
    del kept


def test_totals_are_out_of_the_collectors_sight_and_freed_with_their_last_reference() -> None:
    """Thousands of Totals held by the store add nothing for a full collection to go through
    (each has ten fields it would visit), and are still freed when their last reference goes."""
    from sidecar.stats import Totals

    before = len(gc.get_objects())
    kept = {i: Totals(i, {"OK": i}, (i, 0, 1), 0.5, 0.25, {"ValueError": 1}, ("boom", 1.0))
            for i in range(10_000)}
    assert not any(gc.is_tracked(t) for t in kept.values())
    assert len(gc.get_objects()) - before < 100  # the dict, not its ten thousand values
    assert not gc.is_tracked(kept[1] + kept[2]) and not gc.is_tracked(Totals.unpack(
        kept[3].pack()))
    probe = kept[7].codes
    assert sys.getrefcount(probe) == 3  # the Totals, this name, getrefcount's argument
    del kept
    assert sys.getrefcount(probe) == 2  # the Totals is gone
