"""``oracle-sidecar dashboard``: every Oracle pod at a glance, on :9000.

One page (``static/``: HTML, CSS and JavaScript of its own, nothing from the internet) and a
few read-only JSON endpoints:

- ``GET /api/status?window=1m|5m|1h|all`` -- health and per-RPC figures of every pod, the sum
  over pods, the alerter's state and the problems the dashboard itself has reaching things;
- ``GET /api/history?rpc=Service/Method&pod=NAME`` -- chart series over the last hour, from the
  sidecars' own one-hour rings (both parameters optional);
- ``GET /livez``, ``GET /ready``.

Pods are asked on demand, not by a background poller: nothing runs while nobody looks, and a
request finds data no older than one fetch. Requests that arrive while a fetch is running, or
within ``max_age`` of the last one, share its result, so ten open tabs cost the pods what one
does. Every URL the page uses is relative, so ``kubectl port-forward`` and a path prefix behind
a proxy both work.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import aiohttp
from aiohttp import web

from sidecar import __version__, options
from sidecar.dashboard.aggregate import (
    WINDOWS,
    NotASnapshot,
    history_points,
    merge_history,
    pod_view,
    public,
    sum_pods,
)
from sidecar.dashboard.alerts import read_alert_state
from sidecar.logs import setup_logging
from sidecar.openapi import load as load_openapi
from sidecar.targets import Discovery, Fetched, Target, discover, fetch_json
from sidecar.web import serve_until_signal

__all__ = ["Board", "Settings", "configure", "create_app", "run", "serve"]

log = logging.getLogger("sidecar.dashboard")

DEFAULT_SELECTOR = Discovery().selector
MAX_RPC_PARAM = 2 * 256 + 1  # Service/Method, each at most the protocol's 256 characters

# The page runs only its own script and style; nothing inline, nothing from elsewhere.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
STATIC = {  # route -> (file in static/, content type)
    "/": ("index.html", "text/html"),
    "/index.html": ("index.html", "text/html"),
    "/app.css": ("app.css", "text/css"),
    "/app.js": ("app.js", "text/javascript"),
}


@dataclass(frozen=True)
class Settings:
    """Everything ``dashboard`` can be told; the CLI builds it from flags and env vars."""

    host: str = "0.0.0.0"
    port: int = 9000
    targets: tuple[str, ...] = ()  # fixed sidecar URLs; empty means Kubernetes discovery
    namespace: str | None = None  # None: this pod's namespace, else "default"
    selector: str = DEFAULT_SELECTOR
    sidecar_port: int = 9090
    refresh: float = 5.0  # seconds between the page's refreshes
    timeout: float = 2.0  # seconds for one pod to answer
    alert_state_configmap: str | None = None
    alert_state_file: str | None = None

    @property
    def max_age(self) -> float:
        """Seconds a fetched result is shared with later requests."""
        return min(1.0, self.refresh / 2)


# -- sharing one fetch among many requests ------------------------------------------------------

class _Shared:
    """At most one running fetch per key; callers within ``max_age`` of a result reuse it."""

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        self._results: dict[str, tuple[float, Any]] = {}
        self._running: dict[str, asyncio.Task[Any]] = {}

    def last(self, key: str) -> Any | None:
        hit = self._results.get(key)
        return None if hit is None else hit[1]

    async def get(self, key: str, fetch: Callable[[], Awaitable[Any]]) -> Any:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for old in [k for k, (t, _) in self._results.items() if now - t > 60 and k != key]:
            del self._results[old]  # bounded: history keys vary with the query
        hit = self._results.get(key)
        if hit is not None and now - hit[0] < self.max_age:
            return hit[1]
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(fetch())
            self._running[key] = task

            def done(t: asyncio.Task[Any]) -> None:
                self._running.pop(key, None)
                if not t.cancelled() and t.exception() is None:
                    self._results[key] = (loop.time(), t.result())

            task.add_done_callback(done)
        # A client that goes away cancels its own wait, never the fetch others share.
        return await asyncio.shield(task)

    async def close(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


# -- one round of asking the pods ---------------------------------------------------------------

@dataclass
class Round:
    """What one fetch found: the targets, their answers, the alert state, and when."""

    time: float
    fetched: list[Fetched]
    discovery_error: str | None
    alerts: dict[str, Any]
    seconds: float
    views: dict[str, dict[str, Any]] = field(default_factory=dict)  # window -> /api/status


class Board:
    """The dashboard's state: settings, the HTTP session, the Kubernetes API, shared results."""

    def __init__(self, settings: Settings, kube: Any | None = None) -> None:
        self.settings = settings
        self.kube = kube
        self.session: aiohttp.ClientSession | None = None
        self.shared = _Shared(settings.max_age)
        self.known: list[Target] = []  # the last targets discovery found
        self._problems: set[str] = set()
        self._namespace: str | None = None
        self.discovery = Discovery(urls=settings.targets, namespace=settings.namespace,
                                   selector=settings.selector, port=settings.sidecar_port)

    @property
    def mode(self) -> str:
        return "urls" if self.settings.targets else "kubernetes"

    def namespace(self) -> str:
        if self._namespace is None:
            from sidecar import kube as k8s

            self._namespace = self.settings.namespace or k8s.current_namespace() or "default"
        return self._namespace

    async def _kube(self) -> Any:
        """The Kubernetes API client, made on first use (KubeError when there is none)."""
        if self.kube is None:
            from sidecar.kube import Kube

            self.kube = await asyncio.to_thread(Kube)
        return self.kube

    async def _targets(self) -> tuple[list[Target], str | None]:
        """The targets now, or the last known ones and what went wrong finding them."""
        if self.settings.targets:
            return await discover(self.discovery), None
        from sidecar.kube import KubeError

        try:
            how = Discovery(namespace=self.namespace(), selector=self.settings.selector,
                            port=self.settings.sidecar_port)
            async with asyncio.timeout(10.0):
                targets = await discover(how, await self._kube())
        except KubeError as err:
            return self.known, str(err)
        except TimeoutError:
            return self.known, "the Kubernetes API did not answer within 10 s"
        except Exception as err:  # a bug here must become a banner, not a broken page
            log.exception("pod discovery failed")
            return self.known, f"pod discovery failed: {type(err).__name__}"
        self.known = targets
        return targets, None

    async def _alerts(self) -> dict[str, Any]:
        s = self.settings
        kube = None
        if s.alert_state_configmap and not s.alert_state_file:
            from sidecar.kube import KubeError

            try:
                kube = await self._kube()
            except KubeError as err:
                return {"source": f"ConfigMap {s.alert_state_configmap}", "readable": False,
                        "error": str(err), "updated": None, "alerts": []}
        namespace = self.namespace() if s.alert_state_configmap else ""
        return await read_alert_state(s.alert_state_file, s.alert_state_configmap, namespace,
                                      kube)

    async def _round(self) -> Round:
        assert self.session is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        alerts = asyncio.ensure_future(self._alerts())
        targets, discovery_error = await self._targets()
        fetched = await asyncio.gather(*(
            fetch_json(self.session, t, "/api/v1/snapshot", self.settings.timeout)
            for t in targets))
        found = Round(time.time(), list(fetched), discovery_error, await alerts,
                      round(loop.time() - started, 3))
        self._log_changes(found)
        return found

    async def round(self) -> Round:
        """The shared result of asking every pod (fresh, or at most ``max_age`` old)."""
        found: Round = await self.shared.get("round", self._round)
        return found

    def _log_changes(self, found: Round) -> None:
        """Log a problem when it starts and when it ends, not on every refresh."""
        now = set()
        if found.discovery_error:
            now.add(f"cannot list the Oracle pods: {found.discovery_error}")
        for f in found.fetched:
            if f.error:
                now.add(f"cannot read {f.target.name}: {f.error}")
        for problem in sorted(now - self._problems):
            log.warning(problem)
        for problem in sorted(self._problems - now):
            log.info("resolved: %s", problem)
        self._problems = now

    # -- views ----------------------------------------------------------------------------------

    def status(self, found: Round, window: str) -> dict[str, Any]:
        """The /api/status document for ``window``, computed once per round and window."""
        if window in found.views:
            return found.views[window]
        pods = [pod_view(f.target.name, f.target.url, f.body, window, error=f.error,
                         status=f.status, seconds=f.seconds, phase=f.target.phase,
                         pod_ready=f.target.pod_ready, namespace=f.target.namespace)
                for f in found.fetched]
        s = self.settings
        problems: list[dict[str, Any]] = []
        if found.discovery_error:
            problems.append({"level": "error", "pod": None,
                             "text": f"Cannot list the Oracle pods: {found.discovery_error}"})
        elif not pods:
            where = f"in namespace {self.namespace()} matching {s.selector}" \
                if self.mode == "kubernetes" else "configured"
            problems.append({"level": "warning", "pod": None,
                             "text": f"No Oracle pods {where}."})
        for pod in pods:
            if pod["error"]:
                level = "warning" if pod["url"] is None else "error"
                problems.append({"level": level, "pod": pod["name"],
                                 "text": f"Cannot read {pod['name']}: {pod['error']}"})
        summed = sum_pods(pods)
        pods = [public(p) for p in pods]
        view = {
            "dashboard": {"version": __version__, "time": found.time,
                          "refresh_seconds": s.refresh, "fetch_seconds": found.seconds,
                          "timeout_seconds": s.timeout, "window": window,
                          "windows": list(WINDOWS)},
            "discovery": {"mode": self.mode,
                          "namespace": self.namespace() if self.mode == "kubernetes" else None,
                          "selector": s.selector if self.mode == "kubernetes" else None,
                          "error": found.discovery_error},
            "problems": problems,
            "pods": pods,
            "summed": summed,
            "alerts": found.alerts,
        }
        found.views[window] = view
        return view

    async def history(self, targets: list[Target], rpc: str | None) -> dict[str, Any]:
        """Chart series over the last hour from ``targets``, summed (see merge_history)."""
        assert self.session is not None
        path = "/api/v1/history" + (f"?{urllib.parse.urlencode({'rpc': rpc})}" if rpc else "")
        answers = await asyncio.gather(*(
            fetch_json(self.session, t, path, self.settings.timeout) for t in targets))
        series, pods = [], []
        for f in answers:
            error = f.error or (None if f.status == 200 else f"answered HTTP {f.status}")
            points: list[dict[str, Any]] = []
            if error is None:
                try:
                    points = history_points(f.body)
                except NotASnapshot as err:
                    error = f"answered JSON that is not a history ({err})"
            series.append(points)
            pods.append({"name": f.target.name, "error": error, "points": len(points)})
        return {"rpc": rpc, "time": time.time(), "series": merge_history(series), "pods": pods}


# -- HTTP ---------------------------------------------------------------------------------------

BOARD = web.AppKey("board", Board)


def _json(body: Any, status: int = 200) -> web.Response:
    response = web.Response(text=json.dumps(body, separators=(",", ":"), allow_nan=False),
                            status=status, content_type="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


@web.middleware
async def _guard(request: web.Request,
                 handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                 ) -> web.StreamResponse:
    """Security headers on every answer; errors as small JSON documents, never a traceback."""
    try:
        response = await handler(request)
    except web.HTTPException as err:
        if err.status < 400:
            raise
        body: dict[str, Any] = {"error": err.text if err.text and not err.text.startswith(
            f"{err.status}:") else err.reason, "status": err.status, "path": request.path}
        if err.status == 404:
            body["endpoints"] = ["/", "/api/status", "/api/history", "/livez", "/ready",
                                 "/openapi.json"]
        response = _json(body, err.status)
        if err.status == 405:
            response.headers["Allow"] = "GET, HEAD"
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("request failed", extra={"path": request.path})
        response = _json({"error": "internal error; see the dashboard's log", "status": 500,
                          "path": request.path}, 500)
    response.headers.update(SECURITY_HEADERS)
    return response


def _page(body: bytes, content_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler answering one static file, held in memory (no directory is ever listed)."""
    async def page(request: web.Request) -> web.Response:
        response = web.Response(body=body, content_type=content_type, charset="utf-8")
        response.headers["Cache-Control"] = "no-cache"
        return response

    return page


async def api_status(request: web.Request) -> web.Response:
    window = request.query.get("window", "1m")
    if window not in WINDOWS:
        raise web.HTTPBadRequest(text=f"window must be one of {', '.join(WINDOWS)}")
    board = request.app[BOARD]
    return _json(board.status(await board.round(), window))


async def api_history(request: web.Request) -> web.Response:
    rpc = request.query.get("rpc") or None
    pod = request.query.get("pod") or None
    if rpc is not None and (len(rpc) > MAX_RPC_PARAM or "/" not in rpc):
        raise web.HTTPBadRequest(text="rpc must be Service/Method")
    board = request.app[BOARD]
    found = board.shared.last("round") or await board.round()
    targets = [f.target for f in found.fetched if pod is None or f.target.name == pod]
    if pod is not None and not targets:
        raise web.HTTPNotFound(text="no such pod")
    doc = await board.shared.get(json.dumps(["history", pod, rpc]),
                                 lambda: board.history(targets, rpc))
    return _json({**doc, "pod": pod})


async def livez(request: web.Request) -> web.Response:
    return _json({"alive": True, "version": __version__})


async def ready(request: web.Request) -> web.Response:
    """Ready while serving: a Kubernetes API or pod problem is shown on the page, not hidden."""
    board = request.app[BOARD]
    return _json({"ready": True, "mode": board.mode, "targets_known": len(board.known)
                  if board.mode == "kubernetes" else len(board.settings.targets)})


def _load_pages() -> dict[str, tuple[bytes, str]]:
    static = resources.files("sidecar.dashboard") / "static"
    files = {name: (static / name).read_bytes() for name, _ in set(STATIC.values())}
    return {route: (files[name], kind) for route, (name, kind) in STATIC.items()}


async def _session(app: web.Application) -> AsyncIterator[None]:
    board = app[BOARD]
    connector = aiohttp.TCPConnector(limit=100, limit_per_host=4)
    board.session = aiohttp.ClientSession(
        connector=connector, headers={"User-Agent": f"oracle-sidecar-dashboard/{__version__}",
                                      "Accept": "application/json"})
    yield
    await board.shared.close()
    await board.session.close()


def create_app(settings: Settings, kube: Any | None = None) -> web.Application:
    """The :9000 application. ``kube`` is a :class:`sidecar.kube.Kube` (made when needed)."""
    app = web.Application(middlewares=[_guard], client_max_size=1024)
    app[BOARD] = Board(settings, kube)
    for route, (body, content_type) in _load_pages().items():
        app.router.add_get(route, _page(body, content_type))
    app.router.add_get("/api/status", api_status)
    app.router.add_get("/api/history", api_history)
    app.router.add_get("/livez", livez)
    app.router.add_get("/ready", ready)
    app.router.add_get("/openapi.json", _page(load_openapi("dashboard"), "application/json"))
    app.cleanup_ctx.append(_session)
    return app


# -- the command --------------------------------------------------------------------------------

def configure(parser: argparse.ArgumentParser) -> None:
    """Flags of ``oracle-sidecar dashboard``."""
    add = options.add
    add(parser, "--host", env="DASHBOARD_HOST", default="0.0.0.0", help="address to serve on")
    add(parser, "--port", env="DASHBOARD_PORT", type=options.port, default=9000,
        help="HTTP port of the dashboard")
    add(parser, "--target", env="ORACLE_HTTP_URL", type=options.http_url, repeat=True,
        default=[], help="sidecar URL to watch, e.g. http://127.0.0.1:9090 (repeatable; the "
                         "env var is comma-separated); without it, pods are found through the "
                         "Kubernetes API")
    add(parser, "--namespace", env="ORACLE_NAMESPACE",
        help="namespace of the Oracle pods (default: this pod's own, else default)")
    add(parser, "--selector", env="ORACLE_POD_SELECTOR", default=DEFAULT_SELECTOR,
        help="label selector of the Oracle pods")
    add(parser, "--sidecar-port", env="ORACLE_HTTP_PORT", type=options.port, default=9090,
        help="port of the sidecar on each pod")
    add(parser, "--refresh", env="DASHBOARD_REFRESH", type=options.positive_duration, default=5.0,
        help="seconds between the page's refreshes")
    add(parser, "--timeout", env="DASHBOARD_TIMEOUT", type=options.positive_duration, default=2.0,
        help="seconds one pod has to answer")
    add(parser, "--alert-state-configmap", env="ALERT_STATE_CONFIGMAP",
        help="name of the alerter's state ConfigMap, to show the alerts")
    add(parser, "--alert-state-file", env="ALERT_STATE_FILE",
        help="path of the alerter's state file (local runs; wins over the ConfigMap)")
    add(parser, "--log-level", env="LOG_LEVEL", type=options.log_level, default="INFO",
        help="DEBUG, INFO, WARNING or ERROR")


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from parsed flags."""
    return Settings(host=args.host, port=args.port, targets=tuple(args.target or ()),
                    namespace=args.namespace or None, selector=args.selector,
                    sidecar_port=args.sidecar_port, refresh=args.refresh, timeout=args.timeout,
                    alert_state_configmap=args.alert_state_configmap or None,
                    alert_state_file=args.alert_state_file or None)


def run(args: argparse.Namespace) -> int:
    """Serve the dashboard until SIGTERM or SIGINT; 0 on a clean stop, 1 when it cannot start."""
    setup_logging("oracle-dashboard", args.log_level)
    return asyncio.run(serve(settings_from(args)))


async def serve(settings: Settings) -> int:
    """Serve until a signal."""
    how = (f"{len(settings.targets)} fixed target(s)" if settings.targets
           else f"pods matching {settings.selector}")
    return await serve_until_signal(
        create_app(settings), settings.host, settings.port, log, shutdown_timeout=2.0,
        started={"port": settings.port, "version": __version__, "watching": how},
        access_log=False)
