"""Sliced computations (sidecar.slices): run to the end at once or across loop turns."""

from __future__ import annotations

import asyncio
import gc
import itertools
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


async def test_computations_under_way_take_turns_one_slice_in_all_per_turn_of_the_loop() -> None:
    """Renders, sums and saves under way at once do not each take a slice per turn: after
    their first slices (at once, in their callers' steps), one slice in all runs per turn of
    the loop, the computations taking turns."""
    order: list[str] = []

    def named(name: str, n: int) -> slices.Slices[str]:
        for _ in range(n):
            order.append(name)
            yield
        return name

    seen: list[int] = []

    async def turns() -> None:
        while True:
            seen.append(len(order))
            await asyncio.sleep(0)

    watcher = asyncio.ensure_future(turns())
    await asyncio.sleep(0)
    assert await asyncio.gather(slices.run(named("a", 5)), slices.run(named("b", 5)),
                                slices.run(named("c", 5))) == ["a", "b", "c"]
    watcher.cancel()
    per_turn = [after - before for before, after in itertools.pairwise(seen)]
    assert sum(1 for n in per_turn if n > 1) <= 1  # the first slices, started together
    assert order[3:9] == ["a", "b", "c"] * 2  # then in turn


def test_computations_nested_in_one_another_share_the_slice_they_run_in() -> None:
    """A sliced computation started inside another's slice (sums inside a render, a document's
    text after the document) ends that slice with it, instead of starting a whole one of its
    own: every deadline made or reset during a step() ends where the step's slice ends."""
    ends: list[float] = []

    def inner() -> Generator[None, None, None]:
        ends.append(slices.Deadline().at)
        yield

    def outer() -> Generator[None, None, None]:
        deadline = slices.Deadline()
        ends.append(deadline.at)
        yield from inner()  # begun later in the same slice
        deadline.reset()  # a new slice
        ends.append(deadline.at)

    work = outer()
    slices.step(work)
    assert ends[0] == ends[1]
    with pytest.raises(StopIteration):
        slices.step(work)
    assert ends[2] > ends[1]
    assert slices._slice_ends is None  # outside a step, each deadline is its own
