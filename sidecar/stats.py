"""Figures derived from cumulative RPC totals: deltas over a window, rates, percentiles.

Percentiles come from the fine histogram (:mod:`sidecar.fine`: within 2 % of the exact
nearest-rank value from 100 µs to 60 s) whenever every process behind the figures sent one;
otherwise (an old reporter) from the classic buckets, as PromQL's ``histogram_quantile`` does.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from itertools import accumulate, chain
from typing import TYPE_CHECKING, Any

from sidecar import collector
from sidecar import fine as fine_histogram
from sidecar.fine import to_json as fine_json
from sidecar.slices import Deadline, Slices, drive

if TYPE_CHECKING:
    from sidecar.documents import Figures

__all__ = ["Totals", "add_all", "add_all_slices", "complete_fine", "delta", "histogram_quantile",
           "summarise"]


# Not frozen, as protocol.Row: a frozen dataclass sets each field through object.__setattr__,
# ten calls per instance (2 µs against 0.2 µs), and ingest makes one per changed method per push.
@dataclass(slots=True)
class Totals:
    """Cumulative totals of one RPC method (one source, or summed over sources).

    Never changed once made: the store, its history ring and the answers share instances.
    """

    started: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    hist: tuple[int, ...] = ()
    sum: float = 0.0
    max: float = 0.0
    exceptions: dict[str, int] = field(default_factory=dict)
    last_error: tuple[str, float] | None = None
    msg_received: int = 0  # stream messages received (1 per unary call)
    msg_sent: int = 0  # stream messages sent (1 per successful unary call)
    # Sparse fine counts (sidecar.fine) of the calls whose process sent them; None when no
    # process behind these totals did. See complete_fine() for when they describe every call.
    fine: array[int] | None = None

    def __post_init__(self) -> None:
        # Never changed, and holding only numbers, texts, an array and dicts and tuples of
        # them: these can never be part of a reference cycle (sidecar.collector).
        collector.untrack(self)

    @property
    def handled(self) -> int:
        return sum(self.codes.values())

    def __add__(self, other: Totals) -> Totals:
        return _combine(self, other, 1)

    def __sub__(self, other: Totals) -> Totals:
        return _combine(self, other, -1)

    def pack(self) -> Packed:
        """These totals as one flat tuple of numbers, texts and bytes (the bucket and fine
        counts as their arrays' bytes), the last error's tuple, then the codes and exceptions
        as name, count, name, count... Python's cyclic garbage collector stops tracking such a
        tuple at the first collection that finds its parts untracked (young collections, long
        before a full one), so a long history of them adds nothing to its full collections
        (Totals objects, dicts and arrays would: ~70 ms each for an hour of 2 000 busy
        methods)."""
        try:  # 8 bytes a count, not an int object each: half the memory of the tuple
            hist: Any = array("q", self.hist).tobytes()
        except OverflowError:  # a count past 2**63: never on this planet, but never a crash
            hist = self.hist
        fine = self.fine
        kind, counts = (None, fine) if not isinstance(fine, array) else (fine.typecode,
                                                                          fine.tobytes())
        return (self.started, hist, self.sum, self.max, self.last_error, self.msg_received,
                self.msg_sent, kind, counts, len(self.codes),
                *chain.from_iterable(self.codes.items()),
                *chain.from_iterable(self.exceptions.items()))

    @staticmethod
    def unpack(packed: Packed) -> Totals:
        """The totals :meth:`pack` made ``packed`` from."""
        started, hist, total, largest, last_error, received, sent, kind, counts, n = packed[:10]
        end = 10 + 2 * n
        return Totals(started, dict(zip(packed[10:end:2], packed[11:end:2], strict=True)),
                      tuple(array("q", hist)) if type(hist) is bytes else hist, total, largest,
                      dict(zip(packed[end::2], packed[end + 1::2], strict=True)), last_error,
                      received, sent, counts if kind is None else array(kind, counts))


Packed = tuple[Any, ...]  # Totals.pack()


def _combine(a: Totals, b: Totals, sign: int) -> Totals:
    codes = dict(a.codes)
    for code, n in b.codes.items():
        codes[code] = codes.get(code, 0) + sign * n
    exceptions = dict(a.exceptions)
    for name, n in b.exceptions.items():
        exceptions[name] = exceptions.get(name, 0) + sign * n
    if not a.hist:
        hist = tuple(sign * n for n in b.hist)
    elif not b.hist:
        hist = a.hist
    else:
        hist = tuple(x + sign * y for x, y in zip(a.hist, b.hist, strict=True))
    # A side without fine counts (an older reporter) adds none: the sum's fine counts then
    # cover fewer calls than its classic ones, and complete_fine() says so. A window in which
    # only processes with fine counts had calls is still complete.
    if a.fine is None and b.fine is None:
        fine = None
    else:
        fine = fine_histogram.combine(a.fine if a.fine is not None else array("I"),
                                      b.fine if b.fine is not None else array("I"), sign)
    last = a.last_error
    if sign > 0 and b.last_error and (last is None or b.last_error[1] > last[1]):
        last = b.last_error
    return Totals(
        started=a.started + sign * b.started,
        codes={c: n for c, n in codes.items() if n},
        hist=hist,
        sum=a.sum + sign * b.sum,
        max=max(a.max, b.max),
        exceptions={e: n for e, n in exceptions.items() if n},
        last_error=last,
        msg_received=a.msg_received + sign * b.msg_received,
        msg_sent=a.msg_sent + sign * b.msg_sent,
        fine=fine,
    )


def add_all(items: Iterable[Totals]) -> Totals:
    """The sum of many totals; the fine counts added in one pass (not pair by pair)."""
    return drive(add_all_slices(items))


def add_all_slices(items: Iterable[Totals]) -> Slices[Totals]:
    """:func:`add_all` in slices (:mod:`sidecar.slices`), taking the items as it goes."""
    out = Totals()
    fines = []
    deadline = Deadline()
    for i, t in enumerate(items):
        if not i % 32 and deadline.passed():
            yield
            deadline.reset()
        if t.fine is not None:
            fines.append(t.fine)
            t = replace(t, fine=None)
        out = out + t
    if fines:
        out = replace(out, fine=fine_histogram.total(fines))
    return out


def complete_fine(d: Totals) -> array[int] | None:
    """``d``'s fine counts when they account for every call its classic counts hold, else None.

    Not complete when a process behind ``d`` sent no fine counts and had calls in it.
    """
    if d.fine is None or not d.hist or fine_histogram.count(d.fine) != sum(d.hist) \
            or any(n < 0 for n in d.fine[1::2]):
        return None
    return d.fine


def delta(now: Totals, before: Totals | None) -> Totals:
    """What happened between two cumulative totals (``before`` None means from zero)."""
    return now if before is None else now - before


def histogram_quantile(q: float, bounds: tuple[float, ...], counts: tuple[int, ...]) -> float:
    """PromQL's estimate of quantile ``q`` from per-bucket (not cumulative) ``counts``.

    ``bounds`` are the finite upper bounds; ``counts`` has one more entry, for +Inf.
    NaN when there are no observations.
    """
    total = sum(counts)
    if total <= 0 or not bounds:
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    cumulative = list(accumulate(counts))
    rank = q * total
    # The first finite bucket whose cumulative count reaches the rank (Go's sort.Search).
    b = next((i for i in range(len(bounds)) if cumulative[i] >= rank), len(bounds))
    if b == len(bounds):
        return bounds[-1]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start, count = 0.0, float(cumulative[b])
    if b > 0:
        start = bounds[b - 1]
        count -= cumulative[b - 1]
        rank -= cumulative[b - 1]
    if count == 0:
        return math.nan
    return start + (bounds[b] - start) * (rank / count)


def summarise(d: Totals, bounds: tuple[float, ...], seconds: float, all_time_max: float
              ) -> Figures:
    """The figures (:class:`sidecar.documents.Figures`) of one RPC, or the sum of RPCs, over a
    window of ``seconds``; ``fine`` is the window's fine counts when they account for every call."""
    count = d.handled
    ok = d.codes.get("OK", 0)
    errors = count - ok

    def ms(value: float) -> float | None:
        return None if math.isnan(value) else round(value * 1000, 3)

    largest = None
    fine_bounds = fine_histogram.bounds(bounds)
    fine = complete_fine(d) if fine_bounds is not None else None
    fine = fine if fine else None  # no calls: nothing to estimate from
    # A sender's codes and buckets may disagree (a row with codes but no bucket counts is
    # valid on the wire): no bucket, no maximum.
    top = max((i for i, n in enumerate(d.hist) if n > 0), default=None)
    if count and top is not None:
        bound = bounds[top] if top < len(bounds) else math.inf
        if fine is not None and fine_bounds is not None:
            bound = fine_histogram.top(fine, fine_bounds)
        top_ms = ms(min(bound, all_time_max) if all_time_max > 0 else bound)
        # Only the +Inf bucket with no maximum reported: unknown, and JSON has no Infinity.
        largest = top_ms if top_ms is not None and math.isfinite(top_ms) else None

    from_fine = dict(zip((0.50, 0.95, 0.99), fine_histogram.quantiles(
        (0.50, 0.95, 0.99), fine, fine_bounds, all_time_max), strict=True)) \
        if fine is not None and fine_bounds is not None else {}

    def quantile(q: float) -> float | None:
        if not d.hist:
            return None
        # Without fine counts, PromQL's estimate from the classic buckets, capped at the largest
        # duration seen: interpolation must not report a p50 above the slowest RPC.
        value = ms(from_fine[q] if from_fine else histogram_quantile(q, bounds, d.hist))
        return value if value is None or largest is None else min(value, largest)

    return {
        "count": count,
        "errors": errors,
        "error_rate_percent": round(100.0 * errors / count, 3) if count else 0.0,
        "avg_ms": round(d.sum / count * 1000, 3) if count else None,
        "p50_ms": quantile(0.50),
        "p95_ms": quantile(0.95),
        "p99_ms": quantile(0.99),
        "max_ms": largest,
        "rate_per_second": round(count / seconds, 3) if seconds > 0 else 0.0,
        "started": d.started,
        "codes": dict(sorted(d.codes.items())),
        "exceptions": dict(sorted(d.exceptions.items())),
        "last_error": None if d.last_error is None else {
            "code": d.last_error[0], "time": d.last_error[1]},
        "fine": fine_json(complete_fine(d)),
    }
