"""The HTTP plumbing the sidecar and the dashboard share.

JSON answers (:func:`json_response`), one middleware that turns every error into a small JSON
document and adds the security headers (:func:`guard`), the ``/livez`` handler (:func:`livez`),
the ``rpc`` query parameter's check (:func:`check_rpc`), and serving until SIGTERM or SIGINT
(:func:`serve_until_signal`).

A route is named in the ``endpoints`` list of a 404 answer when it was added with a ``name``
(static assets are not), so the list is read from the router, never kept by hand.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from sidecar import __version__, protocol

__all__ = [
    "KEEPALIVE",
    "MAX_RPC_PARAM",
    "Handler",
    "check_rpc",
    "endpoints",
    "guard",
    "json_response",
    "livez",
    "serve_until_signal",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_RPC_PARAM = 2 * protocol.MAX_NAME + 1  # Service/Method, each at most MAX_NAME characters


def json_response(body: Any, status: int = 200) -> web.Response:
    """``body`` as compact JSON (never NaN), not to be cached: every answer is the state now."""
    response = web.Response(text=json.dumps(body, separators=(",", ":"), allow_nan=False),
                            status=status, content_type="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


def endpoints(app: web.Application) -> list[str]:
    """The paths of the app's named routes, in the order they were added."""
    return [r.canonical for r in app.router.resources() if r.name]


def guard(log: logging.Logger, what: str, headers: Mapping[str, str] | None = None
          ) -> Middleware:
    """The middleware: ``headers`` on every answer; errors as small JSON documents.

    4xx/5xx are ``{"error", "status", "path"}`` (a 404 adds ``endpoints``, a 405 ``Allow``); an
    exception escaping a handler is logged and answers 500 naming ``what``'s log, never a
    traceback.
    """
    extra = dict(headers or {})

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as err:
            if err.status < 400:
                raise
            body: dict[str, Any] = {"error": err.text if err.text and not err.text.startswith(
                f"{err.status}:") else err.reason, "status": err.status, "path": request.path}
            if err.status == 404:
                body["endpoints"] = endpoints(request.app)
            response = json_response(body, err.status)
            if err.status == 405:
                response.headers["Allow"] = "GET, HEAD"
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("request failed", extra={"path": request.path})
            response = json_response({"error": f"internal error; see the {what}'s log",
                                      "status": 500, "path": request.path}, 500)
        response.headers.update(extra)
        return response

    return middleware


def livez(problem: Callable[[web.Application], str | None] | None = None) -> Handler:
    """``/livez``: 200 ``{"alive": true, "version"}``; 503 with the reason ``problem`` gives."""
    async def handler(request: web.Request) -> web.StreamResponse:
        reason = problem(request.app) if problem is not None else None
        if reason is not None:
            return json_response({"alive": False, "reason": reason}, 503)
        return json_response({"alive": True, "version": __version__})

    return handler


def check_rpc(rpc: str) -> str:
    """The ``rpc`` query parameter, ``Service/Method``; 400 when it cannot be one."""
    if not rpc or len(rpc) > MAX_RPC_PARAM or "/" not in rpc:
        raise web.HTTPBadRequest(text="rpc must be Service/Method")
    return rpc

# A connection that has not finished a request (or sits idle) for this long is closed; aiohttp's
# own default is an hour, long enough for slow clients to pile up.
KEEPALIVE = 10.0


async def serve_until_signal(
    app: web.Application,
    host: str,
    port: int,
    log: logging.Logger,
    *,
    shutdown_timeout: float,
    started: dict[str, Any],
    before_stop: Callable[[], Awaitable[None]] | None = None,
    access_log: bool = True,
) -> int:
    """Listen on ``host:port`` until a signal, then stop; 0 on a clean stop, 1 if it cannot listen.

    ``started`` is logged (as extra fields) once listening; ``before_stop`` runs after the
    signal and before the runner closes (the sidecar's drain).
    """
    kwargs: dict[str, Any] = {} if access_log else {"access_log": None}
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=shutdown_timeout,
                           keepalive_timeout=KEEPALIVE, **kwargs)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as err:
        await runner.cleanup()
        log.error("cannot listen on %s:%d: %s", host, port, err.strerror)
        return 1
    log.info("serving", extra=started)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if before_stop is not None:
        await before_stop()
    await runner.cleanup()
    log.info("stopped")
    return 0
