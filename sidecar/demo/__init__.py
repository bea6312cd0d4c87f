"""The demo Oracle, a traffic generator and ``oracle-sidecar demo``: the whole system locally.

- :mod:`sidecar.demo.oracle` — a grpcio server for ``nps.oracle.OracleService`` with knobs that
  inject errors, latency and failing health checks (:mod:`sidecar.demo.knobs`), changed at run
  time through a localhost JSON endpoint (:mod:`sidecar.demo.control`).
- :mod:`sidecar.demo.load` — real gRPC traffic to any Oracle, with a JSON summary.
- :mod:`sidecar.demo.run` — starts the demo Oracle, the sidecar, the dashboard and a gentle load
  as separate processes wired through one socket.

See docs/demo.md.
"""

from __future__ import annotations

__all__ = ["METHODS", "SERVICE", "full_method"]

SERVICE = "nps.oracle.OracleService"
METHODS: tuple[str, ...] = (
    "GetReading",
    "GetNameReading",
    "GetQuestionSign",
    "GetDailyInsight",
    "SuggestRange",
    "AnalyzeSession",
    "GetTimingAlignment",
    "HealthCheck",
)


def full_method(method: str) -> str:
    """``GetReading`` -> ``/nps.oracle.OracleService/GetReading``, as gRPC names a method."""
    return f"/{SERVICE}/{method}"
