"""Dashboard fixtures: a real sidecar app in-process, misbehaving pods, the dashboard app."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from sidecar import server
from sidecar.dashboard.app import Settings, create_app
from sidecar.reporter.core import Reporter
from sidecar.store import Store
from tests.dashboard.helpers import SERVICE


@dataclass
class Clock:
    """A monotonic clock the test moves; wall time follows it, starting a minute in the past."""

    now: float = 1000.0
    wall_at_start: float = field(default_factory=lambda: time.time() - 60)

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.wall_at_start + (self.now - 1000.0)


@dataclass
class LivePod:
    """A real sidecar app (server.create_app) on a real port, fed by a real Reporter."""

    url: str
    port: int
    store: Store
    reporter: Reporter
    clock: Clock

    async def push(self) -> None:
        """Send the reporter's snapshot now and wait until the sidecar has applied it."""
        before = self.store.received
        self.reporter.flush()
        for _ in range(200):
            if self.store.received > before:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the sidecar did not receive the push")

    async def calls(self, method: str, n: int, seconds: float = 0.02, code: str = "OK") -> None:
        """Record ``n`` calls of ``method`` and push them."""
        series = self.reporter.series(f"/{SERVICE}/{method}")
        assert series is not None
        for _ in range(n):
            self.reporter.observe(series, seconds, code)
        await self.push()

    async def step(self, seconds: float = 5.0) -> None:
        """Move time on and let the store take a history point, as its ticker does."""
        self.clock.now += seconds
        self.store.tick()


@pytest.fixture
async def live_pod(aiohttp_server: Any, tmp_path: Path) -> AsyncIterator[LivePod]:
    """A sidecar app with a fake clock (history points on demand), health set, no traffic yet."""
    clock = Clock()
    store = Store(stale_after=3600, expire_after=7200, clock=clock, wall=clock.wall)
    sock = str(tmp_path / "pod.sock")
    srv = await aiohttp_server(server.create_app(server.Settings(socket=sock), store))
    reporter = Reporter(SERVICE, "1.4.2", [], socket_path=sock, interval=60)
    reporter.set_health("healthy", {"model": "loaded"})
    pod = LivePod(f"http://127.0.0.1:{srv.port}", srv.port, store, reporter, clock)
    await pod.push()
    yield pod
    reporter.close()


@dataclass
class BadPods:
    """One server answering as several broken sidecars, by path prefix; counts the requests."""

    base: str
    hits: dict[str, int]

    def url(self, kind: str) -> str:
        return f"{self.base}/{kind}"


HUGE = 6 * 1024 * 1024


@pytest.fixture
async def bad_pods(aiohttp_server: Any) -> AsyncIterator[BadPods]:
    """Sidecars that hang, answer garbage, a huge body, JSON of another shape, or HTTP 500."""
    hits: dict[str, int] = {}
    release = asyncio.Event()  # set at teardown, so the hanging handler ends with the test

    def counted(kind: str, answer: Callable[[web.Request], Awaitable[web.StreamResponse]]
                ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            hits[kind] = hits.get(kind, 0) + 1
            return await answer(request)

        return handler

    async def slow(request: web.Request) -> web.StreamResponse:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), 30)
        return web.json_response({})

    async def garbage(request: web.Request) -> web.StreamResponse:
        return web.Response(text="<html><body>It works!</body></html>",
                            content_type="text/html")

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to refuse it early
        response.content_type = "application/json"
        await response.prepare(request)
        chunk = b"[" + b"0," * 32767 + b"0"
        for _ in range(HUGE // len(chunk) + 1):
            await response.write(chunk)
        await response.write(b"]")
        return response

    async def other_json(request: web.Request) -> web.StreamResponse:
        return web.json_response({"windows": "none", "health": [1, 2]})

    async def failing(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": "boom"}, status=500)

    app = web.Application()
    for kind, answer in {"slow": slow, "garbage": garbage, "huge": huge,
                         "other": other_json, "failing": failing}.items():
        app.router.add_get(f"/{kind}/api/v1/snapshot", counted(kind, answer))
        app.router.add_get(f"/{kind}/api/v1/history", counted(f"{kind}-history", answer))
    srv = await aiohttp_server(app)
    yield BadPods(f"http://127.0.0.1:{srv.port}", hits)
    release.set()


@pytest.fixture
def dashboard(aiohttp_client: Any) -> Callable[..., Awaitable[Any]]:
    """Makes a dashboard test client: ``await dashboard(targets=(...), timeout=0.5, ...)``."""
    async def make(kube: Any | None = None, **settings: Any) -> Any:
        settings.setdefault("timeout", 0.5)
        return await aiohttp_client(create_app(Settings(**settings), kube=kube))

    return make
