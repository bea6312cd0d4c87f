"""The alerter's state, read-only, for the dashboard's "Alerts" section.

The alerter keeps ``{"version": 1, "updated": <unix>, "alerts": {key: {...}}}`` in the key
``state.json`` of a ConfigMap (in a cluster) or in a file (local runs). This module reads that
shape itself, in :func:`parse_state`, until the alerter's own reader is available; whatever goes
wrong (not configured, missing, forbidden, malformed) becomes a sentence for the page, never an
exception.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

__all__ = ["STATE_KEY", "AlertStateError", "parse_state", "read_alert_state"]

STATE_KEY = "state.json"
MAX_STATE = 1024 * 1024  # bytes; the real state is a few KiB
MAX_ALERTS = 500
_SEVERITY = {"CRITICAL": 0, "WARNING": 1}


class AlertStateError(ValueError):
    """The alert state exists but cannot be understood."""


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _text(value: Any, limit: int = 500) -> str | None:
    if not isinstance(value, str):
        return None
    return value if len(value) <= limit else value[: limit - 1] + "…"


def parse_state(text: str | bytes) -> dict[str, Any]:
    """``{"updated", "alerts": [...]}`` from the alerter's JSON; open alerts first, then newest.

    Raises :class:`AlertStateError` when the text is not alert state version 1.
    """
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise AlertStateError(f"not JSON ({err})") from None
    if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(
            doc.get("alerts", {}), dict):
        raise AlertStateError("not alert state version 1")
    alerts = []
    for key, entry in list(doc.get("alerts", {}).items())[:MAX_ALERTS]:
        if not isinstance(entry, dict):
            continue
        alerts.append({
            "key": _text(key),
            "kind": _text(entry.get("kind"), 40),
            "severity": _text(entry.get("severity"), 20),
            "target": _text(entry.get("target")),
            "rpc": _text(entry.get("rpc")),
            "open": entry.get("open") is True,
            "opened": _num(entry.get("opened")),
            "last_sent": _num(entry.get("last_sent")),
            "cooldown_until": _num(entry.get("cooldown_until")),
            "summary": _text(entry.get("summary"), 1000),
        })
    alerts.sort(key=lambda a: (not a["open"], _SEVERITY.get(a["severity"] or "", 2),
                               -(a["opened"] or 0.0)))
    return {"updated": _num(doc.get("updated")), "alerts": alerts}


def _unread(source: str | None, error: str) -> dict[str, Any]:
    return {"source": source, "readable": False, "error": error, "updated": None, "alerts": []}


async def read_alert_state(file: str | None, config_map: str | None, namespace: str,
                           kube: Any | None) -> dict[str, Any]:
    """The state for /api/status: ``readable`` with ``alerts``, or ``error`` saying why not.

    ``file`` wins over ``config_map``. ``kube`` is a :class:`sidecar.kube.Kube`, or None when
    the cluster cannot be asked (the ConfigMap is then reported unreadable).
    """
    if file:
        source = f"file {file}"
        try:
            raw = await asyncio.to_thread(_read_file, file)
        except OSError as err:
            return _unread(source, f"cannot read {file}: {err.strerror or err}")
    elif config_map:
        source = f"ConfigMap {namespace}/{config_map}"
        if kube is None:
            return _unread(source, "the Kubernetes API is not available")
        from sidecar.kube import KubeError

        try:
            found = await asyncio.to_thread(kube.read_config_map, namespace, config_map)
        except KubeError as err:
            return _unread(source, str(err))
        if found is None:
            return _unread(source, "the ConfigMap does not exist yet (the alerter has not run)")
        raw = found[0].get(STATE_KEY)
        if raw is None:
            return _unread(source, f"the ConfigMap has no key {STATE_KEY} yet")
    else:
        return _unread(None, "not configured (set ALERT_STATE_CONFIGMAP or ALERT_STATE_FILE)")
    if len(raw) > MAX_STATE:
        return _unread(source, f"the state is larger than {MAX_STATE} bytes")
    try:
        state = parse_state(raw)
    except AlertStateError as err:
        return _unread(source, f"unreadable: {err}")
    return {"source": source, "readable": True, "error": None, **state}


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(MAX_STATE + 1)
