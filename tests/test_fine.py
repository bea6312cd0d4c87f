"""The fine histogram: its bounds, its wire form, its arithmetic and its 2 % guarantee."""

from __future__ import annotations

import json
import math
import random
from array import array
from bisect import bisect_left
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar import fine, protocol
from sidecar.reporter.core import Reporter
from sidecar.stats import Totals, add_all, complete_fine
from sidecar.store import Store

CLASSIC = protocol.DEFAULT_BUCKETS


def nearest_rank(values: list[float], q: float) -> float:
    """The exact q quantile: the smallest value with at least q of all values at or under it."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(round(q * len(ordered), 9))) - 1]


def histogram(values: list[float]) -> tuple[list[int], object]:
    """(dense fine counts, sparse pairs) of ``values``, recorded as the reporter does."""
    bounds = fine.bounds(CLASSIC)
    assert bounds is not None
    dense = [0] * (len(bounds) + 1)
    for v in values:
        dense[bisect_left(bounds, v)] += 1
    return dense, fine.sparse(dense)


def test_schema_1_bounds_refine_every_classic_bound_in_steps_of_at_most_2_percent() -> None:
    """685 finite bounds from 100 µs to 60 s; every classic bound is one; no step above 1.02."""
    bounds = fine.bounds(CLASSIC)
    assert bounds is not None and len(bounds) == 685
    assert bounds[0] == fine.FLOOR and bounds[-1] == 60.0
    assert set(CLASSIC) <= set(bounds)
    assert max(b / a for a, b in pairwise(bounds)) <= fine.RATIO
    # The documented step counts (docs/protocol.md) follow from the formula.
    anchors = (fine.FLOOR, *CLASSIC)
    steps = [bisect_left(bounds, hi) - bisect_left(bounds, lo)
             for lo, hi in pairwise(anchors)]
    assert steps == [198, 36, 47, 36, 36, 47, 36, 36, 47, 36, 36, 36, 21, 36]


def test_classic_counts_are_exact_sums_of_fine_counts() -> None:
    """Folding fine counts gives exactly the counts a classic bisect would have made."""
    rng = random.Random(3)
    values = [rng.lognormvariate(math.log(0.05), 2.5) for _ in range(20_000)] + [
        *CLASSIC, 0.0, 1e-9, 1e6]  # every edge exactly, and both ends
    classic = [0] * (len(CLASSIC) + 1)
    for v in values:
        classic[bisect_left(CLASSIC, v)] += 1
    assert fine.fold_classic(histogram(values)[1], CLASSIC) == classic


@pytest.mark.parametrize("seed", range(12))
def test_percentiles_are_within_2_percent_of_the_exact_nearest_rank(seed: int) -> None:
    """Any mix of distributions and call counts, 100 µs to 60 s: p50/p95/p99 within 2 %."""
    rng = random.Random(seed)
    n = rng.choice([1, 2, 7, 20, 101, 1000, 5000])
    shapes = [lambda: rng.uniform(0.12, 0.18), lambda: rng.lognormvariate(math.log(0.4), 0.8),
              lambda: rng.uniform(0.0001, 0.005), lambda: rng.choice([0.0101, 9.99, 10.01]),
              lambda: min(60.0, 0.01 * rng.paretovariate(0.7)),
              lambda: 10 ** rng.uniform(-4, math.log10(60))]
    values = [rng.choice(shapes)() for _ in range(n)]
    _, pairs = histogram(values)
    bounds = fine.bounds(CLASSIC)
    assert bounds is not None
    for q in (0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
        exact = nearest_rank(values, q)
        estimate = fine.quantile(q, pairs, bounds, max(values))
        assert abs(estimate - exact) <= 0.02 * exact, (q, estimate, exact)


def test_quantile_of_nothing_is_nan_and_the_inf_bucket_ends_at_the_largest() -> None:
    """No calls: NaN. Calls above 60 s: between 60 s and the largest duration seen."""
    bounds = fine.bounds(CLASSIC)
    assert bounds is not None
    assert math.isnan(fine.quantile(0.5, fine.sparse([]), bounds))
    _, pairs = histogram([61.0, 90.0, 120.0])
    assert 60.0 < fine.quantile(0.99, pairs, bounds, 120.0) <= 120.0


def test_runs_round_trip_and_stay_compact() -> None:
    """Dense -> runs -> sparse is lossless; a contiguous span costs one index, not one per count."""
    dense = [0] * 686
    for i, n in ((3, 1), (4, 2), (6, 5), (300, 7), (685, 1)):
        dense[i] = n
    runs = fine.runs(dense)
    assert runs == [[3, 1, 2, 0, 5], [300, 7], [685, 1]]
    assert list(fine.from_runs(runs, 686, "runs")) == list(fine.sparse(dense))
    assert fine.to_json(fine.sparse(dense)) == {"schema": 1, "runs": runs}


def test_sums_and_differences_are_exact() -> None:
    """Adding two processes' counts and subtracting an earlier moment give exact counts."""
    rng = random.Random(5)
    a = [rng.uniform(0.001, 2) for _ in range(3000)]
    b = [rng.uniform(0.1, 0.2) for _ in range(2000)]
    dense_a, pa = histogram(a)
    dense_b, pb = histogram(b)
    both = fine.combine(pa, pb)
    assert list(both) == list(fine.sparse([x + y for x, y in zip(dense_a, dense_b, strict=True)]))
    assert list(fine.combine(both, pb, -1)) == list(pa)
    assert list(fine.combine(both, both, -1)) == []


def _message(rows: list[dict[str, object]], source: str = "s1") -> bytes:
    (datagram,) = protocol.encode(
        source={"id": source, "pid": 1, "started": 1.0}, seq=1, time=2.0, buckets=CLASSIC,
        rows=rows, health="healthy", checks={}, reporter={})
    return datagram


def _row(**extra: object) -> dict[str, object]:
    hist = [0] * 15
    hist[5] = 3  # three calls in (0.1, 0.25]
    return {"service": "S", "method": "M", "started": 3, "codes": {"OK": 3}, "hist": hist,
            "sum": 0.45, "max": 0.2, **extra}


def test_decoder_checks_fine_counts_against_the_classic_ones() -> None:
    """Fine counts that do not add up to hist, or malformed runs: that row alone is rejected."""
    bounds = fine.bounds(CLASSIC)
    assert bounds is not None
    i = bisect_left(bounds, 0.15)
    good = protocol.decode(_message([_row(fine={"schema": 1, "runs": [[i, 3]]})]))
    assert list(good.rows[0].fine or []) == [i, 3]
    for bad, words in (
            ({"schema": 1, "runs": [[i, 2]]}, "add up to"),
            ({"schema": 1, "runs": [[i + 40, 3]]}, "add up to"),
            ({"schema": 1, "runs": [[i, 2], [i, 1]]}, "increasing order"),
            ({"schema": 1, "runs": [[700, 3]]}, "stay below 686"),
            ({"schema": 1, "runs": [[i, -3]]}, "a count is 0 to"),
            ({"schema": 1, "runs": [[i, 2**63]]}, "a count is 0 to"),
            ({"schema": 1, "runs": [[i]]}, "first index, count"),
            ({"schema": True, "runs": []}, '"schema": 1'),
            ({"runs": []}, '"schema": 1')):
        msg = protocol.decode(_message([_row(fine=bad), _row(method="Other")]))
        assert [row.method for row in msg.rows] == ["Other"], bad
        ((reason, detail),) = msg.rejected_rows
        assert reason == "bad_field" and words in detail, (bad, detail)


def test_old_reporters_and_unknown_schemas_still_count_with_classic_percentiles() -> None:
    """A row without fine counts, or with a schema this sidecar does not know, is applied."""
    store = Store()
    assert store.ingest(_message([_row()])) is None
    assert store.ingest(_message([_row(fine={"schema": 9, "data": "x"}, method="N")],
                                  "s2")) is None is None
    totals = store.totals()
    assert all(t.fine is None and t.handled == 3 for t in totals.values())


def test_a_sum_with_calls_of_an_older_reporter_falls_back_to_classic_but_its_windows_need_not(
        ) -> None:
    """Mixed processes: fine counts are used only where they account for every call.

    An older reporter's totals (no fine counts) plus a newer one's: not complete, so the
    classic buckets answer. A window in which only the newer one had calls: complete again.
    """
    old = Totals(hist=(2,) + (0,) * 14, codes={"OK": 2})
    new_before = Totals(hist=(1,) + (0,) * 14, codes={"OK": 1}, fine=fine.sparse([0, 1]))
    new_now = Totals(hist=(4,) + (0,) * 14, codes={"OK": 4}, fine=fine.sparse([0, 1, 0, 3]))
    assert complete_fine(old + new_now) is None
    window = (old + new_now) - (old + new_before)
    assert list(complete_fine(window) or []) == [3, 3]
    assert list(complete_fine(add_all([old, new_now]) - add_all([old, new_before])) or []) \
        == [3, 3]
    assert list(((new_now + new_now) - new_now).fine or []) == [1, 1, 3, 3]
    assert (Totals() + old).fine is None


def test_reporter_push_carries_fine_runs_and_exact_classic_counts() -> None:
    """The reporter's rows: classic hist as before, fine runs that fold back into it."""
    rep = Reporter("S", socket_path="/nonexistent/socket")
    series = rep.series("/S/M")
    assert series is not None
    rng = random.Random(9)
    values = [rng.uniform(0.002, 30.0) for _ in range(500)]
    for v in values:
        rep.observe(series, v)
    (row,) = rep.rows()
    classic = [0] * 15
    for v in values:
        classic[bisect_left(CLASSIC, v)] += 1
    assert row["hist"] == classic
    pairs = fine.from_runs(row["fine"]["runs"], 686, "runs")
    assert fine.fold_classic(pairs, CLASSIC) == classic
    # The whole message is what the sidecar accepts.
    decoded = protocol.decode(_message(json.loads(json.dumps([row]))))
    assert decoded.rows[0].hist == tuple(classic)


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.lists(st.lists(st.one_of(st.integers(-3, 700), st.integers(2**62, 2**65)), max_size=6),
             max_size=5),
    st.lists(st.one_of(st.integers(), st.text(max_size=3), st.none(), st.floats()), max_size=4),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.text(max_size=5), st.none()))
def test_any_fine_field_is_accepted_consistently_or_rejected_as_bad_field(runs: Any) -> None:
    """Whatever the runs hold: decoded counts that fold exactly into hist, or the row rejected."""
    hist = [0] * 15
    try:
        pairs = fine.from_runs(runs, 686, "runs")
        hist = fine.fold_classic(pairs, CLASSIC)
    except ValueError:
        pass
    row = _row(fine={"schema": 1, "runs": runs})
    row["hist"] = hist
    row["started"] = row["codes"]["OK"] = sum(hist)  # type: ignore[index]
    decoded = protocol.decode(_message([row]))
    if not decoded.rows:
        ((reason, _),) = decoded.rejected_rows
        assert reason == "bad_field"
        return
    (got,) = decoded.rows
    assert got.fine is not None and fine.fold_classic(got.fine, CLASSIC) == list(got.hist)
    assert all(n > 0 for n in got.fine[1::2]) and list(got.fine[0::2]) == sorted(
        set(got.fine[0::2]))


def test_the_protocol_doc_example_is_what_the_reporter_sends() -> None:
    """docs/protocol.md's fine example: seven calls, recorded and folded as documented."""
    rep = Reporter("nps.oracle.OracleService", socket_path="/nonexistent/socket")
    series = rep.series("/nps.oracle.OracleService/GetReading")
    assert series is not None
    for seconds in (0.121, 0.1215, 0.125, 0.150, 0.1502, 0.151, 0.179):
        rep.observe(series, seconds)
    (row,) = rep.rows()
    assert row["fine"] == {"schema": 1, "runs": [[363, 2, 0, 1], [374, 2, 1], [383, 1]]}
    doc = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
    assert '"runs": [[363, 2, 0, 1], [374, 2, 1], [383, 1]]' in doc


def _decrease_by_dict(after: list[int], before: list[int]) -> tuple[int, int, int] | None:
    now = dict(zip(after[0::2], after[1::2], strict=True))
    for i, n in zip(before[0::2], before[1::2], strict=True):
        if now.get(i, 0) < n:
            return i, n, now.get(i, 0)
    return None


@pytest.mark.parametrize("top", [2**32 - 1, 2**63 - 1])
def test_a_count_that_went_down_is_found_whatever_the_buckets(top: int) -> None:
    """decrease() (one big-integer subtraction when the buckets match) agrees with a plain
    bucket-by-bucket comparison: same buckets or not, at the edges of 4- and 8-byte items."""
    rng = random.Random(top)
    typecode = "I" if top < 2**32 else "q"
    for _ in range(3000):
        indexes = sorted(rng.sample(range(700), rng.randint(1, 40)))
        before = [rng.choice([1, 2, top // 2, top - 1, top]) for _ in indexes]
        after = [max(0, n + rng.choice([0, 0, 0, 1, top, -1, -top])) for n in before]
        after = [min(n, top) for n in after]
        if rng.random() < 0.3:  # a bucket more or less, or another one
            k = rng.randrange(len(indexes))
            indexes_after = sorted({*indexes[:k], *indexes[k + 1:], rng.randrange(700)})
            after = [rng.choice([0, 1, top]) if i not in indexes else after[indexes.index(i)]
                     for i in indexes_after]
        else:
            indexes_after = indexes
        pairs_after = [x for i, n in zip(indexes_after, after, strict=True) if n for x in (i, n)]
        pairs_before = [x for pair in zip(indexes, before, strict=True) for x in pair]
        want = _decrease_by_dict(pairs_after, pairs_before)
        got = fine.decrease(array(typecode, pairs_after), array(typecode, pairs_before))
        assert got == want, (pairs_before, pairs_after)
        assert fine.decrease(pairs_after, pairs_before) == want  # not arrays: the plain way
    # A count one lower under a bucket index one higher: the difference of the two big integers
    # has every index field zero, so the buckets must be compared first.
    for typecode in "Iq":
        assert fine.decrease(array(typecode, [5, 9, 10, 3]), array(typecode, [5, 10, 9, 3])) \
            == (5, 10, 9)


def _runs_outcome(read: Any) -> Any:
    try:
        return read()
    except ValueError as err:
        return str(err)


def test_runs_read_at_c_speed_give_the_pairs_or_the_error_of_the_run_by_run_reading() -> None:
    """from_runs_folded: the same pairs (and their classic fold) or the same error as the
    careful run-by-run reading, for valid runs with few or many zero counts and broken ones."""
    rng = random.Random(14)
    n = len(fine.bounds(CLASSIC) or ()) + 1
    odd: list[Any] = [True, False, 1.0, -1, None, "1", [], 2**32, 2**63, 2**64]
    for case in range(3000):
        runs: list[Any] = []
        nxt = rng.randrange(5)
        while nxt < n and len(runs) < rng.randint(1, 12):
            length = rng.choice([1, 2, 5, 40, 200])
            zeros = rng.choice([0.0, 0.1, 0.5, 0.9])
            counts = [0 if rng.random() < zeros else rng.randint(1, 10**6)
                      for _ in range(max(1, min(length, n - nxt)))]
            runs.append([nxt, *counts])
            nxt += len(counts) + rng.choice([0, 0, 1, 30])
        if case % 3 == 0:  # something broken: a value, an index, a run's shape, the order
            r = rng.randrange(len(runs))
            where = rng.randrange(len(runs[r]))
            runs[r][where] = rng.choice([*odd, n, n + 5, -3])
            if case % 9 == 0:
                runs.insert(rng.randrange(len(runs) + 1), rng.choice([[], [3], 5, {}, [2, 1]]))
        text = json.dumps(runs)
        no_bools = "true" not in text and "false" not in text
        want = _runs_outcome(partial(fine._from_runs_checked, runs, n, "runs"))
        got = _runs_outcome(partial(fine.from_runs_folded, runs, n, CLASSIC, "runs", no_bools))
        if isinstance(want, str):
            assert got == want, runs
        else:
            assert got == (want, fine.fold_classic(want, CLASSIC)), runs
            assert got[0].typecode == want.typecode
