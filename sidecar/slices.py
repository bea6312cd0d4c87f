"""Work done in slices on the event loop: generators that yield when they have worked a while.

A computation over thousands of series (the /metrics render, the totals summed over processes,
a history point) is written as a generator that yields whenever it has worked ``SLICE_SECONDS``
and returns its result. The server runs it with ``await run(...)``, answering probes and pushes
between slices; code where nothing else waits runs it to its end at once with :func:`drive`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from typing import TypeVar

from sidecar import collector

__all__ = ["SLICE_SECONDS", "Deadline", "Slices", "drive", "run"]

SLICE_SECONDS = 0.001  # a sliced computation yields to the event loop at least this often
T = TypeVar("T")
Slices = Generator[None, None, T]


class Deadline:
    """When the slice at work is over: ``passed()`` after SLICE_SECONDS since ``reset()``."""

    def __init__(self) -> None:
        self.at = time.perf_counter() + SLICE_SECONDS

    def passed(self) -> bool:
        return time.perf_counter() > self.at

    def reset(self) -> None:
        self.at = time.perf_counter() + SLICE_SECONDS


def drive(slices: Slices[T]) -> T:
    """Run a sliced computation to its end at once (where nothing else waits)."""
    while True:
        try:
            next(slices)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


async def run(slices: Slices[T]) -> T:
    """Run a sliced computation on the event loop, letting it turn between slices.

    After each slice of a computation long enough to be sliced, the young generations of
    Python's garbage collector are collected (:func:`sidecar.collector.young`).
    """
    sliced = False
    while True:
        try:
            next(slices)
        except StopIteration as done:
            if sliced:
                collector.young()
            return done.value  # type: ignore[no-any-return]
        sliced = True
        collector.young()
        await asyncio.sleep(0)
