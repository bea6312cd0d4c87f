"""The sidecar's /metrics as prometheus-client rendered it before sidecar.promtext: the old path.

The collectors are the ones the sidecar used (with the message families of issue 12), read
the same store, and go through prometheus-client's ``choose_encoder`` and
``generate_latest``. The render benchmark times it against the new writer, and the exposition
tests parse both renderings of one store and require the same families and samples.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Iterator
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
from prometheus_client.utils import floatToGoString

from sidecar import __version__, protocol
from sidecar.documents import HEALTH_STATES as STATES
from sidecar.exposition import RPC_FAMILIES
from sidecar.store import Store

__all__ = ["Reference"]

_HELP = {name: help_text for name, _, help_text in RPC_FAMILIES}


class _RpcCollector:
    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        store = self.store
        totals = {} if store.settling() else store.totals()
        labels = ["grpc_type", "grpc_service", "grpc_method"]

        def counter(name: str, extra: tuple[str, ...] = ()) -> CounterMetricFamily:
            return CounterMetricFamily(name.removesuffix("_total"), _HELP[name],
                                       labels=[*labels, *extra])

        started = counter("grpc_server_started_total")
        handled = counter("grpc_server_handled_total", ("grpc_code",))
        seconds = HistogramMetricFamily("grpc_server_handling_seconds",
                                        _HELP["grpc_server_handling_seconds"], labels=labels)
        received = counter("grpc_server_msg_received_total")
        sent = counter("grpc_server_msg_sent_total")
        exceptions = CounterMetricFamily("oracle_sidecar_rpc_exceptions",
                                         _HELP["oracle_sidecar_rpc_exceptions_total"],
                                         labels=["grpc_service", "grpc_method", "exception"])
        bounds = [floatToGoString(b)  # type: ignore[no-untyped-call]
                  for b in (store.buckets or protocol.DEFAULT_BUCKETS)]
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
            received.add_metric(values, t.msg_received)
            sent.add_metric(values, t.msg_sent)
            for name, n in sorted(t.exceptions.items()):
                exceptions.add_metric([service, method, name], n)
        yield from (started, handled, seconds, exceptions, received, sent)

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


class _StateCollector:
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


class Reference:
    """prometheus-client's rendering of a store, cached by the store's version as before."""

    def __init__(self, store: Store, ready: Any = lambda: False) -> None:
        self.store = store
        self._rpc = CollectorRegistry(auto_describe=False)
        self._rpc.register(_RpcCollector(store))
        self._state = CollectorRegistry(auto_describe=False)
        self._state.register(_StateCollector(store, ready))
        ProcessCollector(registry=self._state)
        self._cache: dict[str, tuple[tuple[int, bool], bytes]] = {}

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
