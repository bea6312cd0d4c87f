"""Cardinality: 10 000 distinct method names, and names made to break things, end to end."""

from __future__ import annotations

import socket
import time
from typing import Any

from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse

from sidecar import protocol
from sidecar.reporter.core import Reporter
from tests.conftest import SidecarProcess, http_get, http_json, parse_metrics, wait_for
from tests.reliability.hostile import HOSTILE_NAMES, message

N = 10_000


def series_of(text: str, service: str | None) -> dict[str, float]:
    """grpc_server_started_total per method of ``service`` (of every service when None)."""
    return {dict(labels)["grpc_method"]: v for (name, labels), v in parse_metrics(text).items()
            if name == "grpc_server_started_total"
            and service in (None, dict(labels)["grpc_service"])}


def sample(text: str, name: str) -> float:
    return sum(v for (n, _), v in parse_metrics(text).items() if n == name)


def test_ten_thousand_methods_from_a_client_past_every_limit_are_capped_at_max_series(
        sidecar: SidecarProcess, figures: Any) -> None:
    """A sender that ignores the reporter's limit: 2 000 series exported (the documented
    --max-series default), 8 000 counted as overflow, logged once, /metrics stays bounded."""
    rows = []
    for i in range(N):
        hist = [0] * (len(protocol.DEFAULT_BUCKETS) + 1)
        hist[1] = 1
        rows.append({"service": "greedy.Svc", "method": f"Method{i:05d}", "type": "unary",
                     "started": 1, "codes": {"OK": 1}, "hist": hist, "sum": 0.007})
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as tx:
        tx.settimeout(10)
        for seq in (1, 2, 3):  # the same snapshot pushed three times: counted once
            parts = message(rows, "greedy", seq, started=time.time())
            for part in parts:
                tx.sendto(part, sidecar.socket)
    received = 3 * len(parts)
    wait_for(lambda: sample(sidecar.metrics(), "oracle_sidecar_messages_received_total")
             == received, 20, message="every part to be received")
    t0 = time.perf_counter()
    status, text, _ = http_get(sidecar.url + "/metrics")
    scrape_ms = (time.perf_counter() - t0) * 1000
    assert status == 200
    exported = series_of(text, "greedy.Svc")
    assert len(exported) == 2000
    assert sample(text, "oracle_sidecar_series_overflow_total") == N - 2000
    assert sample(text, "oracle_sidecar_messages_rejected_total") == 0  # refused, not rejected
    assert sidecar.log().count("series limit") == 1
    snapshot = http_json(sidecar.url + "/api/v1/snapshot")
    assert len(snapshot["windows"]["all"]["rpcs"]) == 2000
    figures(methods_sent=N, parts_per_snapshot=len(parts), series_exported=len(exported),
            overflow=N - 2000, log_lines=1, metrics_bytes=len(text),
            scrape_ms=round(scrape_ms, 1))


def test_ten_thousand_methods_in_one_process_stop_at_the_reporters_limit(
        sidecar: SidecarProcess, figures: Any) -> None:
    """The reporter keeps 1 000 methods (its default); the other 9 000 RPCs are overflow."""
    rep = Reporter("many.Svc", "1", socket_path=sidecar.socket, interval=0.2)
    for i in range(N):
        with rep.track(f"many.Svc/Method{i:05d}"):
            pass
    rep.start()
    wait_for(lambda: len(series_of(sidecar.metrics(), "many.Svc")) == 1000, 20,
             message="1 000 series")
    text = sidecar.metrics()
    wait_for(lambda: sample(sidecar.metrics(), "oracle_sidecar_reporter_overflow_total")
             == N - 1000, 10, message="the reporter's overflow to be exported")
    assert rep.overflow == N - 1000
    assert sum(series_of(text, "many.Svc").values()) == 1000
    rep.close()
    figures(methods_called=N, series_kept=1000, reporter_overflow=rep.overflow)


def test_hostile_names_reach_both_formats_intact_or_cleaned_never_breaking_them(
        sidecar: SidecarProcess, figures: Any) -> None:
    """Markup, quotes, control characters, 300-character names: the snapshot is never lost."""
    rep = Reporter("hostile.Svc", "1", socket_path=sidecar.socket, interval=0.2)
    bad = ["tab\there", "new\nline", "nul\x00", "a\ud800b", "x" * 300, "\x1b[31mred"]
    for name in (*HOSTILE_NAMES, *bad, "Plain"):
        with rep.track(f"hostile.Svc/{name}"):
            pass
    rep.set_health("healthy", {"check\nname": "text \ud800 " + "y" * 2000})
    rep.start()
    wait_for(lambda: "Plain" in series_of(sidecar.metrics(), "hostile.Svc"), 10,
             message="the snapshot to be accepted")
    text = sidecar.metrics()
    got = series_of(text, None)  # a "/" in a name splits it into service and method
    printable = [n for n in HOSTILE_NAMES if not protocol.FORBIDDEN.search(n) and "/" not in n]
    assert all(got[n] == 1 for n in printable)  # exactly as sent, escaped by the exposition
    assert sum(got.values()) == len(HOSTILE_NAMES) + len(bad) + 1  # and nothing lost
    assert all(not protocol.FORBIDDEN.search(n) and len(n) <= protocol.MAX_NAME for n in got)
    _, om, _ = http_get(sidecar.url + "/metrics",
                        {"Accept": "application/openmetrics-text; version=1.0.0"})
    om_methods = {s.labels["grpc_method"] for f in om_parse(om)  # type: ignore[no-untyped-call]
                  for s in f.samples
                  if s.name == "grpc_server_started_total"}
    assert om_methods == set(got)
    assert sample(text, "oracle_sidecar_messages_rejected_total") == 0
    health = http_json(sidecar.url + "/health")
    assert health["status"] == "healthy" and len(health["checks"]) == 1
    rep.close()
    figures(names=len(got), cleaned=len(bad), rejected=0)
