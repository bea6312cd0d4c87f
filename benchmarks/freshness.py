"""Benchmark 6: from an RPC's completion to its appearance on the sidecar's /metrics.

A sync grpcio server with the reporter (the default one-second flush interval) pushes to a real
sidecar. This process makes one RPC at a random moment, notes when the answer arrived, then polls
``/metrics`` every 5 ms until ``grpc_server_handled_total`` for that method shows it. The random
moment spreads the RPCs over the flush cycle, as real traffic is.
"""

from __future__ import annotations

import random
import subprocess
import time

from benchmarks.procs import Http, Procs, free_port
from benchmarks.report import Section, percentile, table
from sidecar.demo import SERVICE

__all__ = ["run"]

METHOD = "GetReading"
NEEDLES = (f'grpc_method="{METHOD}"'.encode(), b'grpc_code="OK"',
           f'grpc_service="{SERVICE}"'.encode())


def _count(body: bytes) -> int:
    """``grpc_server_handled_total`` for METHOD and OK, whatever the order of the labels."""
    for line in body.splitlines():
        if line.startswith(b"grpc_server_handled_total{") and all(n in line for n in NEEDLES):
            return int(float(line.rsplit(b" ", 1)[1]))
    return 0


def run(quick: bool, machine: str, command: str) -> Section:
    import grpc

    samples = 3 if quick else 40
    interval = 1.0
    latencies: list[float] = []
    missed = 0
    rng = random.Random(6)
    with Procs() as procs:
        _, sidecar_port, socket_path = procs.sidecar()
        port = free_port()
        server = procs.python("benchmarks._grpc_server", "--mode", "sync", "--instrument",
                              "reporter", "--port", str(port), "--socket", socket_path,
                              "--interval", str(interval), stdout=subprocess.PIPE, name="server")
        assert server.stdout is not None
        if server.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"the gRPC server did not start:\n{procs.log(server)}")
        http = Http(sidecar_port)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(f"/{SERVICE}/{METHOD}", request_serializer=lambda b: b,
                                       response_deserializer=lambda b: b)
            call(b"warm-up", timeout=10)
            done = 1
            for _ in range(samples):
                time.sleep(rng.uniform(0, interval))
                call(b"q", timeout=10)
                finished = time.perf_counter()
                done += 1
                deadline = finished + 5 * interval
                while time.perf_counter() < deadline:
                    _, body, _ = http.get("/metrics")
                    if _count(body) >= done:
                        latencies.append(time.perf_counter() - finished)
                        break
                    time.sleep(0.005)
                else:
                    missed += 1
        http.close()
    return _section(latencies, missed, samples, interval, quick, machine, command)


def _section(latencies: list[float], missed: int, samples: int, interval: float, quick: bool,
             machine: str, command: str) -> Section:
    ms = [x * 1000 for x in latencies]
    p50, p90, p99 = (percentile(ms, q) for q in (50, 90, 99))
    worst = max(ms) if ms else float("nan")
    t = table(["RPCs", "p50 ms", "p90 ms", "p99 ms", "max ms", "not seen within 5 s"],
              [(str(samples), f"{p50:.0f}", f"{p90:.0f}", f"{p99:.0f}", f"{worst:.0f}",
                str(missed))], right=(0, 1, 2, 3, 4, 5))
    section = Section(
        key="freshness",
        title="6. Freshness: from an RPC's completion to /metrics",
        intro=(f"A sync grpcio server with the reporter (flush interval {interval:g} s) pushes "
               f"to a real sidecar. {samples} single RPCs, each at a random moment of the flush "
               f"cycle; for each, the time from the client receiving the answer to the first "
               f"`/metrics` (polled every 5 ms over keep-alive HTTP) that counts it. With "
               f"{samples} samples the p99 is the largest but one or the largest."
               + (" Quick mode: figures indicative only." if quick else "")),
        machine=machine,
        command=command,
        tables=[t],
    )
    section.targets = [("freshness p99 < 1.5 s", f"{p99:.0f} ms (p50 {p50:.0f} ms)",
                        p99 < 1500 and missed == 0)]
    section.notes = [
        f"Expected: the flush interval bounds it, so completion-to-visible is spread evenly "
        f"over 0–{interval * 1000:.0f} ms plus the push, apply and scrape (a few ms); polling "
        f"adds up to 5 ms more. A shorter `interval` buys freshness at one snapshot per "
        f"interval.",
    ]
    return section
