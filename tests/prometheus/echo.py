"""compat.v1.Echo: one method of each gRPC kind, the same in Python as in goref/main.go.

Each request is JSON ``{"sleep": seconds, "code": number, "fail": bool, "n": responses}``; the
last request of a call decides its end (sleep, then the code, or an uncaught exception with
"fail"), and a server-stream or bidi request asks for ``n`` responses first. Used by the Go side
by side (test_goref.py) and by the reporter's message-counting tests, sync and grpc.aio.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from typing import Any

import grpc
import grpc.aio

from sidecar import protocol
from sidecar.reporter.core import Reporter

SERVICE = "compat.v1.Echo"
KINDS = {"Unary": "unary", "ServerStream": "server_stream", "ClientStream": "client_stream",
         "Bidi": "bidi_stream"}


def echo_descriptor() -> Any:
    """compat.v1.Echo's protobuf service descriptor, as generated code would hold it."""
    from google.protobuf import descriptor_pb2, descriptor_pool

    file = descriptor_pb2.FileDescriptorProto(name="compat/echo.proto", package="compat.v1",
                                              syntax="proto3")
    file.message_type.add(name="Msg")
    service = file.service.add(name="Echo")
    for name, rpc_type in KINDS.items():
        service.method.add(name=name, input_type=".compat.v1.Msg", output_type=".compat.v1.Msg",
                           client_streaming=rpc_type in ("client_stream", "bidi_stream"),
                           server_streaming=rpc_type in ("server_stream", "bidi_stream"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return pool.FindServiceByName(f"{SERVICE}")


_STATUS = {code.value[0]: code for code in grpc.StatusCode}


def _finish(raw: bytes, context: Any) -> None:
    """What main.go's finish does: sleep, then end as the request asks."""
    plan = json.loads(raw)
    time.sleep(plan.get("sleep", 0))
    if plan.get("fail"):
        raise RuntimeError("boom")  # uncaught: Unknown, as Go's plain error
    if plan.get("code"):
        context.abort(_STATUS[plan["code"]], "asked for it")


def _unary(request: bytes, context: Any) -> bytes:
    _finish(request, context)
    return b"ok"


def _server_stream(request: bytes, context: Any) -> Iterator[bytes]:
    for _ in range(json.loads(request).get("n", 0)):
        yield b"ok"
    _finish(request, context)


def _client_stream(requests: Iterator[bytes], context: Any) -> bytes:
    *_, last = [b"{}", *requests]
    _finish(last, context)
    return b"ok"


def _bidi(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
    last = b"{}"
    for last in requests:
        for _ in range(json.loads(last).get("n", 0)):
            yield b"ok"
    _finish(last, context)


async def _aio_unary(request: bytes, context: Any) -> bytes:
    await _afinish(request, context)
    return b"ok"


async def _afinish(raw: bytes, context: Any) -> None:
    plan = json.loads(raw)
    await asyncio.sleep(plan.get("sleep", 0))
    if plan.get("fail"):
        raise RuntimeError("boom")
    if plan.get("code"):
        await context.abort(_STATUS[plan["code"]], "asked for it")


async def _aio_server_stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
    for _ in range(json.loads(request).get("n", 0)):
        yield b"ok"
    await _afinish(request, context)


async def _aio_client_stream(requests: AsyncIterator[bytes], context: Any) -> bytes:
    last = b"{}"
    async for last in requests:  # noqa: B007 - the last request decides the end
        pass
    await _afinish(last, context)
    return b"ok"


async def _aio_bidi(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    last = b"{}"
    async for last in requests:
        for _ in range(json.loads(last).get("n", 0)):
            yield b"ok"
    await _afinish(last, context)


async def aio_server(reporter: Reporter) -> tuple[grpc.aio.Server, int]:
    """The same service on grpc.aio with the reporter's aio interceptor (started)."""
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(_aio_unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(_aio_server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(_aio_client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(_aio_bidi),
    }
    server = grpc.aio.server(interceptors=[reporter.aio_server_interceptor()])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def python_server(reporter: Reporter) -> tuple[grpc.Server, int]:
    """The service on a sync grpc.server with the reporter's interceptor (started)."""
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(_server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(_client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(_bidi),
    }
    server = grpc.server(futures.ThreadPoolExecutor(16),
                         interceptors=[reporter.server_interceptor()])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


# -- the calls ----------------------------------------------------------------------------------

def plan(sleep: float = 0.0, code: int = 0, fail: bool = False, n: int = 0) -> bytes:
    return json.dumps({"sleep": sleep, "code": code, "fail": fail, "n": n}).encode()


# (method, requests): a unary/server-stream call sends one request, the others a list. Codes by
# number: 3 InvalidArgument, 4 DeadlineExceeded, 5 NotFound, 6 AlreadyExists, 7
# PermissionDenied, 8 ResourceExhausted, 13 Internal, 14 Unavailable.
CALLS: list[tuple[str, list[bytes]]] = [
    *[("Unary", [plan(s)]) for s in (0, 0, 0, 0.011, 0.011, 0.026, 0.051, 0.101, 0.251, 0.501,
                                     1.001)],
    ("Unary", [plan(0, code=5)]), ("Unary", [plan(0.011, code=5)]), ("Unary", [plan(code=3)]),
    ("Unary", [plan(0.026, code=14)]), ("Unary", [plan(0.051, code=8)]),
    ("Unary", [plan(0.101, code=4)]), ("Unary", [plan(0.026, code=13)]),
    ("Unary", [plan(fail=True)]), ("Unary", [plan(0.011, fail=True)]),
    ("ServerStream", [plan(0.026, n=3)]), ("ServerStream", [plan(0.101, n=5)]),
    ("ServerStream", [plan(0.026, n=0)]), ("ServerStream", [plan(0.051, code=13, n=2)]),
    ("ServerStream", [plan(0.026, fail=True, n=1)]),
    ("ClientStream", [plan(), plan(), plan(0.026)]), ("ClientStream", [plan(0.251)]),
    ("ClientStream", [plan(), plan(0.051, code=6)]), ("ClientStream", [plan(0.026, fail=True)]),
    ("Bidi", [plan(n=2), plan(0.026, n=2)]), ("Bidi", [plan(0.501, n=1)]),
    ("Bidi", [plan(n=1), plan(0.051, code=7, n=1)]), ("Bidi", [plan(0.026, fail=True, n=3)]),
]


def call(channel: grpc.Channel, method: str, requests: list[bytes]) -> str:
    """One call; the status code the client saw, by Go's name."""
    path = f"/{SERVICE}/{method}"
    try:
        if method == "Unary":
            channel.unary_unary(path)(requests[0], timeout=30)
        elif method == "ServerStream":
            list(channel.unary_stream(path)(requests[0], timeout=30))
        elif method == "ClientStream":
            channel.stream_unary(path)(iter(requests), timeout=30)
        else:
            list(channel.stream_stream(path)(iter(requests), timeout=30))
    except grpc.RpcError as err:
        return protocol.CODES[err.code().value[0]]
    return "OK"


def drive(port: int) -> Counter[tuple[str, str]]:
    """Every call of CALLS once against 127.0.0.1:port, 8 at a time; (method, code) counts."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel, \
            futures.ThreadPoolExecutor(8) as pool:
        codes = pool.map(lambda c: call(channel, *c), CALLS)
        return Counter((method, code) for (method, _), code in zip(CALLS, codes, strict=True))


def expected_messages(calls: list[tuple[str, list[bytes]]]) -> dict[str, tuple[int, int]]:
    """{method: (received, sent)} as go-grpc-prometheus counts them for ``calls``.

    Unary: one received per call, one sent per OK. Streams: every request read, every response
    sent (the responses come before the call's end, so an error after them keeps them).
    """
    out: Counter[tuple[str, str]] = Counter()
    for method, requests in calls:
        plans = [json.loads(r) for r in requests]
        ok = not (plans[-1].get("code") or plans[-1].get("fail"))
        out[(method, "received")] += 1 if method == "Unary" else len(requests)
        if method in ("Unary", "ClientStream"):
            out[(method, "sent")] += int(ok)
        else:
            out[(method, "sent")] += sum(p.get("n", 0) for p in plans)
    return {m: (out[(m, "received")], out[(m, "sent")]) for m in KINDS}

