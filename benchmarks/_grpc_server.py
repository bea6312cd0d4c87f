"""A grpcio server with the Oracle's eight method names and one kind of instrumentation.

``python -m benchmarks._grpc_server --mode sync|aio --instrument none|reporter|pgp|otel
--port N [--socket PATH] [--workers N] [--interval S]`` prints ``ready`` once it serves on
127.0.0.1, and stops on SIGTERM. Requests and responses are raw bytes (no protobuf), and each
handler returns a fixed 64-byte answer, so the figures show the cost of serving an RPC and of
instrumenting it, not of a handler's work.

- ``reporter``: this project's reporter (``sidecar.reporter.start``) pushing to ``--socket``.
- ``pgp``: py-grpc-prometheus ``PromServerInterceptor`` with the handling-time histogram on
  (sync only: it has no grpc.aio interceptor).
- ``otel``: an interceptor that records the OpenTelemetry semantic-convention histogram
  ``rpc.server.duration`` with ``rpc.system/service/method/grpc.status_code`` attributes through
  the OpenTelemetry SDK (a MeterProvider with an in-memory reader; nothing is exported). The
  ``opentelemetry-instrumentation-grpc`` package only makes spans, so this is what metrics
  through OpenTelemetry cost.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import grpc.aio

from sidecar.demo import METHODS, SERVICE, full_method

RESPONSE = b"r" * 64
_perf = time.perf_counter


def _identity(b: bytes) -> bytes:
    return b


def _handlers(aio: bool) -> grpc.GenericRpcHandler:
    if aio:
        async def answer_async(request: bytes, context: Any) -> bytes:
            return RESPONSE

        behaviour: Any = answer_async
    else:
        def answer(request: bytes, context: Any) -> bytes:
            return RESPONSE

        behaviour = answer
    return grpc.method_handlers_generic_handler(SERVICE, {
        m: grpc.unary_unary_rpc_method_handler(behaviour, request_deserializer=_identity,
                                               response_serializer=_identity)
        for m in METHODS})


def _otel_histogram() -> Any:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return provider.get_meter("oracle-bench").create_histogram(
        "rpc.server.duration", unit="ms", description="Duration of inbound RPCs")


def _otel_attributes(method: str, context: Any, failed: bool) -> dict[str, Any]:
    service, _, name = method.lstrip("/").rpartition("/")
    code = context.code()
    value = code.value[0] if isinstance(code, grpc.StatusCode) else (2 if failed else 0)
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name,
            "rpc.grpc.status_code": value}


class OtelInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Unary RPCs into an OpenTelemetry SDK histogram (sync server)."""

    def __init__(self) -> None:
        self.hist = _otel_histogram()

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = continuation(details)
        if handler is None or handler.request_streaming or handler.response_streaming:
            return handler
        inner, method, record = handler.unary_unary, details.method, self.hist.record

        def behaviour(request: Any, context: Any) -> Any:
            t0 = _perf()
            failed = True
            try:
                response = inner(request, context)
                failed = False
                return response
            finally:
                record((_perf() - t0) * 1000, _otel_attributes(method, context, failed))

        return grpc.unary_unary_rpc_method_handler(
            behaviour, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)


class AioOtelInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Unary RPCs into an OpenTelemetry SDK histogram (grpc.aio server)."""

    def __init__(self) -> None:
        self.hist = _otel_histogram()

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = await continuation(details)
        if handler is None or handler.request_streaming or handler.response_streaming:
            return handler
        inner, method, record = handler.unary_unary, details.method, self.hist.record

        async def behaviour(request: Any, context: Any) -> Any:
            t0 = _perf()
            failed = True
            try:
                response = await inner(request, context)
                failed = False
                return response
            finally:
                record((_perf() - t0) * 1000, _otel_attributes(method, context, failed))

        return grpc.unary_unary_rpc_method_handler(
            behaviour, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)


def _interceptors(args: argparse.Namespace, aio: bool) -> list[Any]:
    if args.instrument == "none":
        return []
    if args.instrument == "reporter":
        from sidecar import reporter

        rep = reporter.start(service=SERVICE, version="bench",
                             methods=[full_method(m) for m in METHODS],
                             socket_path=args.socket, interval=args.interval)
        return [rep.aio_server_interceptor() if aio else rep.server_interceptor()]
    if args.instrument == "pgp":
        if aio:
            raise SystemExit("py-grpc-prometheus has no grpc.aio interceptor")
        from py_grpc_prometheus.prometheus_server_interceptor import PromServerInterceptor

        return [PromServerInterceptor(enable_handling_time_histogram=True)]
    return [AioOtelInterceptor() if aio else OtelInterceptor()]


def serve_sync(args: argparse.Namespace) -> None:
    server = grpc.server(ThreadPoolExecutor(max_workers=args.workers),
                         interceptors=_interceptors(args, aio=False),
                         options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((_handlers(aio=False),))
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    while not stop.wait(0.5):
        pass
    server.stop(0.5).wait(2)
    _close_reporter()


async def serve_aio(args: argparse.Namespace) -> None:
    server = grpc.aio.server(interceptors=_interceptors(args, aio=True),
                             options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((_handlers(aio=True),))
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await server.stop(0.5)
    _close_reporter()


def _close_reporter() -> None:
    from sidecar import reporter

    reporter.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["sync", "aio"], default="sync")
    parser.add_argument("--instrument", choices=["none", "reporter", "pgp", "otel"],
                        default="none")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--socket", default=None)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    if args.mode == "sync":
        serve_sync(args)
    else:
        asyncio.run(serve_aio(args))


if __name__ == "__main__":
    main()
