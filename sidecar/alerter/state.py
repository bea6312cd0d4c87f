"""The alert state between runs: its JSON format, and where it lives (a ConfigMap or a file).

The same JSON sits under the key ``state.json`` of the state ConfigMap, or in the state file::

    {"version": 1, "updated": 1795853660.1,
     "alerts": {"degraded|oracle-7d9f-abc|-": {
         "kind": "degraded", "severity": "CRITICAL", "target": "oracle-7d9f-abc", "rpc": null,
         "open": true, "opened": 1795853600.0, "last_sent": 1795853600.4,
         "cooldown_until": 1795853900.4, "summary": "health degraded: ephemeris: timeout"}},
     "claims": {}}

An alert's key is ``<kind>|<target>|<rpc or ->``. ``last_sent`` and ``cooldown_until`` are null
for an alert that was never delivered; ``sent_via`` says how ``last_sent`` went out
(``telegram``, or ``log`` when no bot token is configured; absent in older states).
``claims`` holds the alerts a run is delivering right now (see docs/alerter.md, "Two runs at
once"); readers other than the alerter can ignore it.
The state holds no secret: targets, RPC names, times and one-line summaries only.

Readers (the dashboard): :func:`load_state_file` and :func:`load_state_config_map` return the
parsed dict, or None with a warning when the state is missing or unusable. The alerter itself
uses a :class:`FileStore` / :class:`ConfigMapStore`, whose ``save`` is a compare-and-swap.
These calls block; async callers run them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

__all__ = [
    "KINDS",
    "SEVERITIES",
    "STATE_KEY",
    "VERSION",
    "Alert",
    "Claim",
    "ConfigMapStore",
    "FileStore",
    "Loaded",
    "MemoryStore",
    "State",
    "StateConflict",
    "StateError",
    "Store",
    "alert_key",
    "dumps",
    "load_state_config_map",
    "load_state_file",
    "parse",
]

log = logging.getLogger("sidecar.alerter.state")

STATE_KEY = "state.json"
VERSION = 1
KINDS = ("unreachable", "degraded", "error_rate", "latency")
SEVERITIES = ("CRITICAL", "WARNING")
VIAS = ("telegram", "log")  # how a delivery went out: sent to Telegram, or only logged
SUMMARY_LIMIT = 500  # characters of one summary kept in the state
LABELS = {"app.kubernetes.io/component": "alerter", "app.kubernetes.io/part-of": "oracle"}


class StateError(ValueError):
    """The stored state is not usable (not JSON, wrong shape, another version)."""


class StateConflict(RuntimeError):
    """Someone else wrote the state since it was read: read it again and redo the change."""


def alert_key(kind: str, target: str, rpc: str | None) -> str:
    """``<kind>|<target>|<rpc or ->``, the identity of an alert (and of its cooldown)."""
    return f"{kind}|{target}|{rpc or '-'}"


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert: what it is about, whether it is open, and when it was last delivered."""

    kind: str
    severity: str
    target: str
    rpc: str | None
    open: bool
    opened: float
    last_sent: float | None
    cooldown_until: float | None
    summary: str
    sent_via: str | None = None  # how ``last_sent`` went out: "telegram", or "log" (no token)

    @property
    def key(self) -> str:
        return alert_key(self.kind, self.target, self.rpc)

    @property
    def notified(self) -> bool:
        """True when it was delivered since it (last) opened: the person knows of it."""
        return self.last_sent is not None and self.last_sent >= self.opened

    def to_json(self) -> dict[str, Any]:
        raw: dict[str, Any] = {
            "kind": self.kind, "severity": self.severity, "target": self.target,
            "rpc": self.rpc, "open": self.open, "opened": self.opened,
            "last_sent": self.last_sent, "cooldown_until": self.cooldown_until,
            "summary": self.summary,
        }
        if self.sent_via is not None:  # an optional addition: absent until a delivery sets it
            raw["sent_via"] = self.sent_via
        return raw

    @classmethod
    def from_json(cls, raw: Any) -> Alert:
        if not isinstance(raw, dict):
            raise StateError("an alert is not a JSON object")
        kind, severity = raw.get("kind"), raw.get("severity")
        if kind not in KINDS:
            raise StateError(f"unknown alert kind {kind!r}")
        if severity not in SEVERITIES:
            raise StateError(f"unknown severity {severity!r}")
        target, rpc, summary = raw.get("target"), raw.get("rpc"), raw.get("summary", "")
        if not isinstance(target, str) or not target:
            raise StateError("an alert without a target")
        if rpc is not None and not isinstance(rpc, str):
            raise StateError("an alert whose rpc is not text")
        if not isinstance(raw.get("open"), bool):
            raise StateError("an alert whose open is not true or false")
        via = raw.get("sent_via")
        return cls(kind, severity, target, rpc or None, raw["open"], _time(raw.get("opened")),
                   _time_or_none(raw.get("last_sent")), _time_or_none(raw.get("cooldown_until")),
                   str(summary)[:SUMMARY_LIMIT], via if via in VIAS else None)


@dataclass(frozen=True, slots=True)
class Claim:
    """A run is delivering this alert now; until ``until`` no other run sends it.

    It remembers the alert's fields before the claim, so that a failed delivery (or a run that
    died, once ``until`` has passed) puts them back and the alert is due again.
    """

    run: str
    until: float
    open: bool
    last_sent: float | None
    cooldown_until: float | None

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "until": self.until, "open": self.open,
                "last_sent": self.last_sent, "cooldown_until": self.cooldown_until}

    @classmethod
    def from_json(cls, raw: Any) -> Claim:
        if not isinstance(raw, dict) or not isinstance(raw.get("run"), str):
            raise StateError("a claim is not a JSON object with a run")
        if not isinstance(raw.get("open"), bool):
            raise StateError("a claim whose open is not true or false")
        return cls(raw["run"], _time(raw.get("until")), raw["open"],
                   _time_or_none(raw.get("last_sent")), _time_or_none(raw.get("cooldown_until")))


@dataclass(frozen=True, slots=True)
class State:
    """The whole state. Changes make new objects (``with_alert``, ``with_claim``, ...)."""

    updated: float = 0.0
    alerts: dict[str, Alert] = field(default_factory=dict)
    claims: dict[str, Claim] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "updated": self.updated,
            "alerts": {k: a.to_json() for k, a in sorted(self.alerts.items())},
            "claims": {k: c.to_json() for k, c in sorted(self.claims.items())},
        }

    def with_alert(self, alert: Alert) -> State:
        return replace(self, alerts={**self.alerts, alert.key: alert})

    def with_claim(self, key: str, claim: Claim | None) -> State:
        claims = dict(self.claims)
        if claim is None:
            claims.pop(key, None)
        else:
            claims[key] = claim
        return replace(self, claims=claims)

    def without_alerts(self, keys: set[str]) -> State:
        return replace(self, alerts={k: a for k, a in self.alerts.items() if k not in keys},
                       claims={k: c for k, c in self.claims.items() if k not in keys})


def _time(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise StateError(f"{value!r} is not a unix time")
    return float(value)


def _time_or_none(value: Any) -> float | None:
    return None if value is None else _time(value)


def parse(text: str | bytes) -> State:
    """The state in ``text``; raises StateError when it cannot be used at all.

    An alert or claim that is malformed on its own is dropped with a warning; the others stay.
    """
    try:
        raw = json.loads(text)
    except ValueError as err:
        raise StateError(f"not JSON ({err})") from None
    if not isinstance(raw, dict):
        raise StateError("not a JSON object")
    if raw.get("version") != VERSION:
        raise StateError(f"version {raw.get('version')!r}, this alerter knows version {VERSION}")
    alerts_raw = raw.get("alerts", {})
    claims_raw = raw.get("claims", {})
    if not isinstance(alerts_raw, dict) or not isinstance(claims_raw, dict):
        raise StateError("alerts or claims is not a JSON object")
    alerts: dict[str, Alert] = {}
    for key, value in alerts_raw.items():
        try:
            alert = Alert.from_json(value)
        except StateError as err:
            log.warning("dropped an unusable alert from the state: %s", err,
                        extra={"alert_key": str(key)[:200]})
            continue
        alerts[alert.key] = alert
    claims: dict[str, Claim] = {}
    for key, value in claims_raw.items():
        try:
            claims[str(key)] = Claim.from_json(value)
        except StateError as err:
            log.warning("dropped an unusable claim from the state: %s", err,
                        extra={"alert_key": str(key)[:200]})
    try:
        updated = _time(raw.get("updated", 0.0))
    except StateError:
        updated = 0.0
    return State(updated, alerts, claims)


def dumps(state: State) -> str:
    """The state as compact JSON with sorted keys (stable, so unchanged state diffs empty)."""
    return json.dumps(state.to_json(), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False)


# -- readers for the dashboard -----------------------------------------------------------------

def load_state_file(path: str) -> dict[str, Any] | None:
    """The state in the file at ``path`` as a dict, or None (with a warning) when unusable."""
    try:
        with open(path, "rb") as f:
            text = f.read()
    except FileNotFoundError:
        log.warning("no alert state yet: %s does not exist", path, extra={"state_file": path})
        return None
    except OSError as err:
        log.warning("cannot read the alert state %s: %s", path, err.strerror,
                    extra={"state_file": path})
        return None
    try:
        return parse(text).to_json()
    except StateError as err:
        log.warning("the alert state %s is unusable: %s", path, err, extra={"state_file": path})
        return None


def load_state_config_map(kube: Any, namespace: str, name: str) -> dict[str, Any] | None:
    """The state in ConfigMap ``namespace/name`` (key ``state.json``) as a dict, or None.

    ``kube`` is a :class:`sidecar.kube.Kube`. None with a warning when the ConfigMap or its key
    is missing, the state is unusable, or the API refuses (e.g. 403).
    """
    from sidecar.kube import KubeError

    where = {"namespace": namespace, "config_map": name}
    try:
        found = kube.read_config_map(namespace, name)
    except KubeError as err:
        log.warning("cannot read the alert state: %s", err, extra=where)
        return None
    if found is None or STATE_KEY not in found[0]:
        log.warning("no alert state yet in ConfigMap %s/%s", namespace, name, extra=where)
        return None
    try:
        return parse(found[0][STATE_KEY]).to_json()
    except StateError as err:
        log.warning("the alert state in ConfigMap %s/%s is unusable: %s", namespace, name, err,
                    extra=where)
        return None


# -- stores for the alerter ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Loaded:
    """The state as read, and the version to hand back to ``save`` (compare-and-swap)."""

    state: State
    version: Any


class Store(Protocol):
    """Where the state lives. ``save`` raises StateConflict when ``version`` is not current."""

    where: str

    def load(self) -> Loaded: ...

    def save(self, state: State, version: Any) -> Any: ...


def _fresh(where: str, why: str, **extra: Any) -> State:
    log.warning("starting from a fresh alert state: %s", why, extra={"state": where, **extra})
    return State()


def _parse_or_fresh(text: str | bytes, where: str) -> State:
    try:
        return parse(text)
    except StateError as err:
        return _fresh(where, f"the stored state is unusable: {err}")


class MemoryStore:
    """State in this process only (``--loop`` without a state file or ConfigMap)."""

    where = "memory"

    def __init__(self) -> None:
        self._text: str | None = None
        self._version = 0

    def load(self) -> Loaded:
        state = State() if self._text is None else parse(self._text)
        return Loaded(state, self._version)

    def save(self, state: State, version: Any) -> Any:
        if version != self._version:
            raise StateConflict("the state changed since it was read")
        self._text = dumps(state)
        self._version += 1
        return self._version


class FileStore:
    """State in a JSON file. ``save`` is atomic (rename) and a compare-and-swap on the content.

    The version is the SHA-256 of the bytes read (None: no file). ``save`` holds an ``flock`` on
    ``<path>.lock`` while it checks that the file is still what was read and replaces it, so two
    alerters sharing a file behave like two sharing a ConfigMap.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.where = f"file {path}"

    def _read(self) -> bytes | None:
        try:
            with open(self.path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def load(self) -> Loaded:
        try:
            raw = self._read()
        except OSError as err:
            return Loaded(_fresh(self.where, f"cannot read it: {err.strerror}"), "unreadable")
        if raw is None:
            log.info("no alert state file yet; starting fresh", extra={"state": self.where})
            return Loaded(State(), None)
        return Loaded(_parse_or_fresh(raw, self.where), hashlib.sha256(raw).hexdigest())

    def save(self, state: State, version: Any) -> Any:
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        data = dumps(state).encode()
        lock_fd = os.open(self.path + ".lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            try:
                current = self._read()
            except OSError:
                current = b""
            now = None if current is None else hashlib.sha256(current).hexdigest()
            if version != "unreadable" and now != version:
                raise StateConflict(f"{self.path} changed since it was read")
            fd, tmp = tempfile.mkstemp(prefix=".state-", dir=folder)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        finally:
            os.close(lock_fd)  # releases the flock
        return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class _CMVersion:
    resource_version: str
    other: dict[str, str]  # keys of the ConfigMap besides state.json, kept as they are


class ConfigMapStore:
    """State under ``state.json`` of a ConfigMap; ``save`` replaces it at the resourceVersion read.

    ``kube`` is a :class:`sidecar.kube.Kube`. A missing ConfigMap is created on the first save
    (the chart creates it empty, because its Role cannot grant ``create`` for one name).
    """

    def __init__(self, kube: Any, namespace: str, name: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.where = f"ConfigMap {namespace}/{name}"

    def load(self) -> Loaded:
        found = self.kube.read_config_map(self.namespace, self.name)
        if found is None:
            log.info("no alert state ConfigMap yet; it will be created",
                     extra={"state": self.where})
            return Loaded(State(), None)
        data, resource_version = found
        other = {k: v for k, v in data.items() if k != STATE_KEY}
        version = _CMVersion(resource_version, other)
        if STATE_KEY not in data:
            log.info("the alert state ConfigMap is empty; starting fresh",
                     extra={"state": self.where})
            return Loaded(State(), version)
        return Loaded(_parse_or_fresh(data[STATE_KEY], self.where), version)

    def save(self, state: State, version: Any) -> Any:
        from sidecar.kube import KubeConflict

        try:
            if version is None:
                rv = self.kube.create_config_map(self.namespace, self.name,
                                                 {STATE_KEY: dumps(state)}, LABELS)
                return _CMVersion(rv, {})
            data = {**version.other, STATE_KEY: dumps(state)}
            rv = self.kube.replace_config_map(self.namespace, self.name, data,
                                              version.resource_version)
            return _CMVersion(rv, version.other)
        except KubeConflict as err:
            raise StateConflict(str(err)) from err


def now() -> float:
    """The wall clock, unix seconds (the state's times are unix times)."""
    return time.time()
