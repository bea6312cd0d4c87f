"""``oracle-sidecar serve``: the datagram receiver and the aiohttp server on :9090.

The receiver owns the Unix socket: it creates it (mode 0660, directory made if missing), refuses
to steal one a live sidecar still answers on, replaces a stale one left by a crash, and puts it
back if the socket file disappears while running. Every datagram goes to the store; nothing a
sender does can stop the receiver.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import stat
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sidecar import __version__, collector, options, protocol, slices
from sidecar.documents import Health
from sidecar.exposition import BLOCK_BYTES, Exposition
from sidecar.logs import setup_logging
from sidecar.openapi import load as load_openapi
from sidecar.persist import StateFile
from sidecar.protocol import DEFAULT_SOCKET
from sidecar.store import Store
from sidecar.web import check_rpc, guard, json_response, livez, serve_until_signal

__all__ = ["Settings", "SocketError", "bind_socket", "configure", "create_app", "run"]

log = logging.getLogger("sidecar.server")


@dataclass(frozen=True)
class Settings:
    """Everything ``serve`` can be told; the CLI builds it from flags and env vars."""

    socket: str = DEFAULT_SOCKET
    host: str = "0.0.0.0"
    port: int = 9090
    stale_after: float = 5.0
    expire_after: float = 60.0
    max_series: int = 2000
    grpc_health_target: str | None = None
    drain_seconds: float = 2.0


class SocketError(RuntimeError):
    """The metrics socket cannot be made; the message says why and what to do."""


_SOCKET_FIX = ("run the sidecar as a user that may write there, or choose another path with "
               "--socket / ORACLE_METRICS_SOCKET")
_PORT_FIX = ("choose another port with --port / ORACLE_HTTP_PORT (0 = any free port) or "
             "another address with --host / ORACLE_HTTP_HOST")


# -- the socket ---------------------------------------------------------------------------------

def bind_socket(path: str) -> socket.socket:
    """A non-blocking datagram socket bound at ``path`` with mode 0660."""
    directory = os.path.dirname(path) or "."
    try:
        os.makedirs(directory, mode=0o770, exist_ok=True)  # the socket's group, no one else
    except OSError as err:
        raise SocketError(f"cannot create the socket directory {directory}: "
                          f"{err.strerror}; {_SOCKET_FIX}") from err
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as err:  # e.g. a directory this user may not search
        raise SocketError(f"cannot use the socket directory {directory}: {err.strerror}; "
                          f"{_SOCKET_FIX}") from err
    if mode is not None:
        if not stat.S_ISSOCK(mode):
            raise SocketError(f"{path} exists and is not a socket; remove it or choose another "
                              f"path with --socket / ORACLE_METRICS_SOCKET")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            probe.connect(path)
        except OSError as err:
            if err.errno != errno.ECONNREFUSED:
                raise SocketError(f"cannot check the existing socket {path}: "
                                  f"{err.strerror}; {_SOCKET_FIX}") from err
            os.unlink(path)  # stale: left by a sidecar that crashed
            log.info("replaced a stale metrics socket", extra={"socket": path})
        else:
            raise SocketError(f"another sidecar is receiving on {path}; stop it first or choose "
                              f"another path with --socket / ORACLE_METRICS_SOCKET")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        old = os.umask(0o117)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o660)
        # Room for a burst of snapshots from many processes between two reads.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    except OSError as err:
        sock.close()
        raise SocketError(f"cannot bind {path}: {err.strerror}; {_SOCKET_FIX}") from err
    sock.setblocking(False)
    return sock


class Receiver:
    """Owns the socket and reads it; re-creates the socket file if it vanishes.

    Reads go straight into one reusable buffer with ``MSG_TRUNC``, so that a datagram's true
    size is known even when it is over the limit (reported as it is) and no 64 KiB buffer is
    allocated per datagram. A wake-up applies datagrams for at most READ_SECONDS (and at most
    READ_BATCH of them), then gives the loop back to HTTP: the rest wait in the socket's
    buffer (4 MiB) and are read at the loop's next turn. A datagram that takes longer than a
    slice (:mod:`sidecar.slices`: hundreds of rows) is applied over several turns, taking
    turns with renders and sums (one slice in all per turn), and the next one is read after it.
    """

    READ_BATCH = 64
    READ_SECONDS = 0.001
    COLLECT_AFTER = 32 * 1024  # bytes applied in a wake-up after which the young objects are
    # collected at once (see sidecar.slices.run)

    def __init__(self, path: str, store: Store, after: Callable[[], object] | None = None) -> None:
        self.path = path
        self.store = store
        self.sock: socket.socket | None = None
        self.after = after  # called after the datagrams of a wake-up (the state file's save check)
        self.inode: int | None = None
        self.problem: str | None = None
        self._buffer = bytearray(protocol.MAX_DATAGRAM + 1)
        # a datagram applied in slices, and the future of its end
        self._pending: tuple[slices.Slices[str | None], asyncio.Future[str | None]] | None = None
        self._view = memoryview(self._buffer)

    async def open(self) -> None:
        sock = bind_socket(self.path)
        self.inode = os.stat(self.path).st_ino
        asyncio.get_running_loop().add_reader(sock.fileno(), self._read)
        self.sock = sock

    def _read(self) -> None:
        sock, store, view = self.sock, self.store, self._view
        if sock is None or self._pending is not None:
            return  # a datagram is being applied in slices: the rest wait in the socket
        deadline = time.perf_counter() + self.READ_SECONDS
        applied = 0
        for _ in range(self.READ_BATCH):
            try:
                size = sock.recv_into(self._buffer, 0, socket.MSG_TRUNC)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as err:
                log.warning("metrics socket error: %s", err)
                break
            if size > protocol.MAX_DATAGRAM:
                store.reject(protocol.ProtocolError(
                    "oversized", f"{size} bytes, the limit is {protocol.MAX_DATAGRAM}"))
                continue
            applied += size
            if not self._advance(store.ingest_slices(bytes(view[:size]))):
                return  # its next slice comes at the loop's next turn
            if time.perf_counter() > deadline:
                break
        self._settle(applied)

    def _advance(self, work: slices.Slices[str | None]) -> bool:
        """Apply the first slice of a datagram; True when it is done (applied or rejected),
        else the rest takes turns with the other sliced work on the loop (one slice in all
        per turn, :func:`sidecar.slices.later`) and the next datagram is read after it."""
        try:
            slices.step(work)
        except StopIteration:
            return True
        except Exception:  # a bug must not stop the receiver; the datagram is counted lost
            self._failed(None)
            return True
        applied = slices.later(work)
        applied.add_done_callback(self._applied)
        self._pending = work, applied
        return False

    def _applied(self, applied: asyncio.Future[str | None]) -> None:
        if self._pending is None or self._pending[1] is not applied:
            return  # closed meanwhile (close() finished it)
        self._pending = None
        if not applied.cancelled() and applied.exception() is not None:
            self._failed(applied.exception())
        self._settle(self.COLLECT_AFTER)  # a datagram that took slices is a large one

    def _failed(self, err: BaseException | None) -> None:
        self.store.rejected["bad_field"] += 1
        log.error("failed to apply a datagram", exc_info=err or True)

    def _settle(self, applied: int) -> None:
        """After the datagrams of a wake-up: young objects, then the state file's save check."""
        if applied >= self.COLLECT_AFTER:
            collector.young()  # a large push's new totals replace old ones
        if self.after is not None:
            try:
                self.after()
            except Exception:
                log.exception("failed after applying datagrams")

    async def check(self) -> None:
        """Re-bind if the socket file was removed; report a path taken by something else."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            st = None
        if st is not None and st.st_ino == self.inode:
            if self.problem:
                log.info("metrics socket is back", extra={"socket": self.path})
            self.problem = None
            return
        if st is not None and not stat.S_ISSOCK(st.st_mode):
            problem = f"{self.path} was replaced by a file that is not a socket; " \
                      f"reporters cannot reach this sidecar until it is removed"
        else:
            try:
                old = self.sock
                await self.open()  # before closing the old one, which holds its inode: the
                self._close(old)   # new socket file never reuses the old file's inode number
                log.warning("metrics socket file had vanished; made it again",
                            extra={"socket": self.path})
                self.problem = None
                return
            except SocketError as err:
                problem = str(err)
        if problem != self.problem:
            log.error(problem, extra={"socket": self.path})
        self.problem = problem

    def close(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:  # the datagram half applied is finished before the last save
            work, applied = pending
            applied.cancel()  # and dropped from the loop's turns
            try:
                slices.drive(work)
            except Exception as err:
                self._failed(err)
        self._close(self.sock)
        self.sock = None

    @staticmethod
    def _close(sock: socket.socket | None) -> None:
        if sock is not None:
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()


# -- the app ------------------------------------------------------------------------------------

STORE = web.AppKey("store", Store)
EXPOSITION = web.AppKey("exposition", Exposition)
SETTINGS = web.AppKey("settings", Settings)
STATE = web.AppKey("state", dict)  # draining, grpc_serving, receiver


def readiness(app: web.Application) -> tuple[bool, str]:
    """Whether kubelet should send traffic to this pod, and why (not)."""
    state = app[STATE]
    if state["draining"]:
        return False, "the sidecar is shutting down"
    receiver: Receiver | None = state.get("receiver")
    if receiver is not None and receiver.problem:
        return False, receiver.problem
    status, reason = app[STORE].status()
    if status != "healthy":
        return False, reason
    target = app[SETTINGS].grpc_health_target
    if target and state["grpc_serving"] is not True:
        return False, f"gRPC health check on {target}: {state['grpc_serving'] or 'no answer'}"
    return True, reason


async def metrics(request: web.Request) -> web.StreamResponse:
    accept = request.headers.get("Accept", "")
    if request.query.get("format") == "json" or (
            "application/json" in accept and "text/plain" not in accept):
        return await snapshot(request)
    app = request.app
    async with app[STATE]["render_lock"]:  # one render at a time; the next reuses its bytes
        # Between slices, the loop answers probes and pushes.
        blocks, content_type = await slices.run(app[EXPOSITION].metrics_slices(accept))
    return await _send(request, blocks, content_type)


async def _send(request: web.Request, blocks: list[bytes], content_type: str
                ) -> web.StreamResponse:
    size = sum(map(len, blocks))
    if size <= BLOCK_BYTES:  # headers and body in one send: the client is woken once, not thrice
        return web.Response(body=blocks[0] if len(blocks) == 1 else b"".join(blocks),
                            headers={"Content-Type": content_type})
    # Block by block, a step of the loop each: a send on a local connection runs the TCP stack
    # on both sides in this thread (milliseconds for megabytes), and a write that the kernel
    # takes at once returns without giving the loop a turn.
    response = web.StreamResponse(headers={"Content-Type": content_type})
    response.content_length = size
    await response.prepare(request)
    for block in blocks:
        await response.write(block)
        await asyncio.sleep(0)
    await response.write_eof()
    return response


async def _json_document(request: web.Request, document: slices.Slices[Any], own: bool = False
                         ) -> web.StreamResponse:
    """A JSON document made in slices on the loop (:mod:`sidecar.slices`), its text too. A
    document made for this answer alone (``own``) is let go of as its text is written: freeing
    thousands of rows at once, at its end, would be a long step."""
    async with request.app[STATE]["json_lock"]:  # one at a time: a second waits, not doubles
        blocks = await slices.run(_json_blocks(document, own))
    return await _send(request, blocks, "application/json")


def _json_blocks(document: slices.Slices[Any], own: bool) -> slices.Slices[list[bytes]]:
    value = yield from document
    blocks: list[bytes] = []
    pieces: list[str] = []
    size = 0
    deadline = slices.Deadline()
    for i, piece in enumerate(_json_pieces(value, own)):
        pieces.append(piece)
        size += len(piece)
        if size >= BLOCK_BYTES:
            blocks.append("".join(pieces).encode())
            pieces, size = [], 0
        if not i % 16 and deadline.passed():
            yield
            deadline.reset()
    if pieces or not blocks:
        blocks.append("".join(pieces).encode())
    return blocks


def _health_doc(app: web.Application) -> Health:
    ready, reason = readiness(app)
    doc = app[EXPOSITION].health(ready, reason)
    receiver: Receiver | None = app[STATE].get("receiver")
    if receiver is not None and receiver.problem:
        doc["checks"] = {**doc["checks"], "sidecar_socket": receiver.problem}
    return doc


async def health(request: web.Request) -> web.Response:
    return json_response(_health_doc(request.app))


async def ready(request: web.Request) -> web.Response:
    ok, reason = readiness(request.app)
    status, _ = request.app[STORE].status()
    return json_response({"ready": ok, "status": status, "reason": reason}, 200 if ok else 503)


def _loop_stopped(app: web.Application) -> str | None:
    """Why /livez fails: the background loop (pruning, the socket check) has stopped."""
    task: asyncio.Task[None] | None = app[STATE].get("ticker")
    return "the sidecar's background loop has stopped" if task is None or task.done() else None


def _json_pieces(value: Any, own: bool = False) -> Iterator[str]:
    """Compact JSON text of ``value`` in pieces: a list or object with more than JSON_MEMBERS
    members, or holding one, member by member (the rest whole), so that the text of thousands
    of series is written in slices. When ``value`` is ``own`` (nothing else holds any part of
    it), its members are let go of as they are written."""
    if isinstance(value, list) and _large(value):
        yield "["
        for i, item in enumerate(value):
            if own:
                value[i] = None
            if i:
                yield ","
            yield from _json_pieces(item, own)
        yield "]"
    elif isinstance(value, dict) and _large(value):
        yield "{"
        for i, key in enumerate(list(value)):
            item = value.pop(key) if own else value[key]
            yield f'{"," if i else ""}{_json(key)}:'
            yield from _json_pieces(item, own)
        yield "}"
    else:
        yield _json(value)


JSON_MEMBERS = 64  # a value with more members than this is written member by member
_json = json.JSONEncoder(separators=(",", ":")).encode  # one encoder, not one per piece


def _large(value: list[Any] | dict[str, Any]) -> bool:
    members = value.values() if isinstance(value, dict) else value
    return len(value) > JSON_MEMBERS or any(isinstance(m, list | dict) and _large(m)
                                            for m in members)


async def snapshot(request: web.Request) -> web.StreamResponse:
    app = request.app
    return await _json_document(request, app[EXPOSITION].snapshot_slices(_health_doc(app)),
                                own=True)  # made for this answer alone (its rows, its health)


async def history(request: web.Request) -> web.StreamResponse:
    rpc = request.query.get("rpc")
    if rpc is not None:
        check_rpc(rpc)
    return await _json_document(request, request.app[EXPOSITION].history_slices(rpc))


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI description of these endpoints (sidecar/openapi/sidecar.json)."""
    return web.Response(body=load_openapi("sidecar"), content_type="application/json")


async def _background(app: web.Application) -> AsyncIterator[None]:
    settings, store, state = app[SETTINGS], app[STORE], app[STATE]
    state_file = StateFile(settings.socket, store)
    receiver = Receiver(settings.socket, store, after=state_file.start_if_due)
    await receiver.open()  # an unusable socket directory fails here, in one line
    # What a previous sidecar on this socket knew, read back before the first datagram is read
    # (open() has not yielded to the loop, so none has been).
    state_file.load()
    give_back = collector.take_over()  # what start-up made (and the state read back) is frozen
    _release_freed_memory()
    state["state_file"] = state_file
    state["receiver"] = receiver
    log.info("receiving pushes", extra={"socket": settings.socket})

    async def tick() -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                # Each slice in a turn of its own (slices.later): nothing here waits for them.
                await slices.later(store.tick_slices())
                # Before a full collection: less for it to go through.
                await slices.later(app[EXPOSITION].forget_replaced(
                    await slices.later(store.totals_slices())))
                if not state["json_lock"].locked():  # a document's rows would be gone through
                    await collector.full_if_due()
                state_file.start_if_due()
                await receiver.check()
                if settings.grpc_health_target:
                    state["grpc_serving"] = await _grpc_health(settings.grpc_health_target)
            except Exception:
                log.exception("sidecar background tick failed")

    state["ticker"] = asyncio.create_task(tick())
    yield
    state["ticker"].cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await state["ticker"]
    receiver.close()
    await state_file.close()
    give_back()
    with contextlib.suppress(FileNotFoundError):
        if receiver.inode is not None and os.lstat(settings.socket).st_ino == receiver.inode:
            os.unlink(settings.socket)


def _release_freed_memory() -> None:
    """Give the C heap that start-up freed back to the system (glibc keeps it otherwise):
    about 1 MiB of the idle sidecar's resident memory. Nothing happens without glibc."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


async def _grpc_health(target: str) -> bool | str:
    """True when the standard grpc.health.v1 service says SERVING, else the reason."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        async with grpc.aio.insecure_channel(target) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1.0)
    except grpc.aio.AioRpcError as err:
        return f"{err.code().name}: {err.details()}"
    if reply.status == health_pb2.HealthCheckResponse.SERVING:
        return True
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def create_app(settings: Settings, store: Store | None = None) -> web.Application:
    """The :9090 application; the receiver starts with it and stops with it."""
    store = store or Store(settings.stale_after, settings.expire_after, settings.max_series)
    app = web.Application(middlewares=[guard(log, "sidecar")], client_max_size=1024)
    app[SETTINGS] = settings
    app[STORE] = store
    app[STATE] = {"draining": False, "grpc_serving": None, "render_lock": asyncio.Lock(),
                  "json_lock": asyncio.Lock()}
    app[EXPOSITION] = Exposition(store, ready=lambda: readiness(app)[0])
    app.router.add_get("/metrics", metrics, name="metrics")
    app.router.add_get("/health", health, name="health")
    app.router.add_get("/ready", ready, name="ready")
    app.router.add_get("/livez", livez(_loop_stopped), name="livez")
    app.router.add_get("/api/v1/snapshot", snapshot, name="snapshot")
    app.router.add_get("/api/v1/history", history, name="history")
    app.router.add_get("/openapi.json", openapi, name="openapi")
    app.cleanup_ctx.append(_background)
    return app


# -- the command --------------------------------------------------------------------------------

def configure(parser: argparse.ArgumentParser) -> None:
    """Flags of ``oracle-sidecar serve``."""
    add = options.add
    add(parser, "--socket", env="ORACLE_METRICS_SOCKET", default=DEFAULT_SOCKET,
        help="Unix datagram socket the reporters push to")
    add(parser, "--host", env="ORACLE_HTTP_HOST", default="0.0.0.0", help="address to serve on")
    add(parser, "--port", env="ORACLE_HTTP_PORT", type=options.port, default=9090,
        help="HTTP port for /metrics, /health, /ready, /livez")
    add(parser, "--stale-after", env="ORACLE_STALE_AFTER", type=options.positive_duration,
        default=5.0, help="seconds without a push before a process counts as down")
    add(parser, "--expire-after", env="ORACLE_EXPIRE_AFTER", type=options.positive_duration,
        default=60.0, help="seconds without a push before a process's totals are retired")
    add(parser, "--max-series", env="ORACLE_MAX_SERIES", type=options.positive_int,
        default=2000, help="most RPC methods exported; more are counted as overflow")
    add(parser, "--grpc-health-target", env="ORACLE_GRPC_HEALTH_TARGET", type=options.host_port,
        help="HOST:PORT whose grpc.health.v1 must answer SERVING for /ready")
    add(parser, "--drain-seconds", env="ORACLE_DRAIN_SECONDS",
        type=options.non_negative_duration,
        default=2.0,
        help="after SIGTERM, seconds to keep serving with /ready at 503 before exiting")
    add(parser, "--log-level", env="LOG_LEVEL", type=options.log_level, default="INFO",
        help="DEBUG, INFO, WARNING or ERROR")


def run(args: argparse.Namespace) -> int:
    """Run the sidecar until SIGTERM or SIGINT; 0 on a clean stop, 1 when it cannot start."""
    setup_logging("oracle-sidecar", args.log_level)
    settings = Settings(args.socket, args.host, args.port, args.stale_after, args.expire_after,
                        args.max_series, args.grpc_health_target, args.drain_seconds)
    problem = port_problem(settings.host, settings.port)
    if problem is not None:  # before anything else starts or logs that it did
        log.error("cannot start: %s", problem)
        return 1
    try:
        return asyncio.run(serve(settings))
    except SocketError as err:
        log.error("cannot start: %s", err)
        return 1


def port_problem(host: str, port: int) -> str | None:
    """Why the HTTP server could not listen on ``host:port`` (naming the fix), or None.

    Bound the way aiohttp binds (SO_REUSEADDR), then released at once.
    """
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        return f"cannot listen on {host}:{port}: {err.strerror}; {_PORT_FIX}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as err:
            return f"cannot listen on {host}:{port}: {err.strerror}; {_PORT_FIX}"
    return None


async def serve(settings: Settings) -> int:
    """Serve until a signal; /ready turns 503 at once, then requests drain and it exits."""
    app = create_app(settings)

    async def drain() -> None:
        app[STATE]["draining"] = True
        log.info("stopping: /ready now answers 503",
                 extra={"drain_seconds": settings.drain_seconds})
        await asyncio.sleep(settings.drain_seconds)

    return await serve_until_signal(
        app, settings.host, settings.port, log, shutdown_timeout=5.0,
        started={"port": settings.port, "version": __version__}, before_stop=drain)
