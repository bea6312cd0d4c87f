"""Benchmark 2: RPC/s and latency of a real grpcio server, with and without instrumentation.

One server process per variant (``benchmarks._grpc_server``: sync ``grpc.server`` with 16
workers, or ``grpc.aio``), all started before the first run, and one grpc.aio client process
(``benchmarks._grpc_client``) with 16 concurrent callers. Each round runs every variant once,
in a shuffled order, plus a second uninstrumented run: the two uninstrumented runs of a round
give the noise band (an A/A comparison), and each variant's ratio is taken against their mean
in the same round. The reporter pushes to a real sidecar, as in production.
"""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Iterable
from typing import Any

from benchmarks.procs import Http, Procs, free_port
from benchmarks.report import Section, Spread, ratio_text, spread, table

__all__ = ["run"]

LABELS = {
    "none": "none (uninstrumented)",
    "reporter": "**reporter** (this project)",
    "pgp": "py-grpc-prometheus",
    "otel": "OpenTelemetry SDK histogram",
}
CONCURRENCY = 16


def _ask(client: subprocess.Popen[bytes], request: dict[str, Any]) -> dict[str, Any]:
    assert client.stdin is not None and client.stdout is not None
    client.stdin.write((json.dumps(request) + "\n").encode())
    client.stdin.flush()
    line = client.stdout.readline()
    if not line:
        raise RuntimeError("the load client stopped answering")
    return dict(json.loads(line))


def _start_servers(procs: Procs, mode: str, variants: list[str], socket_path: str
                   ) -> dict[str, int]:
    """One server per variant, started together; their ports once every one is ready."""
    started = []
    for v in variants:
        port = free_port()
        server = procs.python("benchmarks._grpc_server", "--mode", mode, "--instrument", v,
                              "--port", str(port), "--socket", socket_path,
                              name=f"{mode}-{v}", stdout=subprocess.PIPE)
        started.append((v, port, server))
    for v, _, server in started:
        assert server.stdout is not None
        if server.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"{mode}/{v} server did not start:\n{procs.log(server)}")
    return {v: port for v, port, _ in started}


def _mode(procs: Procs, client: subprocess.Popen[bytes], mode: str, variants: list[str],
          rounds: int, duration: float, warmup: float, socket_path: str
          ) -> dict[str, dict[str, list[float]]]:
    ports = _start_servers(procs, mode, variants, socket_path)
    ports["none#2"] = ports["none"]
    figures: dict[str, dict[str, list[float]]] = {
        v: {"rate": [], "p50": [], "p99": [], "ratio": [], "errors": []}
        for v in [*variants, "none#2"]}
    rng = random.Random(2)
    for _ in range(rounds):
        order = [*variants, "none#2"]
        rng.shuffle(order)
        got = {}
        for v in order:
            got[v] = _ask(client, {"target": f"127.0.0.1:{ports[v]}", "duration": duration,
                                   "warmup": warmup, "concurrency": CONCURRENCY})
        base = (got["none"]["rate"] + got["none#2"]["rate"]) / 2
        for v, res in got.items():
            f = figures[v]
            f["rate"].append(res["rate"])
            f["p50"].append(res["p50_ms"])
            f["p99"].append(res["p99_ms"])
            f["errors"].append(res["errors"])
            f["ratio"].append(res["rate"] / base)
        figures["none#2"]["ratio"][-1] = got["none#2"]["rate"] / got["none"]["rate"]
    return figures


def run(quick: bool, machine: str, command: str) -> Section:
    rounds, duration, warmup = (1, 0.4, 0.1) if quick else (7, 2.0, 0.3)
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    received = rejected = 0
    with Procs() as procs:
        _, sidecar_port, socket_path = procs.sidecar()
        client = procs.python("benchmarks._grpc_client", stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, name="client")
        assert client.stdout is not None
        if client.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"the load client did not start:\n{procs.log(client)}")
        results["sync"] = _mode(procs, client, "sync", ["none", "reporter", "pgp", "otel"],
                                rounds, duration, warmup, socket_path)
        results["aio"] = _mode(procs, client, "aio", ["none", "reporter", "otel"], rounds,
                               duration, warmup, socket_path)
        http = Http(sidecar_port)
        _, body, _ = http.get("/metrics")
        http.close()
        for line in body.decode().splitlines():
            if line.startswith("oracle_sidecar_messages_received_total "):
                received = int(float(line.split()[1]))
            elif line.startswith("oracle_sidecar_messages_rejected_total{"):
                rejected += int(float(line.split()[1]))
    return _section(results, rounds, duration, received, rejected, quick, machine, command)


def _noise(figures: dict[str, dict[str, list[float]]]) -> Spread:
    """How far apart the two uninstrumented runs of a round were, in percent."""
    return spread([abs(r - 1) * 100 for r in figures["none#2"]["ratio"]])


def _rows(mode: str, figures: dict[str, dict[str, list[float]]]) -> Iterable[tuple[str, ...]]:
    for v in figures:
        if v == "none#2":
            continue
        f = figures[v]
        ratio = "1 (reference)" if v == "none" else ratio_text(spread(f["ratio"]), 2)
        errors = int(sum(f["errors"]))
        yield (mode, LABELS[v], spread(f["rate"]).text(0), ratio, spread(f["p50"]).text(2),
               spread(f["p99"]).text(2), str(errors))


def _section(results: dict[str, dict[str, dict[str, list[float]]]], rounds: int,
             duration: float, received: int, rejected: int, quick: bool, machine: str,
             command: str) -> Section:
    rows = [row for mode in ("sync", "aio") for row in _rows(mode, results[mode])]
    rows.append(("aio", LABELS["pgp"], "n/a: py-grpc-prometheus has no grpc.aio interceptor",
                 "", "", "", ""))
    t = table(["server", "instrumentation", "RPC/s, median (min–max)",
               "× none, median (min–max)", "p50 ms", "p99 ms", "errors"], rows,
              right=(2, 3, 4, 5, 6))
    noise = {mode: _noise(results[mode]) for mode in results}
    section = Section(
        key="e2e",
        title="2. End to end: a real grpcio server under load",
        intro=(f"A grpcio server (sync `grpc.server` with 16 worker threads, and `grpc.aio`) "
               f"answering the Oracle's 8 method names with a fixed 64-byte reply (raw bytes, "
               f"no protobuf), called by one grpc.aio client process with {CONCURRENCY} "
               f"concurrent callers over 127.0.0.1, client and server sharing the 2 cores. "
               f"{rounds} rounds of {duration:g} s per variant (after a short warm-up), the "
               f"variants shuffled within each round, plus a second uninstrumented run per "
               f"round. Each ratio is the variant's RPC/s over the mean of the round's two "
               f"uninstrumented runs; the noise band is how far those two runs were apart. "
               f"py-grpc-prometheus runs with its handling-time histogram on; OpenTelemetry "
               f"records the `rpc.server.duration` histogram through the SDK (in-memory "
               f"reader); the reporter pushes to a real sidecar once a second."
               + (" Quick mode: figures indicative only." if quick else "")),
        machine=machine,
        command=command,
        tables=[t],
    )
    rep = {mode: spread(results[mode]["reporter"]["ratio"]) for mode in results}
    # Within the noise: the reporter's median distance from none is no larger than the median
    # distance between two uninstrumented runs of the same round.
    within = {mode: abs(rep[mode].median - 1) * 100 <= noise[mode].median for mode in results}
    section.targets = [
        (f"reporter's RPC/s within the noise of none ({mode})",
         f"{ratio_text(rep[mode], 2)} of none; the A/A noise band was "
         f"{noise[mode].text(1)} %", within[mode])
        for mode in ("sync", "aio")
    ]
    section.notes = [
        f"Noise band, the two uninstrumented runs of a round apart by: sync "
        f"{noise['sync'].text(1)} %, aio {noise['aio'].text(1)} % (median and range over "
        f"rounds). A ratio inside that band is indistinguishable from none in this run.",
        f"The sidecar received {received:,} snapshots from the reporter servers during the "
        f"run and rejected {rejected}.",
    ]
    return section
