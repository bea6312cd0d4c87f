"""A small real gRPC server process for the reliability tests, with or without the reporter.

Run as ``python -m tests.reliability.worker --socket PATH [--interval S] [--no-monitoring]``.
It serves ``/rel.Worker/Ok`` (answers), ``/rel.Worker/Fail`` (aborts NOT_FOUND) and
``/rel.Worker/Boom`` (raises ValueError) on 127.0.0.1, and talks on stdout, one JSON object per
line:

- at start: ``{"port": N, "pid": N, "grpc": "<grpcio version>", "source": "<reporter source
  id>", "reporter": "<the reporter module's file>"}``;
- on SIGUSR1: ``{"stats": {...}}``, the reporter's own counters at that moment;
- on SIGTERM or SIGINT: stops the server (in-flight RPCs finish), closes the reporter (its final
  snapshot is sent) and prints ``{"stats": {...}, "final": true}``, then exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from concurrent import futures
from types import FrameType
from typing import Any

import grpc

SERVICE = "rel.Worker"


def _ok(request: bytes, context: grpc.ServicerContext) -> bytes:
    return b"ok"


def _fail(request: bytes, context: grpc.ServicerContext) -> bytes:
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
    raise AssertionError("abort never returns")  # pragma: no cover


def _boom(request: bytes, context: grpc.ServicerContext) -> bytes:
    raise ValueError("boom")


def _say(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reliability-worker")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--no-monitoring", action="store_true")
    args = parser.parse_args(argv)

    reporter: Any = None
    interceptors: list[Any] = []
    if not args.no_monitoring:
        from sidecar.reporter.core import Reporter

        reporter = Reporter(SERVICE, "1.0", [f"/{SERVICE}/Ok", f"/{SERVICE}/Fail"],
                            socket_path=args.socket, interval=args.interval).start()
        interceptors.append(reporter.server_interceptor())

    def stats() -> dict[str, int]:
        if reporter is None:
            return {}
        return {"dropped": reporter.dropped, "send_errors": reporter.send_errors,
                "sent": reporter.sent, "seq": reporter._seq, "overflow": reporter.overflow}

    server = grpc.server(futures.ThreadPoolExecutor(args.threads), interceptors=interceptors,
                         options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {
        "Ok": grpc.unary_unary_rpc_method_handler(_ok),
        "Fail": grpc.unary_unary_rpc_method_handler(_fail),
        "Boom": grpc.unary_unary_rpc_method_handler(_boom),
    })])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    stop = threading.Event()

    def on_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    def on_usr1(signum: int, frame: FrameType | None) -> None:
        _say({"stats": stats()})

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGUSR1, on_usr1)
    _say({"port": port, "pid": os.getpid(), "grpc": grpc.__version__,
          "source": reporter.source_id if reporter is not None else None,
          "reporter": sys.modules[type(reporter).__module__].__file__ if reporter else None})
    while not stop.wait(0.5):
        pass
    server.stop(2.0).wait()
    if reporter is not None:
        reporter.close()
    _say({"stats": stats(), "final": True})
    return 0


if __name__ == "__main__":
    sys.exit(main())
