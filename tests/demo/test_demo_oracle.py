"""The demo Oracle: eight deterministic RPCs, injected faults, grpc.health.v1, clean shutdown."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from sidecar.demo import METHODS
from sidecar.demo._pb import oracle_pb2 as pb
from sidecar.demo._pb import oracle_pb2_grpc as pb_grpc
from sidecar.demo.knobs import Faults
from sidecar.demo.oracle import DemoOracle, Settings
from sidecar.demo.samples import make_request
from tests.conftest import wait_for
from tests.demo.helpers import WITHOUT_REPORTER, grpc_health, http, json_log, start_oracle


@pytest.fixture
def oracle() -> Iterator[DemoOracle]:
    """An in-process demo Oracle on a free port, without monitoring or control endpoint."""
    server = DemoOracle(Settings(host="127.0.0.1", port=0, control_port=None, monitoring=False,
                                 seed=1))
    server.start()
    yield server
    server.stop(grace=0)


@pytest.fixture
def stub(oracle: DemoOracle) -> Iterator[pb_grpc.OracleServiceStub]:
    """A client stub for the in-process Oracle."""
    with grpc.insecure_channel(f"127.0.0.1:{oracle.port}") as channel:
        yield pb_grpc.OracleServiceStub(channel)


def test_all_eight_methods_answer_the_same_question_the_same_way(stub):
    """Every RPC answers OK, and asking twice gives the same answer."""
    for method in METHODS:
        request = make_request(method, 5)
        first = getattr(stub, method)(request, timeout=5)
        second = getattr(stub, method)(request, timeout=5)
        if method != "HealthCheck":  # uptime moves on
            assert first == second, method
    reading = stub.GetReading(pb.ReadingRequest(birth_date="1990-07-14", date="2026-11-28"))
    assert reading.life_path == 4  # 1+9+9+0+0+7+1+4 = 31 -> 4
    assert "Life path 4" in reading.summary


def test_health_check_rpc_reports_status_version_uptime_and_checks(oracle, stub):
    """HealthCheck answers healthy with named checks, and degraded when a check is failing."""
    reply = stub.HealthCheck(pb.HealthCheckRequest(), timeout=5)
    assert reply.status == "healthy"
    assert reply.version
    assert reply.uptime_seconds >= 0
    assert dict(reply.checks) == {"ephemeris": "ok", "name-tables": "ok", "cache": "ok"}
    oracle.knobs.update({"health": "degraded", "failing_check": "cache"})
    reply = stub.HealthCheck(pb.HealthCheckRequest(), timeout=5)
    assert reply.status == "degraded"
    assert reply.checks["cache"].startswith("failing")
    oracle.knobs.update({"health": "down"})
    assert stub.HealthCheck(pb.HealthCheckRequest(), timeout=5).status == "unhealthy"


def test_bad_requests_are_invalid_argument(stub):
    """The Oracle checks its input like a real service: bad dates and ranges are refused."""
    with pytest.raises(grpc.RpcError) as err:
        stub.GetReading(pb.ReadingRequest(birth_date="yesterday"), timeout=5)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        stub.SuggestRange(pb.SuggestRangeRequest(low=1, high=3, count=5), timeout=5)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_injected_errors_use_the_configured_code_on_the_chosen_method(oracle, stub):
    """error_rate 1.0 on one method fails all its calls with error_code; others are untouched."""
    oracle.knobs.update({"error_rate": {"GetNameReading": 1.0}, "error_code": "UNAVAILABLE"})
    for i in range(5):
        with pytest.raises(grpc.RpcError) as err:
            stub.GetNameReading(make_request("GetNameReading", i), timeout=5)
        assert err.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "injected" in err.value.details()
        stub.GetReading(make_request("GetReading", i), timeout=5)


def test_injected_latency_and_the_callers_deadline(oracle, stub):
    """A fixed delay slows every call of its method; a caller's deadline still wins."""
    oracle.knobs.update({"latency": {"SuggestRange": "300ms"}})
    started = time.perf_counter()
    stub.SuggestRange(make_request("SuggestRange", 1), timeout=5)
    assert time.perf_counter() - started >= 0.3
    started = time.perf_counter()
    stub.GetReading(make_request("GetReading", 1), timeout=5)
    assert time.perf_counter() - started < 0.3
    with pytest.raises(grpc.RpcError) as err:
        stub.SuggestRange(make_request("SuggestRange", 1), timeout=0.1)
    assert err.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED


def test_grpc_health_service_follows_health_and_shutdown():
    """grpc.health.v1 says SERVING, NOT_SERVING when down, and NOT_SERVING while draining."""
    server = DemoOracle(Settings(host="127.0.0.1", port=0, control_port=None, monitoring=False,
                                 faults=Faults()))
    server.start()
    try:
        assert grpc_health(server.port) == "SERVING"
        assert grpc_health(server.port, "nps.oracle.OracleService") == "SERVING"
        server.knobs.update({"health": "down"})
        assert grpc_health(server.port) == "NOT_SERVING"
        server.knobs.update({"health": "degraded"})
        assert grpc_health(server.port) == "SERVING"  # degraded still answers
        stopper = threading.Thread(target=server.stop, kwargs={"drain": 2.0, "grace": 0})
        stopper.start()
        wait_for(lambda: grpc_health(server.port) == "NOT_SERVING", 1.8,
                 "NOT_SERVING during the drain")
        stopper.join(10)
        assert not stopper.is_alive()
    finally:
        server.stop(grace=0)


def test_runs_without_the_monitoring_package(procs):
    """With sidecar.reporter unimportable the Oracle serves every RPC, saying monitoring is off."""
    proc, port, control = start_oracle(procs, code=WITHOUT_REPORTER)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.OracleServiceStub(channel)
        for method in METHODS:
            getattr(stub, method)(make_request(method, 3), timeout=5)
    assert http("POST", control + "/knobs", {"health": "degraded"})[0] == 200
    assert proc.stop(signal.SIGTERM) == 0
    lines = json_log(proc)
    started = next(line for line in lines if line["message"].startswith("demo Oracle serving"))
    assert started["monitoring"] is False
    assert any("monitoring is off" in line["message"] for line in lines)


def test_sigterm_says_not_serving_then_exits_zero(procs, tmp_path):
    """SIGTERM: NOT_SERVING during --drain-seconds, then exit 0 with a log line for each step."""
    proc, port, _ = start_oracle(procs, "--drain-seconds", "2.5",
                                 socket_path=str(tmp_path / "nobody.sock"))
    proc.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: grpc_health(port) == "NOT_SERVING", 2.3, "NOT_SERVING after SIGTERM")
    assert proc.stop(signal.SIGTERM, timeout=10) == 0
    messages = [line["message"] for line in json_log(proc)]
    assert "received SIGTERM, stopping" in messages
    assert messages[-1] == "demo Oracle stopped"


@pytest.mark.parametrize(("args", "env", "named"), [
    (["--latency", "GetReading=soon"], {}, "--latency"),
    ([], {"ORACLE_ERROR_RATE": "GetReading=2"}, "ORACLE_ERROR_RATE"),
    ([], {"ORACLE_SCENARIO": "chaos"}, "ORACLE_SCENARIO"),
    (["--health", "sideways"], {}, "--health"),
])
def test_bad_settings_exit_2_naming_the_flag_or_variable(procs, args, env, named):
    """A bad flag or env value stops the Oracle before it starts, naming what was wrong."""
    proc = procs("bad", ["demo-oracle", "--port", "0", "--control-port", "0", *args], env=env)
    assert proc.proc.wait(20) == 2
    assert named in proc.log()


def test_a_busy_port_is_a_clear_error(procs, oracle):
    """When the gRPC port is taken, the Oracle logs which address and exits 1."""
    proc = procs("busy", ["demo-oracle", "--host", "127.0.0.1", "--port", str(oracle.port),
                          "--control-port", "0"])
    assert proc.proc.wait(20) == 1
    errors = [line for line in json_log(proc) if line["level"] == "ERROR"]
    assert errors
    assert f"127.0.0.1:{oracle.port}" in errors[0]["message"]


def test_scenario_flag_moves_the_running_oracle_through_its_phases(procs, tmp_path):
    """--scenario degraded,healthy --phase-seconds 1: HealthCheck says degraded, then healthy."""
    _, port, control = start_oracle(procs, "--scenario", "degraded,healthy", "--phase-seconds",
                                    "1", socket_path=str(tmp_path / "nobody.sock"))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.OracleServiceStub(channel)
        seen: list[str] = []

        def status_changed_twice() -> bool:
            status = stub.HealthCheck(pb.HealthCheckRequest(), timeout=2).status
            if not seen or seen[-1] != status:
                seen.append(status)
            return len(seen) >= 3

        wait_for(status_changed_twice, 5, "two phase changes", interval=0.05)
    assert seen[:3] in (["degraded", "healthy", "degraded"], ["healthy", "degraded", "healthy"])
    assert http("GET", control + "/knobs")[1]["scenario"]["phases"] == ["degraded", "healthy"]
