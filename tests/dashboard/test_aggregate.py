"""Summing pods and charts, and reading whatever a pod sends without trusting it."""

from __future__ import annotations

import math
from typing import Any

from sidecar.dashboard.aggregate import freshness, merge_history, pod_view, sum_pods


def _row(method: str, count: int, errors: int, p95: float, avg: float, rate: float,
         last: tuple[str, float] | None = None) -> dict[str, Any]:
    return {"service": "s.S", "method": method, "type": "unary", "count": count,
            "errors": errors, "error_rate_percent": 100.0 * errors / count, "avg_ms": avg,
            "p50_ms": p95 / 2, "p95_ms": p95, "p99_ms": p95 * 1.2, "max_ms": p95 * 2,
            "rate_per_second": rate, "started": count, "codes": {"OK": count - errors},
            "exceptions": {}, "last_error": {"code": last[0], "time": last[1]} if last else None}


def _snapshot(*rows: dict[str, Any]) -> dict[str, Any]:
    totals = dict(rows[0]) if rows else {}
    return {"version": "0.1.0", "health": {"status": "healthy", "ready": True, "checks": {},
                                           "last_push_age_seconds": 0.5},
            "windows": {"1m": {"seconds": 60, "covered_seconds": 60, "totals": totals,
                               "rpcs": list(rows)}}}


def test_counts_add_and_percentiles_are_the_highest_pods() -> None:
    """Counts, errors and rates add; avg is count-weighted; without fine counts (older
    sidecars) p50/p95/p99 fall back to the highest pod's."""
    a = pod_view("a", "http://a", _snapshot(_row("Get", 100, 1, 10.0, 4.0, 10.0,
                                                 ("Internal", 100.0))), "1m")
    b = pod_view("b", "http://b", _snapshot(_row("Get", 300, 9, 30.0, 8.0, 5.0,
                                                 ("Unavailable", 200.0))), "1m")
    down = pod_view("c", "http://c", None, "1m", error="no answer within 2 s")
    summed = sum_pods([a, b, down])
    assert summed["pods_counted"] == 2 and summed["percentiles"] == "highest pod"
    (row,) = summed["rpcs"]
    assert (row["count"], row["errors"], row["rate_per_second"]) == (400, 10, 15.0)
    assert row["error_rate_percent"] == 2.5
    assert row["avg_ms"] == 7.0  # (100*4 + 300*8) / 400
    assert (row["p50_ms"], row["p95_ms"], row["p99_ms"], row["max_ms"]) == (15.0, 30.0, 36.0, 60.0)
    assert row["last_error"] == {"code": "Unavailable", "time": 200.0}
    assert row["pods"] == 2 and row["codes"] == {"OK": 390}


def test_hostile_and_malformed_answers_are_coerced_or_refused() -> None:
    """NaN, strings and bools are no figures; long text is cut; a wrong shape names the pod."""
    row = _row("M" * 5000, 3, 0, 1.0, 1.0, 1.0)
    row.update(p95_ms=math.nan, p99_ms="fast", max_ms=True, count=3.0)
    body = _snapshot(row)
    body["health"].update(status="<b>on fire</b>", checks={"x" * 400: ["not", "text"]},
                          version={"a": 1})
    view = pod_view("p", "http://p", body, "1m")
    (seen,) = view["window"]["rpcs"]
    assert (seen["p95_ms"], seen["p99_ms"], seen["max_ms"]) == (None, None, None)
    assert seen["count"] == 3 and len(seen["method"]) == 260 and seen["method"].endswith("…")
    health = view["health"]
    assert health["status"] == "unknown" and health["version"] is None
    assert list(health["checks"].values()) == [""] and len(next(iter(health["checks"]))) == 300
    bad: Any
    for bad in ([1, 2], {"windows": []}, {"windows": {"1m": {"rpcs": "x"}}, "health": {}},
                {"windows": {"1m": {"rpcs": [5]}}, "health": {}}):
        view = pod_view("p", "http://p", bad, "1m")
        assert not view["reachable"] and "not a sidecar snapshot" in view["error"]
        assert view["health"]["status"] == "unreachable"
    assert pod_view("p", "http://p", {}, "1m", status=503)["error"] == "answered HTTP 503"


def test_push_age_badge_turns_amber_then_red() -> None:
    """Fresh under 3 s, amber from 3 s, red from 10 s or when the Oracle never pushed."""
    assert [freshness(a) for a in (0.4, 2.9, 3.0, 9.9, 10.0, None)] == [
        "fresh", "fresh", "amber", "amber", "red", "red"]


def test_history_of_pods_is_binned_on_one_grid() -> None:
    """5 s and 1 min points of two pods fall into shared slots; without fine counts, p95 is
    the highest pod's."""
    a = [{"time": 1000.0, "seconds": 60.0, "count": 600, "errors": 6, "p95_ms": 20.0},
         {"time": 1062.0, "seconds": 5.0, "count": 50, "errors": 0, "p95_ms": 10.0}]
    b = [{"time": 1001.0, "seconds": 60.0, "count": 1200, "errors": 0, "p95_ms": 40.0},
         {"time": 1063.0, "seconds": 5.0, "count": 100, "errors": 5, "p95_ms": 5.0}]
    series = merge_history([a, b])
    assert [(p["count"], p["errors"], p["p95_ms"]) for p in series] == [
        (1800, 6, 40.0), (150, 5, 10.0)]
    assert series[0]["rate_per_second"] == 30.0 and series[1]["rate_per_second"] == 30.0
    assert series[1]["error_rate_percent"] == round(500 / 150, 3)
