"""The reporter on its own: exact under threads, health, limits, and no sidecar at all."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sidecar import protocol
from sidecar.reporter import track_rpc
from sidecar.reporter.core import Reporter
from tests.conftest import SidecarProcess, handled, parse_metrics, wait_for


def receive_one(rx: socket.socket) -> protocol.Message:
    return protocol.decode(rx.recv(protocol.MAX_DATAGRAM + 1))


@pytest.fixture
def receiver(tmp_path: Path):
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(str(tmp_path / "rx.sock"))
    rx.settimeout(5)
    yield rx
    rx.close()


def test_importing_the_reporter_loads_no_third_party_module() -> None:
    """`import sidecar.reporter` pulls in the standard library only (no grpc, aiohttp...)."""
    code = ("import sys, sidecar.reporter; "
            "bad = [m for m in ('grpc', 'aiohttp', 'prometheus_client', 'kubernetes', "
            "'pythonjsonlogger') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_sixteen_threads_are_counted_exactly_by_a_real_sidecar(sidecar: SidecarProcess) -> None:
    """16 threads x 100 000 RPCs -> the sidecar exports exactly 1 600 000."""
    rep = Reporter("load", "1", socket_path=sidecar.socket, interval=0.5).start()

    def work() -> None:
        for i in range(100_000):
            series = rep.series("/load.Service/Work")
            assert series is not None
            series.started += 1
            rep.observe(series, 0.001 * (i % 7), "OK" if i % 10 else "Internal")

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rep.flush()

    def totals() -> tuple[float, float]:
        samples = parse_metrics(sidecar.metrics())
        return handled(samples, "Work", "OK"), handled(samples, "Work", "Internal")

    wait_for(lambda: totals() == (1_440_000, 160_000), 10, message="exact totals")
    samples = parse_metrics(sidecar.metrics())
    count = samples[("grpc_server_handling_seconds_count", frozenset(
        {("grpc_type", "unary"), ("grpc_service", "load.Service"), ("grpc_method", "Work")}))]
    assert count == 1_600_000
    rep.close()


def test_no_sidecar_means_drops_are_counted_and_nothing_is_raised(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """With no socket at all, recording and flushing work; one warning, drops counted."""
    rep = Reporter("svc", socket_path=str(tmp_path / "absent" / "metrics.sock"), interval=0.05)
    caplog.set_level(logging.INFO, logger="sidecar.reporter")
    rep.start()
    for _ in range(1000):
        with rep.track("Work"):
            pass
    wait_for(lambda: rep.dropped >= 3, 5, message="drops to be counted")
    rep.close()
    assert rep.send_errors >= 3 and rep.sent == 0
    warnings = [r for r in caplog.records if r.name == "sidecar.reporter"]
    assert len(warnings) == 1 and "not reachable" in warnings[0].getMessage()


def test_reporter_reaches_a_sidecar_that_appears_later(tmp_path: Path) -> None:
    """Sends fail while the socket is missing and succeed once it exists, with no restart."""
    path = str(tmp_path / "late.sock")
    rep = Reporter("svc", socket_path=path)
    assert rep.flush() is False
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(path)
    try:
        assert rep.flush() is True
        assert receive_one(rx).seq == 2
    finally:
        rx.close()


def test_full_receiver_queue_counts_a_drop_instead_of_blocking(receiver: socket.socket) -> None:
    """A receiver that does not read makes sends fail fast with EAGAIN, counted as drops."""
    rep = Reporter("svc", socket_path=receiver.getsockname())
    results = [rep.flush() for _ in range(200)]
    assert results.count(False) > 0
    assert rep.dropped == results.count(False)
    assert rep.send_errors == 0  # a full queue is a drop, not an error


def test_methods_are_reported_at_zero_before_any_traffic(receiver: socket.socket) -> None:
    """Pre-registered methods appear in the first snapshot with zero counts."""
    rep = Reporter("svc", methods=["/nps.oracle.OracleService/GetReading",
                                   "/nps.oracle.OracleService/HealthCheck"],
                   socket_path=receiver.getsockname())
    rep.flush()
    rows = {r.method: r for r in receive_one(receiver).rows}
    assert set(rows) == {"GetReading", "HealthCheck"}
    assert all(r.started == 0 and r.handled == 0 for r in rows.values())


def test_health_callback_failures_report_degraded(receiver: socket.socket) -> None:
    """An exception or a slow health callback reports degraded with the reason."""
    rep = Reporter("svc", socket_path=receiver.getsockname(), health_timeout=0.1)
    rep.set_health_callback(lambda: ("healthy", {"db": "ok"}))
    rep.flush()
    msg = receive_one(receiver)
    assert (msg.health, msg.checks) == ("healthy", {"db": "ok"})

    def broken() -> tuple[str, dict[str, str]]:
        raise RuntimeError("database unreachable")

    rep.set_health_callback(broken)
    rep.flush()
    msg = receive_one(receiver)
    assert msg.health == "degraded" and "database unreachable" in msg.checks["health_callback"]

    rep.set_health_callback(lambda: time.sleep(1) or ("healthy", {}))  # type: ignore[func-returns-value]
    rep.flush()
    msg = receive_one(receiver)
    assert msg.health == "degraded" and "no answer" in msg.checks["health_callback"]
    with pytest.raises(ValueError, match="not one of"):
        rep.set_health("fine")
    rep.close()


def test_track_rpc_counts_blocks_and_functions_and_reraises(receiver: socket.socket) -> None:
    """track_rpc as decorator and context manager; an escaping exception is Unknown + type."""
    from sidecar import reporter as monitoring

    rep = monitoring.start("jobs", socket_path=receiver.getsockname(), interval=60)
    try:
        receive_one(receiver)  # the first snapshot, sent at start

        @track_rpc("Batch/Nightly")
        def nightly(fail: bool) -> str:
            if fail:
                raise KeyError("missing")
            return "done"

        assert nightly(False) == "done"
        with pytest.raises(KeyError):
            nightly(True)
        with track_rpc("Cleanup"):
            pass
        rep.flush()
        rows = {r.method: r for r in receive_one(receiver).rows}
        assert rows["Nightly"].service == "Batch"
        assert rows["Nightly"].codes == {"OK": 1, "Unknown": 1}
        assert rows["Nightly"].exceptions == {"KeyError": 1}
        assert rows["Cleanup"].service == "jobs" and rows["Cleanup"].codes == {"OK": 1}
    finally:
        monitoring.close()


def test_series_limit_bounds_memory_and_counts_overflow(receiver: socket.socket) -> None:
    """Past max_series distinct methods, RPCs are counted in overflow only."""
    rep = Reporter("svc", socket_path=receiver.getsockname(), max_series=10)
    for i in range(10_000):
        with rep.track(f"Method{i}"):
            pass
    rep.flush()
    msg = receive_one(receiver)
    assert len(msg.rows) == 10 and msg.overflow == 9_990


def test_final_snapshot_is_sent_at_interpreter_exit(tmp_path: Path) -> None:
    """A process that exits normally sends a last snapshot marked final (atexit)."""
    path = str(tmp_path / "exit.sock")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(path)
    rx.settimeout(5)
    code = ("from sidecar import reporter as m; r = m.start('svc', interval=60); "
            "[r.track('Work').__enter__().__exit__(None, None, None) for _ in range(7)]")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30,
                   env={**os.environ, "ORACLE_METRICS_SOCKET": path})
    messages = [receive_one(rx), receive_one(rx)]
    rx.close()
    last = messages[-1]
    assert last.final and last.health == "down"
    assert last.rows[0].codes == {"OK": 7}
