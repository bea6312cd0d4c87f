"""Reproducible performance runs, printed as ratios against the alternatives in the same run.

``python -m benchmarks`` runs them all (about twelve minutes on two cores) and rewrites their
sections of docs/benchmarks.md; ``--quick`` is a short smoke run that writes nothing unless
given ``--output``; ``--only NAME`` picks some.

1. ``isolated`` (:mod:`benchmarks.isolated`): per-RPC recording cost in the service, the
   reporter against a dict floor, prometheus-client, py-grpc-prometheus, the OpenTelemetry SDK,
   one datagram per RPC, DogStatsD and statsd.
2. ``e2e`` (:mod:`benchmarks.end_to_end`): a real grpcio server (sync and grpc.aio) under
   concurrent load, uninstrumented and with each instrumentation, interleaved.
3. ``delivery`` (:mod:`benchmarks.delivery`): at 10 000 RPC/s offered, what reaches the
   receiver and the receiver's CPU per RPC, one datagram per RPC against snapshots.
4. ``sidecar`` (:mod:`benchmarks.sidecar_server`): snapshots/s on one core, /metrics and
   /api/v1/snapshot latency for 8 and 800 methods, RSS.
5. ``dashboard`` (:mod:`benchmarks.dashboard`): the dashboard's /api/status and one alerter run
   against 20 targets.
6. ``freshness`` (:mod:`benchmarks.freshness`): from an RPC's completion to /metrics.
7. ``state`` (:mod:`benchmarks.state_file`): the sidecar's state file, a save and a load
   against ingesting the pushes.
8. ``fine`` (:mod:`benchmarks.fine`): what the fine histogram costs against the classic
   buckets alone: the record path, the Oracle's push, the sidecar's memory for 1 000 methods.
9. ``ingest`` (:mod:`benchmarks.ingest`): CPU per 8-method snapshot before and after the
   ingest work, in-process and in a real sidecar; per datagram of the reporter's own snapshots
   (fine counts) and of one 64 KiB part of a 2 000-method snapshot; parts of a 10-part
   snapshot delivered per push, paced and not.
10. ``render`` (:mod:`benchmarks.render`): /metrics rendered by the sidecar's writer against
   prometheus-client and Go's client_golang; the event loop and /livez under scrape load of
   2 000 series; idle RSS.
11. ``history_gc`` (:mod:`benchmarks.history_gc`): a full garbage collection with an hour of
   history for 2 000 busy methods, as the history is kept and as it was kept before.

Times are never asserted anywhere: a shared machine makes them noisy, so each table shows the
spread over rounds and the ratios taken within a round. No benchmark reaches beyond 127.0.0.1
and the Unix sockets of its own temporary directory, and each ends the processes it started.
"""

from __future__ import annotations

__all__ = ["BENCHMARKS"]

BENCHMARKS = {
    "isolated": "benchmarks.isolated",
    "e2e": "benchmarks.end_to_end",
    "delivery": "benchmarks.delivery",
    "sidecar": "benchmarks.sidecar_server",
    "dashboard": "benchmarks.dashboard",
    "freshness": "benchmarks.freshness",
    "state": "benchmarks.state_file",
    "fine": "benchmarks.fine",
    "ingest": "benchmarks.ingest",
    "render": "benchmarks.render",
    "history_gc": "benchmarks.history_gc",
}
