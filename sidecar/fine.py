"""The fine histogram: buckets narrow enough that every percentile is within 2 % of exact.

Schema 1 refines the classic bounds (the message's ``buckets``, which /metrics exports as they
are) into geometric steps of ratio at most :data:`RATIO`, from :data:`FLOOR` (100 µs) up to the
last classic bound; below the floor is one bucket, above the last bound is +Inf. Every classic
bound is itself a fine bound, so each classic count is an exact sum of fine counts, and fine
counts add across processes and subtract between two moments exactly. docs/protocol.md gives
the formula for other reporters.

The percentile of a fine histogram is the nearest-rank value's bucket, interpolated by rank
inside it and capped at the largest duration seen. The nearest-rank value ``x`` and the estimate
both lie in that bucket ``(lo, hi]`` with ``hi / lo <= RATIO``, so ``|estimate - x| <= (RATIO - 1)
* x``: within 2 % for any duration from 100 µs to the last classic bound (60 s by default), for
any distribution and any number of calls. Below 100 µs and above the last bound there is no
such guarantee (the estimate stays between the bucket's bounds and the largest duration).

A sparse histogram here is an ``array`` of interleaved ``index, count`` pairs in increasing
index order, counts non-zero, in 4-byte items while the counts fit (8-byte beyond): compact in
the sidecar's history ring. Standard library only: the
reporter imports this module inside the gRPC process.
"""

from __future__ import annotations

import math
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import chain, compress, pairwise, repeat
from operator import ge
from typing import TYPE_CHECKING, Any, Final, TypeAlias

if TYPE_CHECKING:  # the reporter imports this module: no import it does not need at run time
    from sidecar.documents import Fine

__all__ = [
    "FLOOR",
    "MAX_BUCKETS",
    "RATIO",
    "SCHEMA",
    "Sparse",
    "bounds",
    "combine",
    "count",
    "decrease",
    "fold_classic",
    "from_json",
    "from_runs",
    "from_runs_folded",
    "pack",
    "quantile",
    "quantiles",
    "runs",
    "sparse",
    "to_json",
    "top",
    "total",
]

SCHEMA: Final = 1
RATIO = 1.02  # the largest ratio between a fine bucket's upper and lower bound
FLOOR = 1e-4  # seconds: the fine range starts at 100 µs
MAX_BUCKETS = 4096  # more fine buckets than this (odd classic bounds): no fine histogram
MAX_COUNT = 2**63  # counts are kept in 64-bit integers
GAP = 3  # zero counts kept inside a run rather than starting a new one (each costs 2 bytes)

# array('I') or array('q'): index, count, index, count, ... (array[int] only to the type checker;
# array is not subscriptable at run time before Python 3.12)
Sparse: TypeAlias = "array[int]"


@lru_cache(maxsize=16)
def bounds(classic: tuple[float, ...], schema: int = SCHEMA) -> tuple[float, ...] | None:
    """The finite fine upper bounds of schema 1 for these classic bounds (None: too many).

    Anchors are the classic bounds, with :data:`FLOOR` put first when the first classic bound
    is above it. Each interval ``(lo, hi]`` between two anchors is cut into
    ``n = ceil(ln(hi / lo) / ln(RATIO) - 1e-9)`` steps (one when ``lo`` is 0); its bounds are
    ``lo * (hi / lo) ** (k / n)`` for ``k = 1 .. n - 1``, then ``hi`` itself.
    """
    if schema != SCHEMA:
        return None
    anchors = list(classic)
    if not anchors or anchors[0] > FLOOR:
        anchors.insert(0, FLOOR)
    out = [anchors[0]]
    step = math.log(RATIO)
    for lo, hi in pairwise(anchors):
        n = 1 if lo <= 0 else max(1, math.ceil(math.log(hi / lo) / step - 1e-9))
        out.extend(lo * (hi / lo) ** (k / n) for k in range(1, n))
        out.append(hi)
        if len(out) >= MAX_BUCKETS:
            return None
    return tuple(out)


def fold_classic(pairs: Sequence[int], classic: tuple[float, ...]) -> list[int]:
    """The classic per-bucket counts (the last one +Inf) that sparse fine counts add up to."""
    flat = pairs.tolist() if isinstance(pairs, array) else list(pairs)
    return _fold(flat[0::2], flat[1::2], classic)


@lru_cache(maxsize=16)
def _edges(classic: tuple[float, ...]) -> tuple[int, ...]:
    """The fine index of each classic bound (each is a fine bound too)."""
    fine = bounds(classic)
    return () if fine is None else tuple(bisect_left(fine, b) for b in classic)


# -- the reporter's dense list <-> the wire's runs <-> the sidecar's sparse pairs --------------

def runs(dense: Sequence[int]) -> list[list[int]]:
    """Runs ``[first index, count, count, ...]`` of a dense count list, for the wire."""
    return _runs(compress(range(len(dense)), dense), dense)


def _runs(indexes: Iterable[int], counts: Any) -> list[list[int]]:
    """Runs of the non-zero ``counts[i]`` for increasing ``indexes``."""
    out: list[list[int]] = []
    last = -GAP - 2
    run: list[int] = []
    for i in indexes:
        if i - last > GAP + 1:
            run = [i, counts[i]]
            out.append(run)
        else:
            if i - last > 1:
                run.extend([0] * (i - last - 1))
            run.append(counts[i])
        last = i
    return out


def pack(values: Iterable[int]) -> Sparse:
    """Interleaved pairs in the smallest array that holds them (4-byte items when they fit)."""
    values = values if isinstance(values, list) else list(values)
    try:
        return array("I", values)
    except OverflowError:  # a count of 2**32 or more (or a negative difference)
        pass
    try:
        return array("q", values)
    except OverflowError:  # sums past 2**63 calls: not on this planet, but never a crash
        return values  # type: ignore[return-value]


def from_runs(value: Any, n_buckets: int, where: str, no_bools: bool = False) -> Sparse:
    """Sparse pairs from wire runs; ValueError saying what is wrong (``where`` names it).

    ``no_bools``: the JSON text held neither ``true`` nor ``false``, the only way JSON makes a
    boolean, so the counts need no type test item by item to tell 1 from ``true``.
    """
    return from_runs_folded(value, n_buckets, (), where, no_bools)[0]


def from_runs_folded(value: Any, n_buckets: int, classic: tuple[float, ...], where: str,
                     no_bools: bool = False) -> tuple[Sparse, list[int]]:
    """:func:`from_runs`, and the classic per-bucket counts the pairs add up to
    (:func:`fold_classic`; empty when ``classic`` is)."""
    valid = _from_valid_runs(value, n_buckets, no_bools) if type(value) is list else None
    if valid is None:  # some rule broken, or counts of 2**32 and more: run by run
        pairs = _from_runs_checked(value, n_buckets, where)
        return pairs, fold_classic(pairs, classic) if classic else []
    pairs, indexes, counts = valid
    return pairs, _fold(indexes, counts, classic) if classic else []


def _from_valid_runs(value: list[Any], n_buckets: int, no_bools: bool
                     ) -> tuple[Sparse, list[int], list[int]] | None:
    """(pairs, their indexes, their counts) of runs that break no rule, in 4-byte items; None
    for any other (the careful path says what is wrong)."""
    every = _index_list(n_buckets)  # slices of one list of ints: no int made per bucket
    indexes: list[int] = []
    counts: list[Any] = []
    nxt = 0
    for run in value:
        if type(run) is not list or len(run) < 2:
            return None
        first = run[0]
        if type(first) is not int or first < nxt:
            return None
        nxt = first + len(run) - 1
        indexes += every[first:nxt]
        counts += run[1:]
    if nxt > n_buckets:
        return None
    try:  # every count an integer (or a boolean: see no_bools) from 0 to 2**32 - 1
        items = array("I", counts)
    except (TypeError, OverflowError):  # or 2**32 and more, valid but rare: the careful path
        return None
    if not no_bools and not set(map(type, counts)) <= _INT_ONLY:
        return None
    zeros = counts.count(0)  # gaps inside runs: sparse pairs hold no zero count
    if zeros > 64:
        indexes = list(compress(indexes, counts))
        counts = list(filter(None, counts))
        items = array("I", counts)
    elif zeros:  # the usual few: found and cut out at C speed
        i = counts.index(0)
        while True:
            del indexes[i], counts[i], items[i]
            try:
                i = counts.index(0, i)
            except ValueError:
                break
    pairs = array("I", bytes(8 * len(counts)))
    pairs[0::2], pairs[1::2] = array("I", indexes), items
    return pairs, indexes, counts


_INT_ONLY = {int}


@lru_cache(maxsize=4)
def _index_list(n_buckets: int) -> list[int]:
    return list(range(n_buckets))


def _fold(indexes: list[int], counts: list[int], classic: tuple[float, ...]) -> list[int]:
    """:func:`fold_classic` of pairs given as their indexes and counts."""
    out, start = [], 0
    for edge in _edges(classic):  # classic bucket j holds fine buckets up to edge j
        stop = bisect_right(indexes, edge, start)
        out.append(sum(counts[start:stop]))
        start = stop
    out.append(sum(counts[start:]))
    return out


def _from_runs_checked(value: Any, n_buckets: int, where: str) -> Sparse:
    """:func:`from_runs` run by run, raising the exact error."""
    if not isinstance(value, list):
        raise ValueError(f"{where} must be an array of runs [first index, count, ...]")
    out: list[int] = []
    nxt = 0
    for r, run in enumerate(value):
        if not isinstance(run, list) or len(run) < 2 or set(map(type, run)) != {int}:
            raise ValueError(f"{where}[{r}] must be [first index, count, ...] of integers")
        first, counts = run[0], run[1:]
        if first < nxt or first + len(counts) > n_buckets:
            raise ValueError(f"{where}[{r}] starts at bucket {first}: runs must be in "
                             f"increasing order, not overlap, and stay below {n_buckets}")
        if min(counts) < 0 or max(counts) >= MAX_COUNT:
            raise ValueError(f"{where}[{r}] has a count out of range; a count is 0 to "
                             f"{MAX_COUNT - 1}")
        out.extend(chain.from_iterable(zip(compress(range(first, first + len(counts)), counts),
                                           filter(None, counts), strict=True)))
        nxt = first + len(counts)
    return pack(out)


def sparse(dense: Sequence[int]) -> Sparse:
    """Sparse pairs of a dense count list."""
    return pack(chain.from_iterable((i, dense[i]) for i in compress(range(len(dense)), dense)))


def to_json(pairs: Sequence[int] | None) -> Fine | None:
    """The JSON form (as on the wire) of sparse pairs; None stays None."""
    if pairs is None:
        return None
    flat = pairs.tolist() if isinstance(pairs, array) else list(pairs)
    return {"schema": SCHEMA, "runs": _runs(flat[0::2], dict(zip(flat[0::2], flat[1::2],
                                                                 strict=True)))}


def from_json(value: Any, n_buckets: int) -> Sparse | None:
    """Sparse pairs of a JSON fine histogram read from elsewhere; None when not usable."""
    if not isinstance(value, dict) or value.get("schema") != SCHEMA:
        return None
    try:
        return from_runs(value.get("runs"), n_buckets, "runs")
    except ValueError:
        return None


# -- arithmetic and figures -------------------------------------------------------------------

def combine(a: Sequence[int], b: Sequence[int], sign: int = 1) -> Sparse:
    """``a + sign * b`` of two sparse histograms (exact; zero counts dropped)."""
    if not b:
        return pack(a)
    if not a and sign > 0:
        return pack(b)
    if a is b and sign < 0:  # an idle method: the same counts at both ends of a window
        return array("I")
    return total([a, b] if sign > 0 else [a], [] if sign > 0 else [b])


def total(plus: Iterable[Sequence[int]], minus: Iterable[Sequence[int]] = ()) -> Sparse:
    """The sum of sparse histograms ``plus`` less those of ``minus``, exactly."""
    merged: dict[int, int] = {}
    get = merged.get
    for pairs in plus:
        flat = pairs.tolist() if isinstance(pairs, array) else list(pairs)
        if not merged:
            merged = dict(zip(flat[0::2], flat[1::2], strict=True))
            get = merged.get
            continue
        for i, n in zip(flat[0::2], flat[1::2], strict=True):
            merged[i] = get(i, 0) + n
    for pairs in minus:
        flat = pairs.tolist() if isinstance(pairs, array) else list(pairs)
        for i, n in zip(flat[0::2], flat[1::2], strict=True):
            merged[i] = get(i, 0) - n
    return pack(chain.from_iterable(sorted(kv for kv in merged.items() if kv[1])))


def decrease(after: Sequence[int], before: Sequence[int]) -> tuple[int, int, int] | None:
    """The first bucket whose count is lower in ``after`` than in ``before`` (two cumulative
    histograms of one process, counts not negative): (index, count before, count after); None
    when no count went down. A bucket missing from ``after`` counts 0 there.
    """
    if (type(after) is array and type(before) is array and after.typecode == before.typecode
            and len(after) == len(before) and _grown(after, before)):
        return None
    now = dict(zip(after[0::2], after[1::2], strict=True))
    indexes, counts = before[0::2], before[1::2]
    later = list(map(now.get, indexes, repeat(0)))
    if all(map(ge, later, counts)):
        return None
    k = next(k for k, (x, y) in enumerate(zip(later, counts, strict=True)) if x < y)
    return indexes[k], counts[k], later[k]


def _grown(after: array[int], before: array[int]) -> bool:
    """True when both hold the same buckets and no count went down; False when either is not
    so (or cannot be told here). The usual case for a busy method, done at C speed.

    Each array, read as one unsigned integer (in the machine's byte order), is a row of
    ``w``-bit fields (the item size) in which index and count fields alternate. With equal
    indexes, ``d = after - before`` is the sum of ``(a_k - b_k) * 2**p_k`` over the count
    fields k, each term below ``2**(p_k + w)`` in size. The partial sum of the terms up to
    count k takes the sign of the highest of them that is not zero, and is smaller in size
    than the index field just above count k; that field of ``d`` is all ones when the partial
    sum is negative (the borrow) and zero otherwise; above the highest count, ``d`` itself is
    negative. So no count went down exactly when ``d >= 0`` and every index field of ``d`` is 0.
    """
    mask = _index_fields(after.itemsize, len(after))
    a, b = int.from_bytes(after, sys.byteorder), int.from_bytes(before, sys.byteorder)
    if a & mask != b & mask:  # other buckets
        return False
    d = a - b
    return d >= 0 and not d & mask


@lru_cache(maxsize=64)
def _index_fields(itemsize: int, items: int) -> int:
    """The integer whose bits are set in the index fields of ``items`` interleaved items."""
    return int.from_bytes((b"\xff" * itemsize + b"\0" * itemsize) * (items // 2), sys.byteorder)


def count(pairs: Sequence[int]) -> int:
    """The number of values in a sparse histogram."""
    return sum(pairs[1::2])


def top(pairs: Sequence[int], fine: tuple[float, ...]) -> float:
    """The upper bound of the highest bucket with a value (inf for +Inf; 0 when empty)."""
    if not pairs:
        return 0.0
    i = pairs[-2]
    return fine[i] if i < len(fine) else math.inf


def quantile(q: float, pairs: Sequence[int], fine: tuple[float, ...],
             largest: float = 0.0) -> float:
    """The nearest-rank ``q`` quantile, interpolated in its fine bucket; NaN when empty.

    ``largest`` (seconds, 0 when unknown) caps the estimate and closes the +Inf bucket.
    """
    return quantiles((q,), pairs, fine, largest)[0]


def quantiles(qs: Sequence[float], pairs: Sequence[int], fine: tuple[float, ...],
              largest: float = 0.0) -> list[float]:
    """:func:`quantile` of each of ``qs`` (in increasing order), in one pass over the counts."""
    flat = pairs.tolist() if isinstance(pairs, array) else list(pairs)
    total = sum(flat[1::2])
    if total <= 0:
        return [math.nan] * len(qs)
    # Nearest rank: the smallest k with k >= q * total, in integers (q to six decimals).
    ranks = [max(1, -(-round(q * 1_000_000) * total // 1_000_000)) for q in qs]
    out: list[float] = []
    seen = 0
    for i, n in zip(flat[0::2], flat[1::2], strict=True):
        while len(out) < len(ranks) and seen + n >= ranks[len(out)]:
            lo = fine[i - 1] if i > 0 else 0.0
            hi = fine[i] if i < len(fine) else max(largest, lo)  # +Inf: up to the largest
            estimate = lo + (hi - lo) * (ranks[len(out)] - seen - 0.5) / n
            out.append(min(estimate, largest) if largest > 0 else estimate)
        if len(out) == len(ranks):
            break
        seen += n
    return out
