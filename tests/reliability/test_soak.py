"""A bounded soak: the demo Oracle at the highest rate it sustains here, for a minute.

``RELIABILITY_SOAK_SECONDS`` makes it longer (``RELIABILITY_SOAK_SECONDS=1800 pytest
tests/reliability/test_soak.py`` for half an hour); the checks are the same.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sidecar.demo import METHODS
from tests.conftest import SidecarProcess, free_port, http_get, parse_metrics, wait_for
from tests.reliability.conftest import ROOT, cpu_seconds, rss_kib

SECONDS = float(os.environ.get("RELIABILITY_SOAK_SECONDS", "60"))
# A third of the run, at most the 5.5 minutes in which the history ring keeps a point per 5 s.
WARMUP = min(SECONDS / 3, 330.0)
SERVICE = "nps.oracle.OracleService"


def exported(text: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (name, labels), value in parse_metrics(text).items():
        tags = dict(labels)
        if name == "grpc_server_handled_total" and tags["grpc_service"] == SERVICE and value:
            out.setdefault(tags["grpc_method"], {})[tags["grpc_code"]] = int(value)
    return out


@pytest.mark.timeout(SECONDS + 180)
def test_soak_at_full_rate_keeps_sidecar_memory_flat_and_counts_exact(
        sidecar: SidecarProcess, tmp_path: Path, figures: Any) -> None:
    """A minute at full rate: sidecar RSS does not grow after warm-up; totals exact at the end.

    The demo Oracle (a real grpcio server with the reporter) takes as many calls as 16
    concurrent clients can make on this machine; meanwhile /metrics is scraped and the
    snapshot read every 2 s, as Prometheus and the dashboard would (faster, in fact). Every
    second the sidecar's RSS and CPU time are sampled from /proc. "Does not grow" means: the
    highest RSS of the last third is at most 1 MiB above the highest of the warm-up's last
    five seconds, and the fitted slope is recorded. The one thing that grows by design is the
    history ring: a point every 5 s for 5 minutes, then one a minute for the hour, about
    5.4 KB each with 8 methods, so at most ~0.6 MiB in all, however long the soak. A leak of
    one object per push (once a second) or per scrape would exceed the slack in a long run.
    """
    oracle_port = free_port()
    logs = {name: open(tmp_path / f"{name}.log", "ab")  # noqa: SIM115 - closed below
            for name in ("oracle", "load")}
    oracle = subprocess.Popen(
        [sys.executable, "-m", "sidecar.cli", "demo-oracle", "--host", "127.0.0.1",
         "--port", str(oracle_port), "--socket", sidecar.socket, "--seed", "8"],
        cwd=ROOT, stdout=logs["oracle"], stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    load: subprocess.Popen[str] | None = None
    try:
        wait_for(lambda: exported(sidecar.metrics()) or http_get(
            sidecar.url + "/ready")[0] == 200, 20, message="the demo Oracle's first push")
        assert sidecar.proc is not None
        pid = sidecar.proc.pid
        load = subprocess.Popen(
            [sys.executable, "-m", "sidecar.cli", "load", "--target",
             f"127.0.0.1:{oracle_port}", "--duration", str(SECONDS), "--concurrency", "16",
             "--json"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=logs["load"], stdin=subprocess.DEVNULL,
            text=True)
        samples: list[tuple[float, int, float]] = []  # (t, RSS KiB, CPU s)
        scrapes: list[float] = []
        stop = threading.Event()

        def reader() -> None:  # a Prometheus and a dashboard, both impatient
            while not stop.wait(2.0):
                t0 = time.perf_counter()
                assert http_get(sidecar.url + "/metrics")[0] == 200
                assert http_get(sidecar.url + "/api/v1/snapshot")[0] == 200
                scrapes.append((time.perf_counter() - t0) * 1000)

        scraper = threading.Thread(target=reader, daemon=True)
        scraper.start()
        t0 = time.monotonic()
        while load.poll() is None and time.monotonic() - t0 < SECONDS + 60:
            samples.append((time.monotonic() - t0, rss_kib(pid), cpu_seconds(pid)))
            time.sleep(1.0)
        stop.set()
        scraper.join(10)
        out, _ = load.communicate(timeout=60)
        assert load.returncode == 0, out
        summary = json.loads(out)
        truth = {m: dict(c) for m, c in summary["by_method"].items()}
        wait_for(lambda: exported(sidecar.metrics()) == truth, 10,
                 message="the sidecar's totals to equal the load generator's")
    finally:
        for proc in (load, oracle):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
        if load is not None and load.stdout is not None:
            load.stdout.close()
        for f in logs.values():
            f.close()

    elapsed = samples[-1][0]
    warm = [rss for t, rss, _ in samples if WARMUP - 5 <= t <= WARMUP]
    late = [rss for t, rss, _ in samples if t >= elapsed * 2 / 3]
    after = [(t, rss) for t, rss, _ in samples if t >= WARMUP]
    slope = statistics.linear_regression([t for t, _ in after], [r for _, r in after]).slope
    cpu = (samples[-1][2] - samples[0][2]) / (elapsed - samples[0][0])
    growth = max(late) - max(warm)
    figures(seconds=round(elapsed), rpcs=summary["total"],
            rate_per_second=summary["rate_per_second"], errors=summary["errors"],
            client_p99_ms=summary["latency_ms"]["p99"], exact=True, methods=len(METHODS),
            sidecar_rss_mib_start=round(samples[0][1] / 1024, 1),
            sidecar_rss_mib_warm=round(max(warm) / 1024, 1),
            sidecar_rss_mib_end=round(samples[-1][1] / 1024, 1),
            rss_growth_after_warmup_kib=growth, rss_slope_kib_per_min=round(slope * 60, 1),
            sidecar_cpu_percent=round(100 * cpu, 1), scrapes=len(scrapes),
            scrape_ms_p50=round(statistics.median(scrapes), 1),
            scrape_ms_max=round(max(scrapes), 1),
            rss_mib_series=[round(r / 1024, 1) for _, r, _ in samples[:: max(1, len(samples)
                                                                          // 12)]])
    assert growth <= 1024, (growth, [r for _, r, _ in samples])
