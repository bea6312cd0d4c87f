"""Benchmark 4: the sidecar process itself: ingest capacity, scrape latency, memory.

- Ingest: a real ``oracle-sidecar serve`` pinned to one core, fed valid cumulative snapshots
  (8 methods each) as fast as it takes them by a sender pinned to the other core, as 1, 100 and
  1000 distinct reporting processes. Each process pushes once a second, so snapshots/s on one
  core is also how many processes one core can carry.
- Scrapes: ``/metrics`` right after a push (rendered anew, which is what Prometheus gets: it
  scrapes every 15 to 30 s and a push arrives every second), ``/metrics`` again without a push
  (the cached bytes), and ``/api/v1/snapshot``, for the Oracle's 8 methods and for 800 methods
  (100 times the series), over keep-alive HTTP on 127.0.0.1.
- Memory: VmRSS idle after start, and VmRSS/VmHWM after the loads above.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import time
from typing import Any

from benchmarks.machine import cpu_seconds, memory_mib
from benchmarks.procs import Http, Procs, wait_until
from benchmarks.report import Section, percentile, spread, table
from sidecar import protocol
from sidecar.demo import METHODS, SERVICE

__all__ = ["run"]


def _cpus() -> tuple[int | None, int | None]:
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)


def _ingest(procs: Procs, sources: int, duration: float) -> dict[str, Any]:
    side_cpu, send_cpu = _cpus()
    sidecar, port, path = procs.sidecar(cpu=side_cpu)
    time.sleep(0.5)
    idle = memory_mib(sidecar.pid)["VmRSS"]
    sender = procs.python("benchmarks._sender", "blast", "--socket", path, "--sources",
                          str(sources), "--duration", str(duration), stdout=subprocess.PIPE,
                          name="blast", cpu=send_cpu)
    # The sender spends its first moments encoding templates: measure from its first send.
    http = Http(port)
    received0 = wait_until(lambda: _received(http) or None, 30, "the first snapshot")
    cpu0, t0 = cpu_seconds(sidecar.pid), time.monotonic()
    out, _ = sender.communicate(timeout=duration + 60)
    cpu, window = cpu_seconds(sidecar.pid) - cpu0, time.monotonic() - t0
    received = _received(http) - received0
    text = http.get("/metrics")[1].decode()
    http.close()
    mem = memory_mib(sidecar.pid)
    procs.stop(sidecar)
    sent = json.loads(out)
    rejected = sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
                   if line.startswith("oracle_sidecar_messages_rejected_total{"))
    return {"sources": sources, "received": received, "window": window, "cpu": cpu,
            "rate": received / window, "share": cpu / window, "bytes": sent["bytes"],
            "rejected": rejected, "idle_rss": idle, "rss": mem["VmRSS"], "hwm": mem["VmHWM"]}


def _received(http: Http) -> int:
    for line in http.get("/metrics")[1].decode().splitlines():
        if line.startswith("oracle_sidecar_messages_received_total "):
            return int(float(line.split()[1]))
    return 0


class Pusher:
    """Sends one process's cumulative snapshots of ``methods`` methods, growing each time."""

    def __init__(self, path: str | None, methods: int) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if path is not None:  # None: only make the snapshots (see snapshot)
            self.sock.connect(path)
        self.names = list(METHODS) if methods == len(METHODS) else [
            f"Method{j:04d}" for j in range(methods)]
        self.seq = 0
        self.started = time.time()
        self.rng = random.Random(3)
        n = len(protocol.DEFAULT_BUCKETS) + 1
        self.rows: list[dict[str, Any]] = [
            {"service": SERVICE, "method": m, "type": "unary", "started": 0,
             "codes": {"OK": 0, "Internal": 0, "NotFound": 0}, "hist": [0] * n, "sum": 0.0,
             "max": 0.0} for m in self.names]

    def push(self) -> int:
        parts = self.snapshot()
        for p in parts:
            self.sock.send(p)
        return len(parts)

    def snapshot(self) -> list[bytes]:
        """The next cumulative snapshot, every method changed, as datagrams."""
        self.seq += 1
        for row in self.rows:
            k = self.rng.randint(50, 150)
            row["started"] += k
            row["codes"]["OK"] += k - 2
            row["codes"]["Internal"] += 1
            row["codes"]["NotFound"] += 1
            row["hist"][self.rng.randint(0, 6)] += k
            row["sum"] += k * 0.004
            row["max"] = 0.3
        parts = protocol.encode(
            source={"id": "bench-scrape", "pid": 4242, "started": self.started,
                    "service": SERVICE, "version": "bench"},
            seq=self.seq, time=time.time(), buckets=protocol.DEFAULT_BUCKETS, rows=self.rows,
            health="healthy", checks={}, reporter={"dropped": 0, "send_errors": 0,
                                                   "overflow": 0})
        return parts

    def close(self) -> None:
        self.sock.close()


def _scrapes(procs: Procs, methods: int, n: int) -> dict[str, Any]:
    side_cpu, _ = _cpus()
    sidecar, port, path = procs.sidecar(cpu=side_cpu)
    pusher = Pusher(path, methods)
    http = Http(port)
    parts = pusher.push()
    wait_until(lambda: http.get("/api/v1/snapshot")[1].count(b'"method"') >= methods, 30,
               f"{methods} methods in the snapshot")
    fresh, cached, snap = [], [], []
    size = snap_size = 0
    for _ in range(n):
        pusher.push()
        time.sleep(0.05 + methods / 20_000)  # received and applied before the scrape
        _, body, seconds = http.get("/metrics")
        fresh.append(seconds)
        size = len(body)
    for _ in range(n):
        _, body, seconds = http.get("/metrics")
        cached.append(seconds)
    for _ in range(n):
        _, body, seconds = http.get("/api/v1/snapshot")
        snap.append(seconds)
        snap_size = len(body)
    lines = http.get("/metrics")[1].count(b"\n")
    http.close()
    pusher.close()
    mem = memory_mib(sidecar.pid)
    procs.stop(sidecar)
    return {"methods": methods, "fresh": fresh, "cached": cached, "snapshot": snap,
            "size": size, "snap_size": snap_size, "lines": lines, "parts": parts,
            "rss": mem["VmRSS"], "hwm": mem["VmHWM"]}


def run(quick: bool, machine: str, command: str) -> Section:
    duration = 0.5 if quick else 3.0
    counts = (1,) if quick else (1, 100, 1000)
    with Procs() as procs:
        ingest = [_ingest(procs, k, duration) for k in counts]
        scrapes = [_scrapes(procs, 8, 5 if quick else 40),
                   _scrapes(procs, 800, 2 if quick else 12)]
    return _section(ingest, scrapes, duration, quick, machine, command)


def _ms(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (f"{spread(ms).median:.2f} / {percentile(ms, 90):.2f} / {max(ms):.2f}"
            if ms else "–")


def _section(ingest: list[dict[str, Any]], scrapes: list[dict[str, Any]], duration: float,
             quick: bool, machine: str, command: str) -> Section:
    rows = []
    for r in ingest:
        capacity = r["rate"] / r["share"] if r["share"] > 0 else float("nan")
        rows.append((f"{r['sources']:,}", f"{r['bytes']:,}", f"{r['rate']:,.0f}",
                     f"{100 * r['share']:.0f} %", f"{1e6 * r['cpu'] / max(r['received'], 1):.0f}",
                     f"{capacity:,.0f}", str(r["rejected"]), f"{r['rss']:.1f} / {r['hwm']:.1f}"))
    t1 = table(["reporting processes", "bytes per snapshot", "snapshots/s ingested",
                "sidecar CPU (one core)", "CPU µs per snapshot",
                "snapshots/s = processes per full core", "rejected", "RSS / peak MiB after"],
               rows, right=(0, 1, 2, 3, 4, 5, 6, 7))
    rows2 = []
    for s in scrapes:
        rows2.append((f"{s['methods']:,} methods, {s['lines']:,} lines", "/metrics after a push",
                      _ms(s["fresh"]), f"{s['size'] / 1024:,.0f} KiB", str(len(s["fresh"]))))
        rows2.append(("", "/metrics again (cached)", _ms(s["cached"]),
                      f"{s['size'] / 1024:,.0f} KiB", str(len(s["cached"]))))
        rows2.append(("", "/api/v1/snapshot", _ms(s["snapshot"]),
                      f"{s['snap_size'] / 1024:,.0f} KiB", str(len(s["snapshot"]))))
    t2 = table(["series", "request", "ms median / p90 / max", "body", "requests"], rows2,
               right=(2, 3, 4))
    idle = spread([r["idle_rss"] for r in ingest])
    peak = max([r["hwm"] for r in ingest] + [s["hwm"] for s in scrapes])
    oracle = scrapes[0]
    fresh_ms = spread([v * 1000 for v in oracle["fresh"]]).median
    section = Section(
        key="sidecar",
        title="4. The sidecar: ingest, scrapes, memory",
        intro=(f"A real `oracle-sidecar serve`, pinned to one core; a sender pinned to the other "
               f"core sends valid cumulative snapshots (8 methods each) as fast as the sidecar "
               f"takes them, for {duration:g} s, as 1, 100 or 1000 distinct reporting processes "
               f"(a fresh sidecar each time). CPU is the sidecar's user + system time over the "
               f"window; \"processes per full core\" divides the rate by that share, since each "
               f"reporting process pushes once a second. Then, on a fresh sidecar each, scrape "
               f"latency for the Oracle's 8 methods and for 800 methods (100× the series), "
               f"measured by a keep-alive HTTP client from request to last byte."
               + (" Quick mode: figures indicative only." if quick else "")),
        machine=machine,
        command=command,
        tables=[t1, t2],
    )
    section.targets = [
        ("sidecar RSS < 40 MiB idle", f"{idle.text(2)} MiB (peak under load {peak:.1f} MiB)",
         idle.median < 40),
        ("/metrics for the Oracle (8 methods) < 5 ms", f"{fresh_ms:.2f} ms median right after a "
         f"push (rendered), {spread([v * 1000 for v in oracle['cached']]).median:.2f} ms cached",
         fresh_ms < 5),
    ]
    section.notes = [
        f"RSS idle, right after start with no source: {idle.text(2)} MiB; after 800 methods: "
        f"{scrapes[1]['rss']:.1f} MiB (peak {scrapes[1]['hwm']:.1f} MiB). 800 methods need "
        f"{scrapes[1]['parts']} datagrams per snapshot.",
    ]
    return section
