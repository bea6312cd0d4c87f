"""Work done in slices on the event loop: generators that yield when they have worked a while.

A computation over thousands of series (the /metrics render, the totals summed over processes,
a history point) is written as a generator that yields whenever it has worked ``SLICE_SECONDS``
and returns its result. The server runs it with ``await run(...)``, answering probes and pushes
between slices; code where nothing else waits runs it to its end at once with :func:`drive`.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from collections.abc import Generator
from typing import Any, TypeVar

from sidecar import collector

__all__ = ["SLICE_SECONDS", "Deadline", "Slices", "drive", "later", "run", "step"]

SLICE_SECONDS = 0.001  # a sliced computation yields to the event loop at least this often
T = TypeVar("T")
Slices = Generator[None, None, T]


_slice_ends: float | None = None  # when the slice at work ends, in a slice begun by step()


class Deadline:
    """When the slice at work is over: ``passed()`` once SLICE_SECONDS have passed since the
    slice began (:func:`step`), so that computations nested in one another share their slice;
    outside :func:`step`, SLICE_SECONDS after it was made or ``reset()``."""

    def __init__(self) -> None:
        self.reset()

    def passed(self) -> bool:
        return time.perf_counter() > self.at

    def reset(self) -> None:
        """Call after each ``yield``: the slice at work is a new one."""
        self.at = _slice_ends if _slice_ends is not None else time.perf_counter() + SLICE_SECONDS


def step(slices: Slices[Any]) -> None:
    """Run one slice of a sliced computation (``next``, raising StopIteration at its end): its
    deadlines, and those of the computations it starts, all end SLICE_SECONDS from now."""
    global _slice_ends
    outer = _slice_ends
    ends = time.perf_counter() + SLICE_SECONDS
    _slice_ends = ends if outer is None else min(ends, outer)
    try:
        next(slices)
    finally:
        _slice_ends = outer


def drive(slices: Slices[T]) -> T:
    """Run a sliced computation to its end at once (where nothing else waits)."""
    while True:
        try:
            next(slices)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


async def run(slices: Slices[T]) -> T:
    """Run a sliced computation on the event loop, letting it turn between slices.

    The first slice runs at once; the rest take turns with every other computation under way
    on the loop, one slice in all per turn of the loop (:class:`_Turns`): however many renders,
    sums and saves are under way, a turn of the loop holds one slice of them. After each slice
    of a computation long enough to be sliced, the young generations of Python's garbage
    collector are collected (:func:`sidecar.collector.young`).
    """
    try:
        step(slices)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    collector.young()
    return await later(slices)


def later(slices: Slices[T]) -> asyncio.Future[T]:
    """Queue a sliced computation (or the rest of one whose first slice has run) to take
    turns with the others under way on the running loop (see :func:`run`), every slice in a
    turn of its own; the future of its result. Cancelling it drops the computation at its
    next turn."""
    loop = asyncio.get_running_loop()
    turns = _turns.get(loop)
    if turns is None:
        turns = _turns[loop] = _Turns()
    future: asyncio.Future[T] = loop.create_future()
    turns.add(slices, future)
    return future


class _Turns:
    """The sliced computations under way on one event loop, and the task that gives each of
    them a slice in turn, one per turn of the loop."""

    def __init__(self) -> None:
        self.queue: deque[tuple[Slices[Any], asyncio.Future[Any]]] = deque()
        self.task: asyncio.Task[None] | None = None

    def add(self, slices: Slices[Any], future: asyncio.Future[Any]) -> None:
        self.queue.append((slices, future))
        if self.task is None:
            self.task = asyncio.ensure_future(self._work())

    async def _work(self) -> None:
        queue = self.queue
        try:
            while queue:
                await asyncio.sleep(0)
                slices, future = queue.popleft()
                if future.done():  # its caller was cancelled (a client gone)
                    slices.close()
                    continue
                try:
                    step(slices)
                except StopIteration as done:
                    future.set_result(done.value)
                except Exception as err:  # the caller's to handle
                    future.set_exception(err)
                else:
                    queue.append((slices, future))
                collector.young()
        finally:
            self.task = None


_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Turns] = \
    weakref.WeakKeyDictionary()
