"""Fixtures and builders for the alerter tests: the fake Telegram API, snapshots, settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sidecar.alerter.rules import Thresholds
from sidecar.alerter.run import Settings
from sidecar.targets import Discovery, Fetched, Target
from tests.fakes.telegram_api import FakeTelegramAPI

SERVICE = "nps.oracle.OracleService"


@pytest.fixture
def telegram() -> Iterator[FakeTelegramAPI]:
    """A started fake Telegram Bot API; stopped after the test."""
    api = FakeTelegramAPI().start()
    yield api
    api.stop()


def rpc(method: str, count: int = 100, errors: int = 0, p95_ms: float | None = 20.0,
        codes: dict[str, int] | None = None) -> dict[str, Any]:
    """One RPC row of a snapshot window."""
    return {"service": SERVICE, "method": method, "type": "unary", "count": count,
            "errors": errors, "error_rate_percent": round(100 * errors / count, 3) if count
            else 0.0, "p50_ms": 5.0, "p95_ms": p95_ms, "p99_ms": p95_ms, "max_ms": p95_ms,
            "codes": codes if codes is not None else
            ({"OK": count - errors, "Internal": errors} if errors else {"OK": count})}


def totals(rows: list[Any]) -> dict[str, Any]:
    """The totals row of a window: the sums of its well-formed rows."""
    good = [r for r in rows if isinstance(r, dict) and type(r.get("count")) is int
            and type(r.get("errors")) is int and r["count"] >= 0]
    count = sum(r["count"] for r in good)
    errors = sum(r["errors"] for r in good)
    return {"count": count, "errors": errors,
            "error_rate_percent": round(100 * errors / count, 3) if count else 0.0,
            "codes": {"OK": count - errors, "Internal": errors}}


def snapshot(status: str = "healthy", ready: bool | None = True,
             rows: list[Any] | None = None,
             windows: dict[str, list[Any]] | None = None, uptime: float = 500.0,
             checks: dict[str, str] | None = None, reason: str = "") -> dict[str, Any]:
    """A /api/v1/snapshot body; ``rows`` go in every window unless ``windows`` says otherwise."""
    per_window = windows or {w: rows or [] for w in ("1m", "5m", "1h", "all")}
    health: dict[str, Any] = {"status": status, "reason": reason or f"reports {status}",
                              "checks": checks or {}, "last_push_age_seconds": 0.4}
    if ready is not None:
        health["ready"] = ready
        health["ready_reason"] = reason or f"reports {status}"
    return {"uptime_seconds": uptime, "health": health,
            "windows": {w: {"seconds": 300.0, "covered_seconds": 300.0,
                            "totals": totals(r), "rpcs": r} for w, r in per_window.items()}}


def pod_target(name: str = "oracle-a", phase: str = "Running", terminating: bool = False
               ) -> Target:
    """A Target as pod discovery makes it."""
    return Target(name, "http://10.0.0.1:9090", "oracle", phase, True, None, terminating)


def url_target(url: str = "http://127.0.0.1:9") -> Target:
    return Target(url, url)


def answer(body: Any = None, target: Target | None = None, status: int | None = 200,
           error: str | None = None) -> Fetched:
    """A fetch result, as sidecar.targets.fetch_json returns it."""
    return Fetched(target or pod_target(), status if error is None else None,
                   body, error, 0.01)


def settings_for(telegram: FakeTelegramAPI | None, **changes: Any) -> Settings:
    """Settings that send to ``telegram`` (log-only when None), short timings for tests."""
    base: dict[str, Any] = {
        "discovery": Discovery(),
        "thresholds": Thresholds(),
        "cooldown": 300.0,
        "deadline": 10.0,
        "telegram_api_url": telegram.url if telegram else "https://api.telegram.org",
        "token": telegram.token if telegram else None,
        "chat_id": telegram.chat_id if telegram else None,
        "hint": "kubectl port-forward --namespace oracle svc/oracle-dashboard 9000:9000",
        "fetch_timeout": 2.0,
        "attempt_timeout": 1.0,
        "backoff": 0.05,
    }
    base.update(changes)
    return Settings(**base)
