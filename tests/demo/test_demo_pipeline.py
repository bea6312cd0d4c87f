"""The demo Oracle with the real sidecar: totals, readiness and latency as the sidecar sees them."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from sidecar.demo import SERVICE
from tests.demo.helpers import handled_by_method, http, start_oracle, wait_for


def test_sidecar_totals_equal_what_the_client_saw(procs, sidecar):
    """demo-oracle + serve + load --requests 2000: per-method, per-code totals match exactly."""
    _, url, sock = sidecar
    oracle, port, _ = start_oracle(
        procs, "--error-rate", "GetReading=0.1", "--error-rate", "SuggestRange=0.05",
        "--error-rate", "HealthCheck=0.02", "--error-code", "UNAVAILABLE", "--seed", "3",
        socket_path=sock)
    load = procs("load", ["load", "--target", f"127.0.0.1:{port}", "--requests", "2000",
                          "--concurrency", "16", "--json"])
    assert load.proc.wait(60) == 0, load.log()
    client = json.loads(load.log())
    assert client["total"] == 2000
    assert client["by_code"]["Unavailable"] > 0

    def sidecar_counts() -> dict[str, dict[str, int]] | None:
        counts = handled_by_method(http("GET", url + "/metrics")[1], SERVICE)
        return counts if counts == client["by_method"] else None

    try:
        wait_for(sidecar_counts, 5, "the sidecar's totals to equal the client's")
    finally:
        got = handled_by_method(http("GET", url + "/metrics")[1], SERVICE)
        print(json.dumps({"client": client["by_method"], "sidecar": got}, indent=1))
    by_code: dict[str, int] = {}
    for codes in handled_by_method(http("GET", url + "/metrics")[1], SERVICE).values():
        for code, n in codes.items():
            by_code[code] = by_code.get(code, 0) + n
    assert by_code == client["by_code"]
    assert oracle.stop() == 0


def test_degraded_at_run_time_turns_ready_503_and_back(procs, sidecar):
    """POST {"health": "degraded"} -> /ready 503 within the staleness window; healthy -> 200."""
    _, url, sock = sidecar
    _, _, control = start_oracle(procs, socket_path=sock)
    wait_for(lambda: http("GET", url + "/ready")[0] == 200, 10, "/ready 200 at start")
    stale_after = 5.0
    assert http("POST", control + "/knobs", {"health": "degraded"})[0] == 200
    started = time.monotonic()
    wait_for(lambda: http("GET", url + "/ready")[0] == 503, stale_after, "/ready 503")
    took = time.monotonic() - started
    health = http("GET", url + "/health")[1]
    assert health["status"] == "degraded"
    assert "ephemeris" in json.dumps(health["checks"])
    assert http("POST", control + "/knobs", {"health": "healthy"})[0] == 200
    wait_for(lambda: http("GET", url + "/ready")[0] == 200, stale_after, "/ready 200 again")
    print(f"/ready turned 503 {took:.2f} s after the knob changed")


@pytest.mark.slow
def test_the_latency_knob_pushes_p95_above_ten_seconds(procs, sidecar):
    """Half of GetReading's calls delayed 10.5-11 s: the sidecar's P95 for it is above 10 s."""
    _, url, sock = sidecar
    _, port, _ = start_oracle(procs, "--latency", "GetReading=10.5s..11s@0.5", "--seed", "1",
                              socket_path=sock)
    load = procs("load", ["load", "--target", f"127.0.0.1:{port}", "--requests", "20",
                          "--concurrency", "20", "--mix", "GetReading", "--json"])
    assert load.proc.wait(40) == 0, load.log()
    assert json.loads(load.log())["latency_ms"]["p95"] > 10_000

    def p95() -> float | None:
        rows = http("GET", url + "/api/v1/snapshot")[1]["windows"]["all"]["rpcs"]
        row: dict[str, Any] = next((r for r in rows if r["method"] == "GetReading"), {})
        return float(row["p95_ms"]) if row.get("count") == 20 else None

    assert wait_for(p95, 5, "GetReading in the snapshot") > 10_000
