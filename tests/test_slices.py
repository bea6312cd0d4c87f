"""Sliced computations (sidecar.slices): run to the end at once or across loop turns."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Generator

import pytest

from sidecar import slices


def counting(turns: int) -> Generator[None, None, int]:
    for _ in range(turns):
        yield
    return turns


async def test_run_lets_the_loop_turn_between_slices_and_collects_young_objects_after_each(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Other tasks run between slices; a sliced computation collects the young generations
    after each slice, one that never yields (a small render) does not."""
    collected: list[int] = []
    monkeypatch.setattr(gc, "collect", lambda generation=2: collected.append(generation) or 0)
    turns: list[int] = []

    async def other() -> None:
        for i in range(10):
            turns.append(i)
            await asyncio.sleep(0)

    task = asyncio.create_task(other())
    assert await slices.run(counting(3)) == 3
    assert turns and collected == [1, 1, 1, 1]
    collected.clear()
    assert await slices.run(counting(0)) == 0
    assert collected == []
    await task


def test_drive_runs_to_the_end_and_a_deadline_passes_after_its_slice(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """drive() returns the computation's value; Deadline.passed() once SLICE_SECONDS are over."""
    assert slices.drive(counting(5)) == 5
    monkeypatch.setattr(slices, "SLICE_SECONDS", 3600.0)
    assert not slices.Deadline().passed()
    monkeypatch.setattr(slices, "SLICE_SECONDS", -1.0)
    assert slices.Deadline().passed()
