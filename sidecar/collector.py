"""When Python's cyclic garbage collector runs in the sidecar, so that it never lands in the
middle of a step of the event loop.

Left to itself the collector runs wherever an allocation tips its counts: inside a slice of a
render or of a datagram, which it then makes several times longer. In the sidecar:

- what start-up made is frozen out of its sight (it lives as long as the process);
- the young generations are collected after each slice of a sliced computation and after a
  large datagram (:func:`young`): a slice replaces thousands of kept objects (series, sums)
  with new ones, so the collector's allocation count barely moves while the young generations
  fill, and left alone they would be collected ten thousand objects at once;
- full collections are not started by allocations at all (:func:`take_over`): the background
  tick starts one, as a step of its own, once as many young collections have run as would
  have started one (:func:`full_if_due`).

The sidecar holds no cycles of its own (its totals and history are trees of numbers, texts
and tuples); cycles come from the HTTP server's requests and are collected at the next tick.
Its thousands of totals (:class:`sidecar.stats.Totals`, two or more per method) are taken out
of the collector's sight as they are made (:func:`untrack`): a full collection goes through the
dicts that hold them, not through each one's ten fields, four times faster under load.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
from collections.abc import Callable

__all__ = ["full_if_due", "take_over", "untrack", "young"]

_NEVER = 2**31 - 1  # a full-collection threshold no count reaches
_full_after = 10  # young collections between full ones (the interpreter's third threshold)
_holders = 0  # servers in this process that took the full collections over


def _untracker() -> Callable[[object], None]:
    try:
        function = ctypes.pythonapi.PyObject_GC_UnTrack
    except (AttributeError, OSError):  # not CPython: the collector keeps seeing them
        return lambda obj: None
    function.argtypes = [ctypes.py_object]
    function.restype = None
    return function


untrack: Callable[[object], None] = _untracker()
"""Take an object out of the cyclic collector's sight (CPython's ``PyObject_GC_UnTrack``; a
no-op elsewhere): it is freed, as before, when its last reference goes, and never visited by
a collection. Only for objects that can never be part of a reference cycle: ones that are
never changed and hold only numbers, texts, bytes, arrays and untracked containers of them."""


def young() -> None:
    """Collect the young generations (the survivors join the oldest)."""
    gc.collect(1)


def take_over() -> Callable[[], None]:
    """Freeze what exists now out of the collector's sight and stop allocations from starting
    full collections; returns what gives them back (once every taker has)."""
    global _full_after, _holders
    gc.collect()
    gc.freeze()
    first, second, third = gc.get_threshold()
    if _holders == 0:
        _full_after = third
    _holders += 1
    gc.set_threshold(first, second, _NEVER)

    def give_back() -> None:
        global _holders
        _holders -= 1
        if _holders == 0:
            now = gc.get_threshold()
            gc.set_threshold(now[0], now[1], _full_after)

    return give_back


async def full_if_due() -> None:
    """A full collection, in a step of the event loop of its own, when as many young
    collections have run since the last one as would have started one."""
    if gc.get_count()[2] >= _full_after:
        await asyncio.sleep(0)
        gc.collect()
        await asyncio.sleep(0)  # and nothing after it in that turn
