"""RPC kinds: methods declared with their type, and messages counted as go-grpc-prometheus does."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from sidecar import protocol
from sidecar.reporter.core import Reporter
from tests.prometheus.echo import (
    CALLS,
    KINDS,
    SERVICE,
    aio_server,
    call,
    drive,
    echo_descriptor,
    expected_messages,
    python_server,
)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[socket.socket]:
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(str(tmp_path / "rx.sock"))
    rx.settimeout(5)
    yield rx
    rx.close()


def pushed(rep: Reporter, rx: socket.socket) -> dict[str, protocol.Row]:
    """The rows of one snapshot as the sidecar decodes it, by method."""
    assert rep.flush()
    return {r.method: r for r in protocol.decode(rx.recv(protocol.MAX_DATAGRAM)).rows}


def test_declared_methods_are_pushed_at_zero_under_their_true_type(
        receiver: socket.socket) -> None:
    """services= (descriptor flags), {name: type}, (name, type) pairs and plain names (unary)."""
    rep = Reporter("svc", methods={"/x.Feed/Watch": "server_stream"},
                   services=[echo_descriptor()], socket_path=receiver.getsockname())
    rows = pushed(rep, receiver)
    assert {m: r.type for m, r in rows.items()} == {**KINDS, "Watch": "server_stream"}
    assert all((r.started, r.handled, r.msg_received, r.msg_sent) == (0, 0, 0, 0)
               for r in rows.values())
    pairs = Reporter("svc", methods=[("/x.Up/Load", "client_stream"), "/x.Up/Ping"],
                     socket_path=receiver.getsockname())
    assert {m: r.type for m, r in pushed(pairs, receiver).items()} == {
        "Load": "client_stream", "Ping": "unary"}


def test_bad_declarations_fail_at_once_with_a_clear_message() -> None:
    """An unknown type or a services= entry that is no descriptor is refused, naming it."""
    with pytest.raises(ValueError, match=r"'/x.Y/Z': type 'stream' is not one of unary, "):
        Reporter("svc", methods={"/x.Y/Z": "stream"})
    with pytest.raises(TypeError, match=r"protobuf service descriptors.*not str"):
        Reporter("svc", services=["x.Y"])


def test_sync_server_counts_messages_per_kind_as_go_does(receiver: socket.socket) -> None:
    """Unary: 1 in per call, 1 out per OK; streams: every request read, every response sent."""
    rep = Reporter("svc", services=[echo_descriptor()], socket_path=receiver.getsockname())
    server, port = python_server(rep)
    try:
        drive(port)
    finally:
        server.stop(None)
    rows = pushed(rep, receiver)
    assert {m: (r.msg_received, r.msg_sent) for m, r in rows.items()} == expected_messages(CALLS)
    assert {m: r.type for m, r in rows.items()} == KINDS
    assert sum(r.handled for r in rows.values()) == len(CALLS)


def test_aio_server_counts_messages_per_kind_as_go_does(receiver: socket.socket) -> None:
    """The grpc.aio interceptor counts the same messages as the sync one for the same calls."""
    rep = Reporter("svc", services=[echo_descriptor()], socket_path=receiver.getsockname())

    async def main() -> list[str]:
        server, port = await aio_server(rep)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                return list(await asyncio.gather(*(acall(channel, m, r) for m, r in CALLS)))
        finally:
            await server.stop(None)

    codes = asyncio.run(main())
    rows = pushed(rep, receiver)
    assert {m: (r.msg_received, r.msg_sent) for m, r in rows.items()} == expected_messages(CALLS)
    assert {m: r.type for m, r in rows.items()} == KINDS
    assert codes.count("OK") == sum(r.codes.get("OK", 0) for r in rows.values())
    assert sorted(codes) == sorted(c for r in rows.values() for c, n in r.codes.items()
                                   for _ in range(n))


async def acall(channel: Any, method: str, requests: list[bytes]) -> str:
    """One call on an aio channel; the status code the client saw, by Go's name."""
    path = f"/{SERVICE}/{method}"
    try:
        if method == "Unary":
            await channel.unary_unary(path)(requests[0], timeout=30)
        elif method == "ServerStream":
            [m async for m in channel.unary_stream(path)(requests[0], timeout=30)]
        elif method == "ClientStream":
            await channel.stream_unary(path)(iter(requests), timeout=30)
        else:
            [m async for m in channel.stream_stream(path)(iter(requests), timeout=30)]
    except grpc.aio.AioRpcError as err:
        return protocol.CODES[err.code().value[0]]
    return "OK"


def test_a_method_declared_unary_but_streaming_moves_to_its_true_type(
        receiver: socket.socket, caplog: pytest.LogCaptureFixture) -> None:
    """methods=["/svc/Stream"] on a server-stream handler: one warning, no unary row left."""
    rep = Reporter("svc", methods=[f"/{SERVICE}/ServerStream"],
                   socket_path=receiver.getsockname())
    assert pushed(rep, receiver)["ServerStream"].type == "unary"
    server, port = python_server(rep)
    try:
        with caplog.at_level(logging.WARNING, "sidecar.reporter"), \
                grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            for _ in range(3):
                assert call(channel, "ServerStream", [b'{"n": 2}']) == "OK"
    finally:
        server.stop(None)
    rows = pushed(rep, receiver)
    assert [(m, r.type, r.started, r.msg_sent) for m, r in rows.items()] == [
        ("ServerStream", "server_stream", 3, 6)]
    warnings = [r.getMessage() for r in caplog.records if "declared unary" in r.getMessage()]
    assert len(warnings) == 1 and "server_stream" in warnings[0]
