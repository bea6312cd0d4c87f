"""Benchmark 2: a real grpcio server, with and without instrumentation, under load.

One server process per variant (``benchmarks._grpc_server``: sync ``grpc.server`` with 16
workers, or ``grpc.aio``), all started before the first run, and one grpc.aio client process
(``benchmarks._grpc_client``). Each variant gets two runs per round:

- closed loop: 16 callers back to back, the most RPC/s the pair of processes manages;
- open loop at a fixed 800 RPC/s (well under that maximum): latency p50/p99, and the server's
  CPU time per RPC from /proc. At a fixed rate every variant does the same work per second, so
  the extra CPU per RPC is the instrumentation's cost, with less of the machine's other load in
  it than RPC/s has.

Each round runs the variants in a shuffled order, plus a second uninstrumented one: the two
uninstrumented runs of a round give the noise band (an A/A comparison), and each ratio is taken
against their mean in the same round. The reporter pushes to a real sidecar, as in production.
"""

from __future__ import annotations

import json
import random
import subprocess
from typing import Any

from benchmarks.machine import cpu_seconds
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
RATE = 800  # RPC/s of the open-loop runs
Figures = dict[str, dict[str, list[float]]]  # variant -> figure -> one value per round


def _ask(client: subprocess.Popen[bytes], request: dict[str, Any]) -> dict[str, Any]:
    assert client.stdin is not None and client.stdout is not None
    client.stdin.write((json.dumps(request) + "\n").encode())
    client.stdin.flush()
    line = client.stdout.readline()
    if not line:
        raise RuntimeError("the load client stopped answering")
    return dict(json.loads(line))


def _start_servers(procs: Procs, mode: str, variants: list[str], socket_path: str
                   ) -> dict[str, tuple[int, int]]:
    """One server per variant, started together; (port, pid) of each once all are ready."""
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
    return {v: (port, server.pid) for v, port, server in started}


def _one(client: subprocess.Popen[bytes], port: int, pid: int, closed: float, paced: float,
         warmup: float) -> dict[str, float]:
    target = f"127.0.0.1:{port}"
    top = _ask(client, {"target": target, "duration": closed, "warmup": warmup,
                        "concurrency": CONCURRENCY})
    cpu0 = cpu_seconds(pid)
    fixed = _ask(client, {"target": target, "duration": paced, "rate": RATE,
                          "concurrency": 4 * CONCURRENCY})
    cpu_us = 1e6 * (cpu_seconds(pid) - cpu0) / max(fixed["rpcs"], 1)
    return {"rate": top["rate"], "cpu_us": cpu_us, "p50": fixed["p50_ms"],
            "p99": fixed["p99_ms"], "errors": top["errors"] + fixed["errors"],
            "paced_rate": fixed["rate"]}


def _mode(procs: Procs, client: subprocess.Popen[bytes], mode: str, variants: list[str],
          rounds: int, closed: float, paced: float, warmup: float, socket_path: str) -> Figures:
    servers = _start_servers(procs, mode, variants, socket_path)
    servers["none#2"] = servers["none"]
    keys = ("rate", "cpu_us", "p50", "p99", "errors", "paced_rate", "rate_ratio", "cpu_ratio",
            "cpu_extra")
    figures: Figures = {v: {k: [] for k in keys} for v in [*variants, "none#2"]}
    rng = random.Random(2)
    for _ in range(rounds):
        order = [*variants, "none#2"]
        rng.shuffle(order)
        got = {v: _one(client, *servers[v], closed, paced, warmup) for v in order}
        a, b = got["none"], got["none#2"]
        base_rate, base_cpu = (a["rate"] + b["rate"]) / 2, (a["cpu_us"] + b["cpu_us"]) / 2
        for v, res in got.items():
            f = figures[v]
            for k in ("rate", "cpu_us", "p50", "p99", "errors", "paced_rate"):
                f[k].append(res[k])
            f["rate_ratio"].append(res["rate"] / base_rate)
            f["cpu_ratio"].append(res["cpu_us"] / base_cpu)
            f["cpu_extra"].append(res["cpu_us"] - base_cpu)
        # The A/A pair: the second uninstrumented run against the first.
        figures["none#2"]["rate_ratio"][-1] = b["rate"] / a["rate"]
        figures["none#2"]["cpu_ratio"][-1] = b["cpu_us"] / a["cpu_us"]
    return figures


def run(quick: bool, machine: str, command: str) -> Section:
    rounds, closed, paced, warmup = (1, 0.3, 0.3, 0.1) if quick else (5, 2.0, 1.5, 0.3)
    results: dict[str, Figures] = {}
    received = rejected = 0
    with Procs() as procs:
        _, sidecar_port, socket_path = procs.sidecar()
        client = procs.python("benchmarks._grpc_client", stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, name="client")
        assert client.stdout is not None
        if client.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"the load client did not start:\n{procs.log(client)}")
        results["sync"] = _mode(procs, client, "sync", ["none", "reporter", "pgp", "otel"],
                                rounds, closed, paced, warmup, socket_path)
        results["aio"] = _mode(procs, client, "aio", ["none", "reporter", "otel"], rounds,
                               closed, paced, warmup, socket_path)
        http = Http(sidecar_port)
        _, body, _ = http.get("/metrics")
        http.close()
        for line in body.decode().splitlines():
            if line.startswith("oracle_sidecar_messages_received_total "):
                received = int(float(line.split()[1]))
            elif line.startswith("oracle_sidecar_messages_rejected_total{"):
                rejected += int(float(line.split()[1]))
    return _section(results, rounds, closed, paced, received, rejected, quick, machine,
                    command)


def _noise(figures: Figures, key: str) -> Spread:
    """How far apart the two uninstrumented runs of a round were, in percent."""
    return spread([abs(r - 1) * 100 for r in figures["none#2"][key]])


def _section(results: dict[str, Figures], rounds: int, closed: float, paced: float,
             received: int, rejected: int, quick: bool, machine: str, command: str) -> Section:
    rows = []
    for mode, figures in results.items():
        for v, f in figures.items():
            if v == "none#2":
                continue
            ref = v == "none"
            rows.append((mode, LABELS[v], spread(f["rate"]).text(0),
                         "1 (reference)" if ref else ratio_text(spread(f["rate_ratio"]), 2),
                         spread(f["cpu_us"]).text(2),
                         "1 (reference)" if ref else ratio_text(spread(f["cpu_ratio"]), 2),
                         "–" if ref else spread(f["cpu_extra"]).text(1),
                         spread(f["p50"]).text(2), spread(f["p99"]).text(2),
                         str(int(sum(f["errors"])))))
    rows.append(("aio", LABELS["pgp"], "n/a: no grpc.aio interceptor", "", "", "", "", "", "",
                 ""))
    t = table(["server", "instrumentation", "max RPC/s (closed loop)", "× none",
               f"server CPU µs per RPC at {RATE} RPC/s", "× none", "extra µs per RPC",
               f"p50 ms at {RATE}/s", f"p99 ms at {RATE}/s", "errors"], rows,
              right=(2, 3, 4, 5, 6, 7, 8, 9))
    noise = {mode: (_noise(f, "rate_ratio"), _noise(f, "cpu_ratio")) for mode, f in results.items()}
    section = Section(
        key="e2e",
        title="2. End to end: a real grpcio server under load",
        intro=(f"A grpcio server (sync `grpc.server` with 16 worker threads, and `grpc.aio`) "
               f"answering the Oracle's 8 method names with a fixed 64-byte reply (raw bytes, "
               f"no protobuf), called over 127.0.0.1 by one grpc.aio client process, client "
               f"and server sharing the machine's cores. Per variant and round: a closed-loop "
               f"run of {closed:g} s with {CONCURRENCY} callers back to back (the maximum "
               f"RPC/s), then an open-loop run of {paced:g} s at {RATE} RPC/s (latency, and "
               f"the server process's CPU time per RPC from /proc). {rounds} round(s), the "
               f"variants shuffled within each, plus a second uninstrumented run per round; "
               f"ratios are against the mean of the round's two uninstrumented runs, and the "
               f"noise band is how far those two were apart. py-grpc-prometheus runs with its "
               f"handling-time histogram on; OpenTelemetry records `rpc.server.duration` "
               f"through the SDK (in-memory reader); the reporter pushes to a real sidecar "
               f"once a second."
               + (" Quick mode: figures indicative only." if quick else "")),
        machine=machine,
        command=command,
        tables=[t],
    )
    for mode, figures in results.items():
        rep = figures["reporter"]
        rate, cpu = spread(rep["rate_ratio"]), spread(rep["cpu_ratio"])
        n_rate, n_cpu = noise[mode]
        ok = (abs(rate.median - 1) * 100 <= n_rate.median
              and abs(cpu.median - 1) * 100 <= n_cpu.median)
        section.targets.append((
            f"reporter's throughput within the noise of none ({mode})",
            f"max RPC/s {ratio_text(rate, 2)} (A/A noise {n_rate.text(1)} %); CPU per RPC "
            f"{ratio_text(cpu, 2)} (A/A noise {n_cpu.text(1)} %)", ok))
    section.notes = [
        "Noise band, the two uninstrumented runs of a round apart by (median and range over "
        "rounds): " + "; ".join(
            f"{mode}: max RPC/s {noise[mode][0].text(1)} %, CPU per RPC "
            f"{noise[mode][1].text(1)} %" for mode in results)
        + ". A ratio inside its band cannot be told from none in this run; the verdict asks "
        "both medians to be inside the medians of their bands.",
        "\"Extra µs per RPC\" is the server CPU per RPC above the round's uninstrumented mean; "
        "compare it with the isolated interceptor overheads of benchmark 1, which are measured "
        "with far less noise.",
        f"The sidecar received {received:,} snapshots from the reporter servers during the "
        f"run and rejected {rejected}.",
    ]
    return section
