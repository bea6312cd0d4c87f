"""The load generator: method mix, pacing, what it counts, and its one-object JSON report."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest

from sidecar.demo import METHODS
from sidecar.demo.knobs import Faults
from sidecar.demo.load import Plan, Tally, WeightedRoundRobin, drive, parse_mix, percentiles
from sidecar.demo.oracle import DemoOracle, Settings


@pytest.fixture
def oracle() -> Iterator[DemoOracle]:
    """An in-process demo Oracle where GetReading always fails with INTERNAL."""
    server = DemoOracle(Settings(host="127.0.0.1", port=0, control_port=None, monitoring=False,
                                 faults=Faults(error_rate={"GetReading": 1.0})))
    server.start()
    yield server
    server.stop(grace=0)


def _drive(plan: Plan) -> Tally:
    async def go() -> Tally:
        tally = Tally()
        await drive(plan, tally, asyncio.Event())
        return tally
    return asyncio.run(go())


def test_smooth_weighted_round_robin():
    """Weights 2:1 give A B A repeating, never A A B; weight 0 drops a method."""
    picker = WeightedRoundRobin([("A", 2), ("B", 1), ("C", 0)])
    assert [picker.next() for _ in range(6)] == ["A", "B", "A", "A", "B", "A"]
    with pytest.raises(ValueError, match="weight above zero"):
        WeightedRoundRobin([("A", 0)])


def test_mix_text():
    """``METHOD[=WEIGHT]`` items, comma-separated; unknown methods are refused."""
    assert parse_mix("GetReading=3,HealthCheck") == [("GetReading", 3), ("HealthCheck", 1)]
    with pytest.raises(Exception, match="not a method"):
        parse_mix("GetWeather=1")


def test_percentiles_by_nearest_rank():
    """p50/p95/p99 are values that occurred (nearest rank); empty input gives zeros."""
    values = [float(v) for v in range(1, 101)]
    assert percentiles(values) == {"p50": 50.0, "p95": 95.0, "p99": 99.0, "max": 100.0,
                                   "mean": 50.5}
    assert percentiles([])["p95"] == 0.0


def test_exact_counts_per_method_and_code(oracle):
    """800 calls over 8 equal weights are 100 per method; the failing method's are Internal."""
    tally = _drive(Plan(target=f"127.0.0.1:{oracle.port}", requests=800, concurrency=8))
    summary = tally.summary("t")
    assert summary["total"] == 800
    assert summary["by_method"]["GetReading"] == {"Internal": 100}
    for method in METHODS[1:]:
        assert summary["by_method"][method] == {"OK": 100}
    assert summary["by_code"] == {"Internal": 100, "OK": 700}
    assert summary["errors"] == 100
    assert 0 < summary["latency_ms"]["p50"] <= summary["latency_ms"]["p95"]


def test_rate_paces_the_calls(oracle):
    """--rate 50 with 20 calls takes about 0.4 s, whatever the concurrency."""
    started = time.perf_counter()
    tally = _drive(Plan(target=f"127.0.0.1:{oracle.port}", requests=20, rate=50.0,
                        concurrency=16, mix=(("HealthCheck", 1),)))
    elapsed = time.perf_counter() - started
    assert tally.done == 20
    assert 0.35 <= elapsed < 2.0


def test_duration_stops_sending(oracle):
    """--duration stops new calls at the deadline and waits for those in flight."""
    started = time.perf_counter()
    tally = _drive(Plan(target=f"127.0.0.1:{oracle.port}", duration=0.5, rate=100.0))
    assert 0.45 <= time.perf_counter() - started < 2.0
    assert 10 <= tally.done <= 55  # fewer on a busy machine: the pacer never bursts
    assert tally.sent == tally.done


def test_unreachable_target_is_counted_not_crashed(procs):
    """Calls to a port nobody listens on are Unavailable in the report; the run still ends 0."""
    from tests.demo.helpers import free_port

    proc = procs("load", ["load", "--target", f"127.0.0.1:{free_port()}", "--requests", "5",
                          "--timeout", "2", "--json"])
    assert proc.proc.wait(30) == 0
    summary = json.loads(proc.log())
    assert summary["by_code"] == {"Unavailable": 5}


def test_cli_json_is_one_object_on_stdout(procs, oracle):
    """``load --json`` writes exactly one JSON object with the documented keys, nothing else."""
    proc = procs("load", ["load", "--target", f"127.0.0.1:{oracle.port}", "--requests", "40",
                          "--mix", "GetReading=1,HealthCheck=3", "--json"])
    assert proc.proc.wait(30) == 0
    summary = json.loads(proc.log())
    assert {"total", "by_method", "by_code", "latency_ms"} <= set(summary)
    assert summary["total"] == 40
    assert summary["by_method"] == {"GetReading": {"Internal": 10}, "HealthCheck": {"OK": 30}}
    assert set(summary["latency_ms"]) == {"p50", "p95", "p99", "max", "mean"}


def test_cli_table_and_bad_flags(procs, oracle):
    """Without --json a table with a row per method; a bad env value exits 2 naming it."""
    proc = procs("table", ["load", "--target", f"127.0.0.1:{oracle.port}", "--requests", "16"])
    assert proc.proc.wait(30) == 0
    table = proc.log()
    assert "16 calls" in table
    assert all(method in table for method in METHODS)
    bad = procs("bad", ["load"], env={"LOAD_CONCURRENCY": "many"})
    assert bad.proc.wait(30) == 2
    assert "LOAD_CONCURRENCY" in bad.log()


def test_progress_goes_to_a_terminal_and_never_into_the_json(oracle):
    """With stderr on a terminal a progress line is drawn there; stdout stays one JSON object."""
    import os
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "sidecar.cli", "load", "--target", f"127.0.0.1:{oracle.port}",
             "--duration", "1.2", "--rate", "40", "--json"],
            stdout=subprocess.PIPE, stderr=follower, stdin=subprocess.DEVNULL, timeout=30,
            check=True,
        )
        os.close(follower)
        follower = -1
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    assert b"RPC/s" in drawn
    assert b"s left" in drawn
    assert json.loads(proc.stdout)["total"] > 0
