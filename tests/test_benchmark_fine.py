"""Benchmark 8 (the fine histogram) runs its parts; its figures are never asserted."""

from __future__ import annotations

from benchmarks import fine as bench


def test_fine_benchmark_parts_run_on_a_small_scale() -> None:
    """The record loops of both variants, the Oracle's push and the memory child all run.

    The classic variant records the way the reporter did before the fine histogram: its push
    has no fine counts and its series hold the 15 classic buckets.
    """
    for variant in ("classic", "fine"):
        rep = bench.reporter(variant)
        bench.record_loop(rep)(200)
        bench.traffic(rep, 50)
        (size,) = bench.push_bytes(rep)
        assert size > 0
        rows = rep.rows()
        assert all(("fine" in row) == (variant == "fine") for row in rows)
        assert all(sum(row["hist"]) == row["started"] for row in rows)
    result = bench.memory_child("fine", 5, 2)
    assert result["ring_points"] > 60 and result["datagrams"] == 1
    assert len(result["history_ms"]) == 2
