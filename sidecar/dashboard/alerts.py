"""The alerter's state, read-only, for the dashboard's "Alerts" section.

The format belongs to the alerter: :func:`sidecar.alerter.state.parse` reads it (key
``state.json`` of a ConfigMap in a cluster, or a file in local runs). This module only fetches
the text, so that the page can say *why* there is nothing to show (not configured, no ConfigMap
yet, 403, not JSON, ...) instead of the alerter's readers' plain None, and does so without a
warning in the log on every refresh. Nothing here raises.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from sidecar.alerter.state import STATE_KEY, StateError, parse

if TYPE_CHECKING:  # the Kubernetes client is imported only when discovery is used
    from sidecar.kube import Kube

__all__ = ["STATE_KEY", "parse_state", "read_alert_state"]

MAX_STATE = 1024 * 1024  # bytes; the real state is a few KiB
MAX_ALERTS = 500
_SEVERITY = {"CRITICAL": 0, "WARNING": 1}


def parse_state(text: str | bytes) -> dict[str, Any]:
    """``{"updated", "alerts": [...]}``: open alerts first, then by severity, newest first.

    Raises :class:`sidecar.alerter.state.StateError` when the text is not usable state.
    """
    state = parse(text)
    alerts = [{"key": key, **alert.to_json()}
              for key, alert in list(state.alerts.items())[:MAX_ALERTS]]
    alerts.sort(key=lambda a: (not a["open"], _SEVERITY.get(a["severity"], 2), -a["opened"]))
    return {"updated": state.updated or None, "alerts": alerts}


def _unread(source: str | None, error: str) -> dict[str, Any]:
    return {"source": source, "readable": False, "error": error, "updated": None, "alerts": []}


async def read_alert_state(file: str | None, config_map: str | None, namespace: str,
                           kube: Kube | None) -> dict[str, Any]:
    """The state for /api/status: ``readable`` with ``alerts``, or ``error`` saying why not.

    ``file`` wins over ``config_map``. ``kube`` is a :class:`sidecar.kube.Kube`, or None when
    the cluster cannot be asked (the ConfigMap is then reported unreadable).
    """
    raw: str | bytes | None
    if file:
        source = f"file {file}"
        try:
            raw = await asyncio.to_thread(_read_file, file)
        except FileNotFoundError:
            return _unread(source, f"no state yet: {file} does not exist (the alerter has not "
                                   f"run)")
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
    except StateError as err:
        return _unread(source, f"unreadable: {err}")
    return {"source": source, "readable": True, "error": None, **state}


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(MAX_STATE + 1)
