"""What the reporter says of the service's health at each push, standard library only.

A value the service sets (:meth:`HealthReport.set`), or a callback asked at each push on a
thread of its own within a timeout (:meth:`HealthReport.set_callback`): an exception, a bad
answer or no answer in time reports ``degraded`` with the reason as a check, never raises.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from sidecar import protocol

__all__ = ["HealthCallback", "HealthReport", "clean_checks"]

HealthCallback = Callable[[], tuple[str, dict[str, str]]]


class HealthReport:
    """The health a reporter pushes: the value set last, or its callback's answer."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._value: tuple[str, dict[str, str]] = ("healthy", {})
        self._callback: HealthCallback | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[tuple[str, dict[str, str]]] | None = None

    def set(self, status: str, checks: dict[str, str] | None = None) -> None:
        """``healthy``, ``degraded`` or ``down`` with named checks from now on."""
        if status not in protocol.HEALTH_STATES:
            raise ValueError(f"health status {status!r} is not one of "
                             f"{', '.join(protocol.HEALTH_STATES)}")
        self._value = (status, clean_checks(checks or {}))

    def set_callback(self, callback: HealthCallback | None) -> None:
        """Ask ``callback() -> (status, checks)`` at each push instead (None: the set value)."""
        self._callback = callback

    def current(self) -> tuple[str, dict[str, str]]:
        """(status, checks) now; the callback is given ``timeout`` seconds on its own thread."""
        callback = self._callback
        if callback is None:
            return self._value
        if self._pending is not None and not self._pending.done():
            return "degraded", {"health_callback": "still running from an earlier flush"}
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="oracle-health")
        self._pending = self._pool.submit(callback)
        try:
            status, checks = self._pending.result(timeout=self.timeout)
            if status not in protocol.HEALTH_STATES or not isinstance(checks, dict):
                raise ValueError(f"health callback answered {status!r}, {type(checks).__name__}")
            return status, clean_checks(checks)
        except FutureTimeout:
            return "degraded", {"health_callback": f"no answer within {self.timeout} s"}
        except Exception as err:  # the service's callback failed: report it, never raise
            return "degraded", {"health_callback": f"{type(err).__name__}: {err}"[:200]}

    def close(self) -> None:
        """Let the callback's thread go (a callback still running is not waited for)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def after_fork(self) -> None:
        """In a forked child: the parent's thread is not there; a new one is made when asked."""
        self._pool = None
        self._pending = None


def clean_checks(checks: dict[Any, Any]) -> dict[str, str]:
    """Health checks as the protocol accepts them (one slot is left for the reporter's own)."""
    return {protocol.clean_name(str(k)): protocol.clean_text(str(v))
            for k, v in list(checks.items())[: protocol.MAX_KEYS - 1]}
