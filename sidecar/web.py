"""Serving an aiohttp app until SIGTERM or SIGINT; shared by the sidecar and the dashboard."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

__all__ = ["KEEPALIVE", "serve_until_signal"]

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
