"""End to end: a real grpcio server with the interceptor -> Unix socket -> a real sidecar."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from sidecar.protocol import CODES
from sidecar.reporter.core import Reporter
from tests.conftest import (
    SidecarProcess,
    handled,
    http_get,
    http_json,
    parse_metrics,
    wait_for,
)

SERVICE = "test.Oracle"


def _ok(request: bytes, context: grpc.ServicerContext) -> bytes:
    return b"ok"


def _abort(request: bytes, context: grpc.ServicerContext) -> bytes:
    context.abort(grpc.StatusCode.NOT_FOUND, "no such reading")
    raise AssertionError("abort returns never")  # pragma: no cover


def _set_code(request: bytes, context: grpc.ServicerContext) -> bytes:
    context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
    context.set_details("bad date")
    return b""


def _boom(request: bytes, context: grpc.ServicerContext) -> bytes:
    raise ZeroDivisionError("division by zero")


def _stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    yield from (b"a", b"b", b"c")


def sync_server(rep: Reporter) -> tuple[grpc.Server, int]:
    handlers = {
        "Ok": grpc.unary_unary_rpc_method_handler(_ok),
        "Abort": grpc.unary_unary_rpc_method_handler(_abort),
        "SetCode": grpc.unary_unary_rpc_method_handler(_set_code),
        "Boom": grpc.unary_unary_rpc_method_handler(_boom),
        "Stream": grpc.unary_stream_rpc_method_handler(_stream),
    }
    server = grpc.server(futures.ThreadPoolExecutor(8), interceptors=[rep.server_interceptor()])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def call(channel: grpc.Channel, method: str) -> str:
    try:
        if method == "Stream":
            list(channel.unary_stream(f"/{SERVICE}/Stream")(b"", timeout=10))
        else:
            channel.unary_unary(f"/{SERVICE}/{method}")(b"", timeout=10)
    except grpc.RpcError as err:
        return CODES[err.code().value[0]]  # Go's name, as the sidecar exports it
    return "OK"


MIX = {"Ok": 40, "Abort": 7, "SetCode": 5, "Boom": 3, "Stream": 6}
EXPECTED = {("Ok", "OK"): 40, ("Abort", "NotFound"): 7, ("SetCode", "InvalidArgument"): 5,
            ("Boom", "Unknown"): 3, ("Stream", "OK"): 6}


def check_exported(sidecar: SidecarProcess, seen: Counter[tuple[str, str]]) -> None:
    """/metrics and /api/v1/snapshot both show exactly what the client saw."""
    def matches() -> bool:
        samples = parse_metrics(sidecar.metrics())
        return all(handled(samples, m, c) == n for (m, c), n in seen.items())

    wait_for(matches, 10, message="exported counts to equal the client's")
    samples = parse_metrics(sidecar.metrics())
    total = sum(v for (name, _), v in samples.items() if name == "grpc_server_handled_total")
    assert total == sum(seen.values())
    exc = {dict(labels)["exception"]: v for (name, labels), v in samples.items()
           if name == "oracle_sidecar_rpc_exceptions_total"}
    assert exc == {"ZeroDivisionError": seen[("Boom", "Unknown")]}
    types = {dict(labels)["grpc_method"]: dict(labels)["grpc_type"]
             for (name, labels), _ in samples.items() if name == "grpc_server_started_total"}
    assert types["Stream"] == "server_stream" and types["Ok"] == "unary"

    snap = http_json(sidecar.url + "/api/v1/snapshot")
    rows = {r["method"]: r for r in snap["windows"]["all"]["rpcs"]}
    for (method, code), n in seen.items():
        assert rows[method]["codes"][code] == n
    assert rows["Boom"]["exceptions"] == {"ZeroDivisionError": 3}
    assert rows["Abort"]["last_error"]["code"] == "NotFound"
    assert snap["windows"]["1m"]["totals"]["count"] == sum(seen.values())
    assert snap["windows"]["1m"]["totals"]["errors"] == 15


def test_sync_server_outcomes_are_exported_exactly(sidecar: SidecarProcess) -> None:
    """OK, abort, set_code, an uncaught exception and a stream: exact counts per code."""
    rep = Reporter(SERVICE, "1.0", socket_path=sidecar.socket, interval=0.2).start()
    server, port = sync_server(rep)
    seen: Counter[tuple[str, str]] = Counter()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        for method, n in MIX.items():
            for _ in range(n):
                seen[(method, call(channel, method))] += 1
        for _ in range(5):  # probes of the standard health service are plumbing, not traffic
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert seen == Counter(EXPECTED)
    check_exported(sidecar, seen)
    assert "grpc.health.v1" not in sidecar.metrics()
    server.stop(None)
    rep.close()


def test_aio_server_outcomes_are_exported_exactly(sidecar: SidecarProcess) -> None:
    """The grpc.aio interceptor records the same codes as the sync one."""
    rep = Reporter(SERVICE, "1.0", socket_path=sidecar.socket, interval=0.2).start()

    async def ok(request: bytes, context: Any) -> bytes:
        return b"ok"

    async def abort(request: bytes, context: Any) -> bytes:
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such reading")

    async def set_code(request: bytes, context: Any) -> bytes:
        context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
        return b""

    async def boom(request: bytes, context: Any) -> bytes:
        raise ZeroDivisionError("division by zero")

    async def stream(request: bytes, context: Any) -> Any:
        for item in (b"a", b"b", b"c"):
            yield item

    async def main() -> Counter[tuple[str, str]]:
        server = grpc.aio.server(interceptors=[rep.aio_server_interceptor()])
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {
            "Ok": grpc.unary_unary_rpc_method_handler(ok),
            "Abort": grpc.unary_unary_rpc_method_handler(abort),
            "SetCode": grpc.unary_unary_rpc_method_handler(set_code),
            "Boom": grpc.unary_unary_rpc_method_handler(boom),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
        })])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        seen: Counter[tuple[str, str]] = Counter()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            for method, n in MIX.items():
                for _ in range(n):
                    try:
                        if method == "Stream":
                            [x async for x in channel.unary_stream(f"/{SERVICE}/Stream")(b"")]
                        else:
                            await channel.unary_unary(f"/{SERVICE}/{method}")(b"")
                        seen[(method, "OK")] += 1
                    except grpc.aio.AioRpcError as err:
                        seen[(method, CODES[err.code().value[0]])] += 1
        await server.stop(None)
        return seen

    seen = asyncio.run(main())
    assert seen == Counter(EXPECTED)
    check_exported(sidecar, seen)
    rep.close()


def test_sidecar_killed_and_replaced_mid_traffic_loses_and_doubles_nothing(
        sidecar_factory: Any) -> None:
    """kill -9 of the sidecar during traffic, then a new one: totals equal the client's."""
    first = sidecar_factory()
    rep = Reporter(SERVICE, "1.0", socket_path=first.socket, interval=0.2).start()
    server, port = sync_server(rep)
    seen: Counter[tuple[str, str]] = Counter()
    stop = threading.Event()

    def traffic() -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            i = 0
            while not stop.is_set():
                method = ("Ok", "Ok", "Ok", "Abort", "Boom")[i % 5]
                seen[(method, call(channel, method))] += 1
                i += 1

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        time.sleep(1.0)
        assert first.kill() == -9
        time.sleep(0.7)  # pushes fail while nobody listens
        second = sidecar_factory()  # replaces the stale socket file
        time.sleep(1.0)
    finally:
        stop.set()
        worker.join(30)
    assert sum(seen.values()) > 50
    assert rep.dropped > 0

    def matches() -> bool:
        samples = parse_metrics(second.metrics())
        return all(handled(samples, m, c) == n for (m, c), n in seen.items())

    wait_for(matches, 10, message="the new sidecar to show the client's exact totals")
    assert "replaced a stale metrics socket" in second.log()
    server.stop(None)
    rep.close()


def test_grpc_server_runs_normally_without_a_sidecar(tmp_path: Any,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """No sidecar: every RPC answers, drops are counted, and nothing is logged per RPC."""
    rep = Reporter(SERVICE, socket_path=str(tmp_path / "missing.sock"), interval=0.05).start()
    server, port = sync_server(rep)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        results = Counter(call(channel, "Ok") for _ in range(300))
    assert results == {"OK": 300}
    wait_for(lambda: rep.dropped >= 2, 5, message="drops")
    assert len([r for r in caplog.records if r.name.startswith("sidecar")]) <= 1
    server.stop(None)
    rep.close()


def test_ready_follows_health_through_no_source_healthy_degraded_and_stale(
        sidecar_factory: Any) -> None:
    """/ready: 503 with no source, 200 healthy, 503 degraded, 200 again, 503 when stale."""
    sc = sidecar_factory("--stale-after", "1")

    def ready() -> int:
        return http_get(sc.url + "/ready")[0]

    assert ready() == 503
    rep = Reporter(SERVICE, socket_path=sc.socket, interval=0.2).start()
    wait_for(lambda: ready() == 200, 5, message="ready")
    rep.set_health("degraded", {"model": "not loaded"})
    wait_for(lambda: ready() == 503, 5, message="unready when degraded")
    body = http_json(sc.url + "/ready")
    assert "model: not loaded" in body["reason"]
    rep.set_health("healthy")
    wait_for(lambda: ready() == 200, 5, message="ready again")
    rep._stop.set()  # the process stops pushing (frozen, say) without saying goodbye
    rep._flusher.join(5)  # type: ignore[union-attr]
    wait_for(lambda: ready() == 503, 5, message="unready when stale")
    assert "has not pushed" in http_json(sc.url + "/ready")["reason"]
    rep.close()
