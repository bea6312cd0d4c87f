"""The aggregate store: sources, monotonic counters across restarts, windows, limits."""

from __future__ import annotations

import gc
import json
import math
from array import array
from dataclasses import fields
from typing import Any

import pytest

from sidecar import slices
from sidecar.exposition import Exposition
from sidecar.promtext import OPENMETRICS
from sidecar.protocol import DEFAULT_BUCKETS, encode
from sidecar.stats import Totals, delta, histogram_quantile
from sidecar.store import RING_STEP, Store

KEY = ("nps.oracle.OracleService", "GetReading", "unary")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def snapshot(source: str = "p1", seq: int = 1, ok: int = 0, errors: int = 0,
             method: str = "GetReading", started: float = 1e10, health: str = "healthy",
             final: bool = False, bucket: int = 2, messages: tuple[int, int] | None = None,
             **extra: Any) -> bytes:
    hist = [0] * (len(DEFAULT_BUCKETS) + 1)
    hist[bucket] = ok + errors
    codes = {"OK": ok}
    if errors:
        codes["Internal"] = errors
    rows = [{"service": KEY[0], "method": method, "type": "unary", "started": ok + errors,
             "codes": codes, "hist": hist, "sum": 0.02 * (ok + errors), "max": 0.02}]
    if messages is not None:
        rows[0].update(msg_received=messages[0], msg_sent=messages[1])
    (one,) = encode(source={"id": source, "pid": 1, "started": started, "service": KEY[0],
                            "version": "1"}, seq=seq, time=started, buckets=DEFAULT_BUCKETS,
                    rows=rows, health=health, checks={}, reporter={"dropped": 1}, final=final,
                    **extra)
    return one


def store(**kwargs: Any) -> tuple[Store, Clock]:
    clock = Clock()
    return Store(clock=clock, wall=lambda: 2e10, **kwargs), clock


def handled(s: Store, code: str = "OK") -> int:
    return s.totals()[KEY].codes.get(code, 0)


def test_newer_snapshots_replace_older_ones() -> None:
    """Cumulative snapshots are not added up: the newest one is the truth."""
    s, _ = store()
    assert s.ingest(snapshot(seq=1, ok=5)) is None
    assert s.ingest(snapshot(seq=2, ok=8)) is None
    assert handled(s) == 8


def test_replayed_or_older_sequence_is_not_applied() -> None:
    """A message whose sequence number is not newer is counted and ignored."""
    s, _ = store()
    s.ingest(snapshot(seq=5, ok=8))
    assert s.ingest(snapshot(seq=5, ok=9)) == "not_newer"
    assert s.ingest(snapshot(seq=4, ok=9)) == "not_newer"
    assert handled(s) == 8
    assert s.rejected["not_newer"] == 2


def test_decreasing_counter_within_one_source_is_rejected() -> None:
    """A counter that goes down within one source is refused (that row); the old totals stand."""
    s, _ = store()
    s.ingest(snapshot(seq=1, ok=8))
    assert s.ingest(snapshot(seq=2, ok=3)) is None
    assert s.rows_rejected["counter_decreased"] == 1
    assert handled(s) == 8


def test_stream_message_counters_must_not_decrease_either() -> None:
    """msg_received / msg_sent going down within one source refuses the row (counted)."""
    s, _ = store()
    s.ingest(snapshot(seq=1, ok=8, messages=(40, 30)))
    assert s.ingest(snapshot(seq=2, ok=9, messages=(39, 31))) is None
    assert s.ingest(snapshot(seq=3, ok=9, messages=(41, 29))) is None
    assert s.rows_rejected["counter_decreased"] == 2
    (totals,) = s.totals().values()
    assert (totals.msg_received, totals.msg_sent) == (40, 30)
    assert s.ingest(snapshot(seq=4, ok=9, messages=(41, 31))) is None
    (totals,) = s.totals().values()
    assert (totals.msg_received, totals.msg_sent) == (41, 31)
    assert s.rows_rejected["counter_decreased"] == 2


def test_restarted_process_keeps_counters_monotonic() -> None:
    """A process that exits (final) and comes back as a new source adds to retired totals."""
    s, _ = store()
    s.ingest(snapshot("p1", 1, ok=10))
    s.ingest(snapshot("p1", 2, ok=12, final=True))
    assert "p1" not in s.sources
    assert handled(s) == 12
    s.ingest(snapshot("p2", 1, ok=3))
    assert handled(s) == 15
    assert s.reporter_counts()[0] == 2  # drops of both processes


def test_expired_source_is_retired_and_taken_back_if_it_speaks_again() -> None:
    """A silent process is folded after expire_after; if it returns nothing is doubled."""
    s, clock = store(stale_after=5, expire_after=30)
    s.ingest(snapshot("p1", 1, ok=10))
    clock.t += 6
    assert s.status()[0] == "down"
    clock.t += 30
    s.tick()
    assert "p1" not in s.sources and handled(s) == 10
    s.ingest(snapshot("p1", 2, ok=11))
    assert "p1" in s.sources and handled(s) == 11


def test_health_is_the_worst_fresh_state_and_stale_counts_as_down() -> None:
    """No source is unknown; degraded wins over healthy; a silent source is down."""
    s, clock = store(stale_after=5)
    assert s.status()[0] == "unknown"
    s.ingest(snapshot("p1", 1))
    assert s.status()[0] == "healthy"
    s.ingest(snapshot("p2", 1, health="degraded"))
    assert s.status()[0] == "degraded"
    clock.t += 5.5
    s.ingest(snapshot("p2", 2, health="degraded"))
    status, reason = s.status()
    assert status == "down" and "has not pushed" in reason


def test_bucket_bounds_must_match_the_exported_ones() -> None:
    """A source with other bucket bounds cannot be merged, so it is rejected."""
    s, _ = store()
    s.ingest(snapshot("p1"))
    body = json.loads(snapshot("p2"))
    body["buckets"] = [1.0, 2.0]
    body["rpcs"][0]["hist"] = [0, 0, 0]
    assert s.ingest(json.dumps(body).encode()) == "bucket_mismatch"


def test_series_cap_counts_overflow_once_per_series() -> None:
    """Past max_series new methods are refused and counted once each, push after push."""
    s, _ = store(max_series=3)
    for seq in (1, 2):
        for i in range(10):
            s.ingest(snapshot(f"p{i}", seq, ok=seq, method=f"M{i}"))
    assert len(s.totals()) == 3
    assert len(s.overflow_keys) == 7


def test_windows_exclude_what_happened_before_the_sidecar_listened() -> None:
    """A process that ran before the sidecar started contributes only new RPCs to windows."""
    s, clock = store()
    s.ingest(snapshot("old", 1, ok=1000, started=1.0))  # began long before this sidecar
    for step in range(1, 4):
        clock.t += RING_STEP
        s.tick()
        s.ingest(snapshot("old", 1 + step, ok=1000 + 10 * step, started=1.0))
    _, before = s.window_start(60)
    assert KEY not in before  # the window starts at the sidecar's start
    assert delta(s.observed()[KEY], None).handled == 30
    assert s.totals()[KEY].handled == 1030  # the counter itself is the full total


def test_window_start_moves_with_time() -> None:
    """The 1m window subtracts the ring point a minute back, not the sidecar's start."""
    s, clock = store()
    s.ingest(snapshot("p", 1, ok=100, started=2e10))
    for step in range(30):  # 150 s of history, 10 RPCs per 5 s
        clock.t += RING_STEP
        s.tick()
        s.ingest(snapshot("p", 2 + step, ok=110 + 10 * step, started=2e10))
    covered, before = s.window_start(60)
    assert covered == pytest.approx(60, abs=RING_STEP)
    assert (s.observed()[KEY] - Totals.unpack(before[KEY])).handled == pytest.approx(120, abs=10)


def test_history_points_are_packed_out_of_the_garbage_collectors_sight() -> None:
    """Ring points hold packed totals the cyclic GC stops tracking (an hour of them for
    thousands of methods cost ~80 ms per full collection as objects); an idle method's point
    shares the previous one's tuple; every field comes back unpacked."""
    s, clock = store()
    s.ingest(snapshot("p", 1, ok=5, started=2e10))
    s.ingest(snapshot("q", 1, ok=1, started=2e10, method="Idle"))
    for step in range(3):
        clock.t += RING_STEP
        s.ingest(snapshot("p", 2 + step, ok=6 + step, started=2e10))
        s.tick()
    gc.collect()  # untracks the new hist tuples, then (below) the points made of them
    gc.collect()
    points = [point for _, _, point in s.ring][1:]
    assert not any(gc.is_tracked(packed) for point in points for packed in point.values())
    idle = (KEY[0], "Idle", "unary")
    assert points[0][idle] is points[-1][idle]
    assert points[0][KEY] is not points[-1][KEY]
    assert {k: Totals.unpack(p) for k, p in s.ring[-1][2].items()} == s.observed()
    full = Totals(started=3, codes={"OK": 2, "Internal": 1}, hist=(1, 2), sum=0.5, max=0.4,
                  exceptions={"KeyError": 1}, last_error=("Internal", 9.0), msg_received=3,
                  msg_sent=2, fine=array("I", [7, 3]))
    assert all(getattr(full, f.name) != getattr(Totals(), f.name) for f in fields(Totals))
    assert Totals.unpack(full.pack()) == full  # every field, none at its default, comes back
    packed = full.pack()
    gc.collect()
    gc.collect()
    assert not gc.is_tracked(packed)  # fine counts included (an array would be tracked)


def push(source: str, seq: int, oks: dict[str, int], final: bool = False) -> bytes:
    """One datagram from ``source``: each method of ``oks`` with that many OK calls."""
    rows = [{"service": KEY[0], "method": method, "type": "unary", "started": ok,
             "codes": {"OK": ok}, "hist": [ok] + [0] * len(DEFAULT_BUCKETS), "sum": 0.0,
             "max": 0.0} for method, ok in oks.items()]
    (one,) = encode(source={"id": source, "pid": 1, "started": 1e10, "service": KEY[0],
                            "version": "1"}, seq=seq, time=1e10, buckets=DEFAULT_BUCKETS,
                    rows=rows, health="healthy", checks={}, reporter={}, final=final)
    return one


def run_slices(slices: Any, between: Any = None) -> tuple[Any, int]:
    """(result, how many times it yielded); ``between`` runs at the first yield."""
    yields = 0
    while True:
        try:
            next(slices)
        except StopIteration as done:
            return done.value, yields
        if not yields and between is not None:
            between()
        yields += 1


def test_totals_over_several_processes_are_summed_in_slices_and_only_where_new(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With no time left in a slice, each new sum is its own slice (besides the checks between
    every few methods); the result is the store at the call (a push between slices is in the
    next); an unchanged method keeps its sum, the very object."""
    monkeypatch.setattr(slices, "SLICE_SECONDS", 0.0)
    s, _ = store()
    methods = [f"M{i}" for i in range(20)]
    assert s.ingest(push("a", 1, dict.fromkeys(methods, 10), final=True)) is None  # retired
    assert s.ingest(push("b", 1, dict.fromkeys(methods, 1))) is None
    totals, yields = run_slices(s.totals_slices(), between=lambda: s.ingest(
        push("b", 2, dict.fromkeys(methods, 2))))
    assert yields >= 20 and {t.started for t in totals.values()} == {11}
    before = s.totals()
    assert {t.started for t in before.values()} == {12}
    s.ingest(push("b", 3, {**dict.fromkeys(methods, 2), "M0": 3}))
    totals, yields = run_slices(s.totals_slices())
    assert yields < 10 and totals[(KEY[0], "M0", "unary")].started == 13
    assert all(totals[key] is before[key] for key in totals if key[1] != "M0")


def test_a_sum_is_made_again_when_a_process_joins_a_method_whose_other_totals_are_unchanged(
        ) -> None:
    """A kept sum is reused only if made from exactly the same totals: a third process for a
    method whose retired and live totals stand still is added, and so is a second one for a
    method only retired processes had."""
    s, _ = store()
    assert s.ingest(push("gone", 1, {"M": 10, "Only": 5}, final=True)) is None
    assert s.ingest(push("a", 1, {"M": 1})) is None
    assert {k[1]: t.started for k, t in s.totals().items()} == {"M": 11, "Only": 5}
    assert s.ingest(push("b", 1, {"M": 100, "Only": 50})) is None
    assert {k[1]: t.started for k, t in s.totals().items()} == {"M": 111, "Only": 55}


def test_after_a_restart_store_and_writer_keep_two_tracked_objects_per_method() -> None:
    """A full garbage collection goes through every tracked object, on the event loop: after a
    restart (each method counted by a retired process and a live one), with history and both
    formats scraped, the store and the /metrics writer keep two per method (the live totals and
    their sum with the retired ones); the retired totals and the retired process's rows are
    packed, and the writer lets go of the totals it wrote from once the store has replaced
    them. The lines stay the same."""
    methods = [f"M{i}" for i in range(200)]
    gc.collect()
    before = len(gc.get_objects())
    clock = Clock()
    s = Store(clock=clock, wall=lambda: 1e10)  # the processes started with it: no prehistory
    exposition = Exposition(s)
    assert s.ingest(push("a", 1, dict.fromkeys(methods, 10), final=True)) is None
    for seq in range(1, 6):
        clock.t += RING_STEP
        assert s.ingest(push("b", seq, dict.fromkeys(methods, seq))) is None
        s.tick()
        for accept in ("", OPENMETRICS):
            exposition.metrics(accept)
    assert s.ingest(push("b", 6, dict.fromkeys(methods, 6))) is None  # not scraped since
    slices.drive(exposition.forget_replaced(s.totals()))
    gc.collect()
    gc.collect()
    kept = len(gc.get_objects()) - before
    assert kept <= 2 * len(methods) + 100, kept
    for accept in ("", OPENMETRICS):
        assert rpc_lines(exposition.metrics(accept)[0]) == rpc_lines(
            Exposition(s).metrics(accept)[0])


def rpc_lines(body: bytes) -> list[bytes]:
    return [line for line in body.splitlines() if line.startswith(b"grpc_")]


def test_histogram_quantile_matches_promql() -> None:
    """Interpolation inside the bucket, and the highest finite bound for +Inf, as PromQL."""
    bounds = (0.1, 1.0, 10.0)
    assert histogram_quantile(0.5, bounds, (0, 10, 0, 0)) == pytest.approx(0.55)
    assert histogram_quantile(0.95, bounds, (90, 5, 5, 0)) == pytest.approx(1.0)
    assert histogram_quantile(0.99, bounds, (0, 0, 0, 5)) == 10.0
    assert math.isnan(histogram_quantile(0.5, bounds, (0, 0, 0, 0)))  # no observations
