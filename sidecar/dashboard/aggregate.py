"""Turning sidecar answers into the dashboard's views: one pod, the sum over pods, a chart.

Everything a pod sends is untrusted. Each answer is read defensively into plain, bounded JSON
(numbers finite or None, strings cut to a length, lists cut to a count); an answer that is JSON
but not a snapshot becomes an error about that pod, never an exception.

Summing over pods: counts, errors, started and rates add; the error rate is recomputed from the
sums; the average is weighted by count (exact, since an average is sum / count). Percentiles
cannot be added or averaged, but histograms can: each snapshot row carries its window's sparse
fine counts (:mod:`sidecar.fine`), the pods' counts are added exactly, and the summed p50/p95/p99
are the percentiles of that merged histogram -- within 2 % of the percentile of all the pods'
calls together (``"percentiles": "merged"``). Only when a pod sends no fine counts (an older
sidecar or reporter) or other classic bounds does a summed row fall back to the **highest
pod's** value, a true upper bound of the combined percentile (``"highest pod"``). The charts'
p95 is merged the same way, point by point.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from itertools import pairwise
from typing import Any

from sidecar import fine, protocol

__all__ = [
    "AMBER_AFTER",
    "RED_AFTER",
    "WINDOWS",
    "NotASnapshot",
    "freshness",
    "history_points",
    "merge_history",
    "pod_view",
    "public",
    "sum_pods",
]

WINDOWS = ("1m", "5m", "1h", "all")
AMBER_AFTER = 3.0  # seconds since the last push: three missed pushes at the 1 s default
RED_AFTER = 10.0  # seconds: the sidecar has called its source down for a while
MAX_TEXT = 300  # characters kept of any string a pod sends
MAX_RPCS = 2000  # rows kept per pod (the sidecar's own --max-series default)
MAX_CHECKS = 50
MAX_POINTS = 1000  # history points kept per pod (the sidecar's ring holds ~120)
MIN_POINT_SECONDS = 2.0  # shorter intervals (the ring's partial "now" point) give noisy rates

_FIGURES = ("count", "errors", "error_rate_percent", "avg_ms", "p50_ms", "p95_ms", "p99_ms",
            "max_ms", "rate_per_second", "started")


class NotASnapshot(ValueError):
    """A pod answered JSON that does not have the shape of a sidecar document."""


# -- coercion ---------------------------------------------------------------------------------

def _num(value: Any) -> float | None:
    """A finite number, or None (bools, strings, NaN and infinities are not figures)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: Any) -> int | None:
    number = _num(value)
    return None if number is None else int(number)


def _text(value: Any, limit: int = MAX_TEXT) -> str | None:
    """Text cut to ``limit`` characters; numbers become text, anything else None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise NotASnapshot(f"{what} is not an object")
    return value


def _counts(value: Any) -> dict[str, int]:
    """A {name: count} map such as ``codes`` or ``exceptions``, bounded."""
    if not isinstance(value, dict):
        return {}
    out: dict[str, int] = {}
    for key, n in list(value.items())[:MAX_CHECKS]:
        count = _int(n)
        if count is not None:
            out[_text(key) or "?"] = count
    return out


def _bounds(value: Any) -> tuple[float, ...] | None:
    """A sidecar's classic bounds (its ``buckets``), or None when they are not a bound list."""
    if not isinstance(value, list) or not 1 <= len(value) <= 64:
        return None
    numbers = [_num(v) for v in value]
    out = tuple(v for v in numbers if v is not None)
    if len(out) != len(numbers) or any(b <= a for a, b in pairwise(out)):
        return None
    return out


def _fine_counts(value: Any, bounds: tuple[float, ...] | None) -> Any:
    """A row's sparse fine counts (internal ``_fine``), or None when absent or malformed."""
    fine_bounds = fine.bounds(bounds) if bounds is not None else None
    return None if fine_bounds is None else fine.from_json(value, len(fine_bounds) + 1)


def _figures(row: Any, bounds: tuple[float, ...] | None = None) -> dict[str, Any]:
    row = _dict(row, "a row of figures")
    out: dict[str, Any] = {name: _num(row.get(name)) for name in _FIGURES}
    for name in ("count", "errors", "started"):
        out[name] = _int(row.get(name)) or 0
    out["codes"] = _counts(row.get("codes"))
    out["exceptions"] = _counts(row.get("exceptions"))
    last = row.get("last_error")
    out["last_error"] = ({"code": _text(last.get("code"), 40), "time": _num(last.get("time"))}
                         if isinstance(last, dict) else None)
    out["_fine"] = _fine_counts(row.get("fine"), bounds)
    return out


# -- one pod ----------------------------------------------------------------------------------

def freshness(age: float | None) -> str:
    """``fresh``, ``amber`` or ``red`` for the last-push badge (``red`` when never pushed)."""
    if age is None or age >= RED_AFTER:
        return "red"
    return "amber" if age >= AMBER_AFTER else "fresh"


def _health(doc: Any) -> dict[str, Any]:
    doc = _dict(doc, "health")
    status = doc.get("status")
    checks = doc.get("checks")
    age = _num(doc.get("last_push_age_seconds"))
    return {
        "status": status if status in ("healthy", "degraded", "down") else "unknown",
        "reason": _text(doc.get("reason")),
        "ready": doc.get("ready") is True,
        "ready_reason": _text(doc.get("ready_reason")),
        "version": _text(doc.get("version"), 80),
        "uptime_seconds": _num(doc.get("uptime_seconds")),
        "service": _text(doc.get("service"), 260),
        "service_version": _text(doc.get("service_version"), 80),
        "service_uptime_seconds": _num(doc.get("service_uptime_seconds")),
        "last_push_age_seconds": age,
        "freshness": freshness(age),
        "checks": {(_text(k) or "?"): (_text(v) or "")
                   for k, v in list(checks.items())[:MAX_CHECKS]}
                  if isinstance(checks, dict) else {},
        "sources": len(doc["sources"]) if isinstance(doc.get("sources"), list) else None,
    }


def _window(doc: Any, bounds: tuple[float, ...] | None) -> dict[str, Any]:
    doc = _dict(doc, "a window")
    rpcs = doc.get("rpcs")
    if not isinstance(rpcs, list):
        raise NotASnapshot("a window has no list of RPCs")
    rows = []
    for rpc in rpcs[:MAX_RPCS]:
        rpc = _dict(rpc, "an RPC row")
        rows.append({"service": _text(rpc.get("service"), 260) or "?",
                     "method": _text(rpc.get("method"), 260) or "?",
                     "type": _text(rpc.get("type"), 20) or "unary", **_figures(rpc, bounds)})
    return {"seconds": _num(doc.get("seconds")),
            "covered_seconds": _num(doc.get("covered_seconds")),
            "totals": _figures(doc.get("totals"), bounds), "rpcs": rows,
            "rpcs_dropped": max(len(rpcs) - MAX_RPCS, 0)}


def pod_view(name: str, url: str | None, body: Any, window: str, *,
             error: str | None = None, status: int | None = 200, seconds: float = 0.0,
             phase: str | None = None, pod_ready: bool | None = None,
             namespace: str | None = None) -> dict[str, Any]:
    """What the page shows of one pod, for ``window``. ``error`` when it could not be read."""
    view: dict[str, Any] = {
        "name": name, "url": url, "namespace": namespace, "phase": phase, "pod_ready": pod_ready,
        "fetch_seconds": round(seconds, 3), "reachable": False, "error": error,
        "health": None, "window": None,
    }
    if error is None and status != 200:
        error = f"answered HTTP {status}" if status is not None else "no answer"
    if error is None:
        try:
            doc = _dict(body, "the answer")
            windows = _dict(doc.get("windows"), "windows")
            view["health"] = _health(doc.get("health"))
            view["buckets"] = _bounds(doc.get("buckets"))
            view["window"] = _window(windows.get(window), view["buckets"]) \
                if window in windows else None
            view["sidecar_version"] = _text(doc.get("version"), 80)
            view["reachable"] = True
        except NotASnapshot as err:
            error = f"answered JSON that is not a sidecar snapshot ({err})"
    view["error"] = error
    if error is not None:
        view["health"] = {"status": "unreachable", "reason": error, "ready": False,
                          "freshness": "red", "checks": {}}
    return view


# -- the sum over pods ------------------------------------------------------------------------

def _add(into: dict[str, Any], row: dict[str, Any], bounds: tuple[float, ...] | None) -> None:
    into["pods"] += 1
    if into["pods"] == 1:
        into["_bounds"] = bounds
    if row.get("_fine") is None or bounds != into["_bounds"] or into["_fine"] is None:
        into["_fine"] = None  # some pod without fine counts: percentiles of the highest pod
    else:
        into["_fine"] = fine.combine(into["_fine"], row["_fine"])
    for name in ("count", "errors", "started"):
        into[name] += row[name]
    into["rate_per_second"] += row["rate_per_second"] or 0.0
    if row["avg_ms"] is not None and row["count"]:
        into["_weighted_ms"] += row["avg_ms"] * row["count"]
    for name in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):
        if row[name] is not None:
            into[name] = row[name] if into[name] is None else max(into[name], row[name])
    for name in ("codes", "exceptions"):
        for key, n in row[name].items():
            into[name][key] = into[name].get(key, 0) + n
    last = row["last_error"]
    if last and last.get("time") is not None and (
            into["last_error"] is None or last["time"] > into["last_error"]["time"]):
        into["last_error"] = last


def _empty() -> dict[str, Any]:
    return {"pods": 0, "count": 0, "errors": 0, "started": 0, "rate_per_second": 0.0,
            "_weighted_ms": 0.0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None,
            "codes": {}, "exceptions": {}, "last_error": None, "_fine": fine.sparse([]),
            "_bounds": None}


def _merged_percentiles(row: dict[str, Any], pairs: Any, bounds: tuple[float, ...] | None,
                        names: tuple[str, ...] = ("p50_ms", "p95_ms", "p99_ms")) -> str:
    """Set ``names`` from merged fine counts when there are usable ones; say how they were made.

    The estimate is capped at the highest pod's maximum (the largest duration seen).
    """
    fine_bounds = fine.bounds(bounds) if bounds is not None else None
    if pairs is None or fine_bounds is None:
        return "highest pod"
    if pairs:
        largest = (row["max_ms"] or 0.0) / 1000
        for name in names:
            q = int(name[1:3]) / 100
            value = fine.quantile(q, pairs, fine_bounds, largest)
            row[name] = None if math.isnan(value) else round(value * 1000, 3)
    return "merged"


def _finish(row: dict[str, Any]) -> dict[str, Any]:
    weighted = row.pop("_weighted_ms")
    row["percentiles"] = _merged_percentiles(row, row.pop("_fine"), row.pop("_bounds"))
    count = row["count"]
    row["avg_ms"] = round(weighted / count, 3) if count else None
    row["error_rate_percent"] = round(100.0 * row["errors"] / count, 3) if count else 0.0
    row["rate_per_second"] = round(row["rate_per_second"], 3)
    return row


def sum_pods(pods: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The per-RPC table and totals over every pod that answered (see the module docstring)."""
    totals = _empty()
    rpcs: dict[tuple[str, str, str], dict[str, Any]] = {}
    counted = 0
    for pod in pods:
        window = pod.get("window")
        if not pod.get("reachable") or not window:
            continue
        counted += 1
        bounds = pod.get("buckets")
        _add(totals, window["totals"], bounds)
        for row in window["rpcs"]:
            key = (row["service"], row["method"], row["type"])
            if key not in rpcs:
                rpcs[key] = {"service": key[0], "method": key[1], "type": key[2], **_empty()}
            _add(rpcs[key], row, bounds)
    rows = [_finish(rpcs[k]) for k in sorted(rpcs)]
    total = _finish(totals)
    merged = all(r["percentiles"] == "merged" for r in [total, *rows])
    return {"pods_counted": counted, "totals": total, "rpcs": rows,
            "percentiles": "merged" if merged else "highest pod"}


def public(view: dict[str, Any]) -> dict[str, Any]:
    """A pod view without the internal fine counts (they are for merging, not for the page)."""
    window = view.get("window")
    if window:
        for row in [window["totals"], *window["rpcs"]]:
            row.pop("_fine", None)
    return view


# -- charts -----------------------------------------------------------------------------------

def history_points(body: Any) -> list[dict[str, Any]]:
    """The points of one sidecar's /api/v1/history answer, coerced; NotASnapshot if malformed."""
    doc = _dict(body, "the answer")
    points = doc.get("points")
    if not isinstance(points, list):
        raise NotASnapshot("the answer has no list of points")
    bounds = _bounds(doc.get("buckets", list(protocol.DEFAULT_BUCKETS)))
    out = []
    for point in points[-MAX_POINTS:]:
        point = _dict(point, "a point")
        when, seconds = _num(point.get("time")), _num(point.get("seconds"))
        if when is None or seconds is None or seconds < MIN_POINT_SECONDS:
            continue
        out.append({"time": when, "seconds": seconds, "count": _int(point.get("count")) or 0,
                    "errors": _int(point.get("errors")) or 0,
                    "p95_ms": _num(point.get("p95_ms")), "max_ms": _num(point.get("max_ms")),
                    "_fine": _fine_counts(point.get("fine"), bounds), "_bounds": bounds})
    return out


def merge_history(per_pod: Iterable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One chart series from the pods' series: points binned on a common time grid.

    The sidecar's ring has 5 s points for the last five minutes and one a minute before; a
    point goes into the slot of its own step (5 s or 60 s) that holds its end time. Per slot,
    counts and errors add, the rate is the summed count over the slot's longest interval, and
    p95 is that of the pods' merged fine counts (the highest pod's when one has none).
    """
    slots: dict[tuple[int, int], dict[str, Any]] = {}
    for points in per_pod:
        for p in points:
            step = 5 if p["seconds"] < 30 else 60
            key = (step, math.ceil(p["time"] / step))
            slot = slots.get(key)
            if slot is None:
                slot = slots[key] = {"time": p["time"], "seconds": p["seconds"], "count": 0,
                                     "errors": 0, "p95_ms": None, "max_ms": None,
                                     "_fine": fine.sparse([]), "_bounds": p.get("_bounds")}
            if p.get("_fine") is None or slot["_fine"] is None \
                    or p.get("_bounds") != slot["_bounds"]:
                slot["_fine"] = None
            else:
                slot["_fine"] = fine.combine(slot["_fine"], p["_fine"])
            if p.get("max_ms") is not None:
                slot["max_ms"] = max(slot["max_ms"] or 0.0, p["max_ms"])
            slot["time"] = max(slot["time"], p["time"])
            slot["seconds"] = max(slot["seconds"], p["seconds"])
            slot["count"] += p["count"]
            slot["errors"] += p["errors"]
            if p["p95_ms"] is not None:
                slot["p95_ms"] = p["p95_ms"] if slot["p95_ms"] is None \
                    else max(slot["p95_ms"], p["p95_ms"])
    out = []
    for slot in sorted(slots.values(), key=lambda s: s["time"]):
        _merged_percentiles(slot, slot.pop("_fine"), slot.pop("_bounds"), ("p95_ms",))
        count = slot["count"]
        out.append({
            "time": round(slot["time"], 3), "seconds": round(slot["seconds"], 3), "count": count,
            "errors": slot["errors"],
            "rate_per_second": round(count / slot["seconds"], 3),
            "error_rate_percent": round(100.0 * slot["errors"] / count, 3) if count else None,
            "p95_ms": slot["p95_ms"],
        })
    return out
