"""What the sidecar says about the store: Prometheus metrics and the JSON documents.

Two prometheus-client collectors read the store directly at scrape time. The RPC families
change only when a push arrives, so their rendering is cached by the store's version and served
as the same bytes to every scrape in between; the few figures that age with the clock (push age,
freshness, readiness) are rendered on every scrape.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client import exposition as text_format
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

from sidecar import __version__, fine, protocol
from sidecar.stats import Totals, add_all, complete_fine, delta, summarise
from sidecar.store import Key, Store

__all__ = ["WINDOWS", "Exposition"]

WINDOWS = {"1m": 60.0, "5m": 300.0, "1h": 3600.0}
STATES = ("healthy", "degraded", "down", "unknown")


class _RpcCollector:
    """The standard gRPC families plus the counters that change only with a push."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        store = self.store
        totals = {} if store.settling() else store.totals()
        labels = ["grpc_type", "grpc_service", "grpc_method"]
        started = CounterMetricFamily("grpc_server_started_total",
                                      "RPCs started on the server.", labels=labels)
        handled = CounterMetricFamily("grpc_server_handled_total",
                                      "RPCs completed on the server, by status code.",
                                      labels=[*labels, "grpc_code"])
        seconds = HistogramMetricFamily("grpc_server_handling_seconds",
                                        "Time the server took to handle RPCs.", labels=labels)
        exceptions = CounterMetricFamily("oracle_sidecar_rpc_exceptions_total",
                                         "Uncaught exceptions in RPC handlers, by type.",
                                         labels=["grpc_service", "grpc_method", "exception"])
        bounds = [go_float(b) for b in (store.buckets or protocol.DEFAULT_BUCKETS)]
        for (service, method, rpc_type), t in sorted(totals.items()):
            values = [rpc_type, service, method]
            started.add_metric(values, t.started)
            for code in protocol.CODES:
                handled.add_metric([*values, code], t.codes.get(code, 0))
            cumulative, buckets = 0, []
            hist = t.hist or (0,) * (len(bounds) + 1)
            for bound, n in zip([*bounds, "+Inf"], hist, strict=True):
                cumulative += n
                buckets.append((bound, cumulative))
            seconds.add_metric(values, buckets, t.sum)
            for name, n in sorted(t.exceptions.items()):
                exceptions.add_metric([service, method, name], n)
        yield started
        yield handled
        yield seconds
        yield exceptions
        yield from _messages(totals)

        yield CounterMetricFamily("oracle_sidecar_messages_received_total",
                                  "Datagrams received from reporters.", value=store.received)
        rejected = CounterMetricFamily("oracle_sidecar_messages_rejected_total",
                                       "Datagrams rejected, by reason.", labels=["reason"])
        for reason, n in store.rejected.items():
            rejected.add_metric([reason], n)
        yield rejected
        rows = CounterMetricFamily("oracle_sidecar_rows_rejected_total",
                                   "Rows of accepted datagrams skipped, by reason.",
                                   labels=["reason"])
        for reason, n in store.rows_rejected.items():
            rows.add_metric([reason], n)
        yield rows
        dropped, errors, overflow = store.reporter_counts()
        yield CounterMetricFamily("oracle_sidecar_reporter_dropped_total",
                                  "Datagrams the reporters gave up.", value=dropped)
        yield CounterMetricFamily("oracle_sidecar_reporter_send_errors_total",
                                  "Reporter sends that failed for a reason other than a full "
                                  "queue (no sidecar, bad path).", value=errors)
        yield CounterMetricFamily("oracle_sidecar_reporter_overflow_total",
                                  "RPCs the reporters did not count per method because of "
                                  "their series limit.", value=overflow)
        yield CounterMetricFamily("oracle_sidecar_series_overflow_total",
                                  "RPC series refused by this sidecar's series limit.",
                                  value=len(store.overflow_keys))


# -- go-grpc-prometheus compatibility (issue 12): messages per method and Go's float spelling ----

def _messages(totals: dict[Key, Totals]) -> Iterator[Metric]:
    """grpc_server_msg_received_total / grpc_server_msg_sent_total, one series per method."""
    labels = ["grpc_type", "grpc_service", "grpc_method"]
    received = CounterMetricFamily("grpc_server_msg_received_total",
                                   "RPC stream messages received on the server.", labels=labels)
    sent = CounterMetricFamily("grpc_server_msg_sent_total",
                               "gRPC stream messages sent by the server.", labels=labels)
    for (service, method, rpc_type), t in sorted(totals.items()):
        received.add_metric([rpc_type, service, method], t.msg_received)
        sent.add_metric([rpc_type, service, method], t.msg_sent)
    yield received
    yield sent


def go_float(value: float) -> str:
    """``value`` as Go's strconv.FormatFloat(value, 'g', -1, 64) writes it: ``1``, ``0.005``,
    ``2.5``, ``1e+06``; the spelling client_golang gives ``le``, so ``le="1"`` selects ours too."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0 or math.isnan(value):
        return "0" if value == 0 else "NaN"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    text = "".join(map(str, digits))
    point = len(text) + int(exponent)  # the decimal point's place after the first digit
    if point - 1 < -4 or point - 1 >= 6:  # shortest 'g' switches to %e past these
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        out = f"{mantissa}e{point - 1:+03d}"
    elif point <= 0:
        out = "0." + "0" * -point + text
    elif point >= len(text):
        out = text + "0" * (point - len(text))
    else:
        out = text[:point] + "." + text[point:]
    return ("-" if sign else "") + out


class _StateCollector:
    """The figures that change with the clock, rendered on every scrape."""

    def __init__(self, store: Store, ready: Any) -> None:
        self.store = store
        self.ready = ready

    def collect(self) -> Iterator[Metric]:
        store = self.store
        status, _ = store.status()
        health = GaugeMetricFamily("oracle_sidecar_health_status",
                                   "1 for the Oracle's current health state, 0 for the others.",
                                   labels=["status"])
        for state in STATES:
            health.add_metric([state], 1.0 if state == status else 0.0)
        yield health
        yield GaugeMetricFamily("oracle_sidecar_ready",
                                "1 when /ready answers 200.", value=1.0 if self.ready() else 0.0)
        age = store.last_push_age()
        yield GaugeMetricFamily("oracle_sidecar_last_push_age_seconds",
                                "Seconds since the last push from any live reporting process "
                                "(NaN when there is none).",
                                value=math.nan if age is None else age)
        sources = GaugeMetricFamily("oracle_sidecar_sources",
                                    "Reporting processes, by freshness.", labels=["state"])
        fresh = sum(1 for s in store.sources.values() if store.is_fresh(s))
        sources.add_metric(["fresh"], fresh)
        sources.add_metric(["stale"], len(store.sources) - fresh)
        yield sources
        yield InfoMetricFamily("oracle_sidecar_build", "The sidecar's version.",
                               value={"version": __version__,
                                      "python": platform.python_version()})


class Exposition:
    """Renders /metrics and the JSON documents for one store."""

    def __init__(self, store: Store, ready: Any = lambda: False) -> None:
        self.store = store
        self._rpc = CollectorRegistry(auto_describe=False)
        self._rpc.register(_RpcCollector(store))
        self._state = CollectorRegistry(auto_describe=False)
        self._state.register(_StateCollector(store, ready))
        ProcessCollector(registry=self._state)
        self._cache: dict[str, tuple[tuple[int, bool], bytes]] = {}
        # history: the finished intervals' points, by (start, end, rpc)
        self._history: dict[tuple[float, float, str | None], dict[str, Any]] = {}

    def metrics(self, accept: str | None) -> tuple[bytes, str]:
        """(body, content type) for a scrape with this Accept header."""
        render, content_type = text_format.choose_encoder(accept or "")
        om = content_type.startswith("application/openmetrics-text")
        cached = self._cache.get(content_type)
        version = (self.store.generation, self.store.settling())
        if cached is None or cached[0] != version:
            body = render(self._rpc)
            if om:
                body = body.removesuffix(b"# EOF\n")
            cached = self._cache[content_type] = (version, body)
        return cached[1] + render(self._state), content_type

    # -- JSON ---------------------------------------------------------------------------------

    def health(self, ready: bool, reason: str) -> dict[str, Any]:
        """The /health document."""
        store = self.store
        status, why = store.status()
        now = store.clock()
        sources = sorted(store.sources.values(), key=lambda s: s.started)
        newest = sources[-1] if sources else None
        checks: dict[str, str] = {}
        for s in sources:
            checks.update(s.checks)
        age = store.last_push_age()
        return {
            "status": status,
            "reason": why,
            "ready": ready,
            "ready_reason": reason,
            "version": __version__,
            "uptime_seconds": round(now - store.started, 3),
            "service": newest.service if newest else None,
            "service_version": newest.version if newest else None,
            "service_uptime_seconds": round(time.time() - newest.started, 3) if newest else None,
            "checks": checks,
            "last_push_age_seconds": None if age is None else round(age, 3),
            "sources": [
                {
                    "id": s.id, "pid": s.pid, "service": s.service, "version": s.version,
                    "started": s.started, "seq": s.seq, "status": s.health,
                    "checks": s.checks, "fresh": store.is_fresh(s),
                    "last_push_age_seconds": round(now - s.last_push, 3),
                    "dropped": s.dropped, "send_errors": s.send_errors,
                }
                for s in sources
            ],
        }

    def snapshot(self, health: dict[str, Any]) -> dict[str, Any]:
        """The /api/v1/snapshot document: per-RPC figures for every window, and health."""
        store = self.store
        bounds = store.buckets or protocol.DEFAULT_BUCKETS
        totals = store.totals()
        windows: dict[str, Any] = {}
        for name, seconds in WINDOWS.items():
            covered, before, now = store.window(seconds)
            windows[name] = self._window(covered, bounds, totals, now, before, seconds)
        uptime = store.clock() - store.started
        windows["all"] = self._window(uptime, bounds, totals, totals, {}, None)
        errors_by_rpc = {
            f"{k[0]}/{k[1]}": {c: n for c, n in sorted(t.codes.items()) if c != "OK"}
            for k, t in sorted(totals.items()) if t.handled - t.codes.get("OK", 0)
        }
        by_type: dict[str, int] = {}
        for t in totals.values():
            for name, n in t.exceptions.items():
                by_type[name] = by_type.get(name, 0) + n
        return {
            "version": __version__,
            "time": time.time(),
            "uptime_seconds": round(uptime, 3),
            "buckets": list(bounds),
            "health": health,
            "windows": windows,
            "errors": {"by_rpc": errors_by_rpc, "by_type": dict(sorted(by_type.items()))},
        }

    @staticmethod
    def _window(covered: float, bounds: tuple[float, ...], totals: dict[Key, Totals],
                now: dict[Key, Totals], before: dict[Key, Totals], seconds: float | None
                ) -> dict[str, Any]:
        rpcs = []
        deltas = []
        for key in sorted(now):
            d = delta(now[key], before.get(key))
            deltas.append(d)
            row = summarise(d, bounds, covered, totals[key].max if key in totals else 0.0)
            rpcs.append({"service": key[0], "method": key[1], "type": key[2], **row,
                         "fine": fine.to_json(complete_fine(d))})
        summed = add_all(deltas)
        largest = max((t.max for t in totals.values()), default=0.0)
        return {
            "seconds": seconds,
            "covered_seconds": round(covered, 3),
            "totals": {**summarise(summed, bounds, covered, largest),
                       "fine": fine.to_json(complete_fine(summed))},
            "rpcs": rpcs,
        }

    def history(self, rpc: str | None = None) -> dict[str, Any]:
        """The /api/v1/history document: one point per ring interval over the last hour.

        Each point holds the figures of the interval that ends at its time, summed over RPCs,
        or for one RPC when ``rpc`` is ``Service/Method``.
        """
        store = self.store
        bounds = store.buckets or protocol.DEFAULT_BUCKETS
        ring = list(store.ring)
        ring.append((store.clock(), time.time(), store.observed()))

        def pick(points: dict[Key, Totals]) -> Totals:
            return add_all(t for key, t in points.items()
                           if rpc is None or f"{key[0]}/{key[1]}" == rpc)

        # Ring points never change: the point between two of them is kept, so a refresh
        # computes only the newest interval (the ring's last point to now).
        cache = self._history
        kept = len(ring) - 1  # ring[kept] is "now", never kept
        sums: dict[int, Totals] = {}

        def total(i: int) -> Totals:
            if i not in sums:
                sums[i] = pick(ring[i][2])
            return sums[i]

        points = []
        for i in range(1, len(ring)):
            (t0, _, _), (t1, wall, _) = ring[i - 1], ring[i]
            key = (t0, t1, rpc)
            point = cache.get(key) if i < kept else None
            if point is None:
                previous, current = total(i - 1), total(i)
                d = current - previous if previous.hist or previous.codes else current
                s = summarise(d, bounds, t1 - t0, current.max)  # capped as the snapshot's are
                point = {
                    "time": round(wall, 3), "seconds": round(t1 - t0, 3), "count": s["count"],
                    "errors": s["errors"], "rate_per_second": s["rate_per_second"],
                    "error_rate_percent": s["error_rate_percent"], "p95_ms": s["p95_ms"],
                    "max_ms": s["max_ms"], "fine": fine.to_json(complete_fine(d)),
                }
                if i < kept:
                    cache[key] = point
            points.append(point)
        if len(cache) > 4 * kept:  # points pruned from the ring, or other RPCs asked
            live = {(ring[i - 1][0], ring[i][0]) for i in range(1, kept)}
            self._history = {k: v for k, v in cache.items() if k[:2] in live and k[2] == rpc}
        return {"rpc": rpc, "buckets": list(bounds), "points": points}
