"""The JSON documents the sidecar serves, as one typed model, and the one tolerant reader of them.

The exposition (:mod:`sidecar.exposition`) builds these documents; the dashboard and the alerter
read them back from every pod with the functions below, which never trust what a pod sends
(numbers finite or None, text cut to a length, maps cut to a count). The OpenAPI description
(``sidecar/openapi/sidecar.json``) is checked against this model by ``tests/test_documents.py``:
:func:`schema` derives each document's structure from the classes here.

Words (see the glossary in the README's layout section): a *report* is what a reporter pushes; the
*snapshot document* is ``/api/v1/snapshot``, the per-window figures the sidecar serves.
"""

from __future__ import annotations

import math
import types
import typing
from typing import Any, Literal, NotRequired, TypedDict, Union, get_args, get_origin

__all__ = [
    "ALL",
    "HEALTH_STATES",
    "MAX_TEXT",
    "WINDOWS",
    "Error",
    "Figures",
    "Fine",
    "Health",
    "History",
    "LastError",
    "Livez",
    "Point",
    "Ready",
    "RpcFigures",
    "Snapshot",
    "Source",
    "Window",
    "counts",
    "integer",
    "number",
    "schema",
    "text",
]

# The windows of the snapshot document, by name, in seconds; "all" (since the sidecar started)
# comes besides them.
WINDOWS: dict[str, float] = {"1m": 60.0, "5m": 300.0, "1h": 3600.0}
ALL = "all"
# What a sidecar says of the Oracle's health: a reporter's three states, and "unknown" when no
# process has reported (yet, or any more).
HealthState = Literal["healthy", "degraded", "down", "unknown"]
HEALTH_STATES: tuple[str, ...] = get_args(HealthState)
ReportedState = Literal["healthy", "degraded", "down"]
RpcType = Literal["unary", "client_stream", "server_stream", "bidi_stream"]

MAX_TEXT = 300  # characters a reader keeps of any string a pod sends
MAX_ENTRIES = 50  # entries a reader keeps of any {name: value} map a pod sends


# -- the documents --------------------------------------------------------------------------------

class Error(TypedDict):
    """Any 4xx/5xx answer (:mod:`sidecar.web`)."""

    error: str
    status: int
    path: str
    endpoints: NotRequired[list[str]]  # 404 only: the routes there are


class Source(TypedDict):
    """One reporting process, as ``/health`` lists it."""

    id: str
    pid: int
    service: str
    version: str
    started: float  # unix time the process started
    seq: int
    status: ReportedState
    checks: dict[str, str]
    fresh: bool
    last_push_age_seconds: float
    dropped: int
    send_errors: int


class Health(TypedDict):
    """``/health``, and the ``health`` of the snapshot document."""

    status: HealthState
    reason: str
    ready: bool
    ready_reason: str
    version: str  # the sidecar's
    uptime_seconds: float
    service: str | None
    service_version: str | None
    service_uptime_seconds: float | None
    checks: dict[str, str]
    last_push_age_seconds: float | None
    sources: list[Source]


class LastError(TypedDict):
    code: str
    time: float


class Fine(TypedDict):
    """A window's sparse fine histogram (:mod:`sidecar.fine`): runs ``[first index, count, ...]``
    of fine-bucket counts, mergeable across sidecars. Null where the fine counts do not account
    for every call (the percentiles then come from the classic buckets)."""

    schema: Literal[1]
    runs: list[list[int]]


class Figures(TypedDict):
    """The figures of a set of calls over a window (one RPC, or all of them together)."""

    count: int
    errors: int
    error_rate_percent: float
    avg_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    rate_per_second: float
    started: int  # calls begun in the window (a count, unlike a source's ``started``)
    codes: dict[str, int]
    exceptions: dict[str, int]
    last_error: LastError | None
    fine: Fine | None


class RpcFigures(Figures):
    """The figures of one RPC method."""

    service: str
    method: str
    type: RpcType


class Window(TypedDict):
    seconds: float | None  # None for "all"
    covered_seconds: float
    totals: Figures
    rpcs: list[RpcFigures]


Windows = TypedDict("Windows", {"1m": Window, "5m": Window, "1h": Window, "all": Window})


class ErrorCounts(TypedDict):
    by_rpc: dict[str, dict[str, int]]
    by_type: dict[str, int]


class Snapshot(TypedDict):
    """``/api/v1/snapshot``: per-RPC figures for every window, and health."""

    version: str
    time: float
    uptime_seconds: float
    buckets: list[float]
    health: Health
    windows: Windows
    errors: ErrorCounts


class Point(TypedDict):
    time: float
    seconds: float
    count: int
    errors: int
    rate_per_second: float
    error_rate_percent: float
    p95_ms: float | None
    max_ms: float | None
    fine: Fine | None


class History(TypedDict):
    """``/api/v1/history``: one point per interval over the last hour."""

    rpc: str | None
    points: list[Point]
    buckets: list[float]  # the classic bounds the fine histograms refine


class Ready(TypedDict):
    ready: bool
    status: HealthState
    reason: str


class Livez(TypedDict):
    alive: bool
    version: NotRequired[str]
    reason: NotRequired[str]


# The documents the OpenAPI description names (components/schemas), each checked against it.
COMPONENTS: tuple[type, ...] = (Error, Source, Health, Figures, RpcFigures, Window, Snapshot,
                                Point, History, Ready, Livez, Fine)
_NULLABLE = (Fine,)  # components that are null where they are used, said once in the component


# -- the tolerant reader -----------------------------------------------------------------------

def number(value: Any) -> float | None:
    """A finite number, or None (bools, strings, NaN and infinities are not figures)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def integer(value: Any) -> int | None:
    """A finite number as a whole number, or None."""
    found = number(value)
    return None if found is None else int(found)


def text(value: Any, limit: int = MAX_TEXT) -> str | None:
    """Text cut to ``limit`` characters (the last one an ellipsis); numbers become text,
    anything else None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    return value if len(value) <= limit else value[: limit - 1] + "…"


def counts(value: Any, limit: int = MAX_ENTRIES) -> dict[str, int]:
    """A ``{name: count}`` map such as ``codes`` or ``exceptions``, at most ``limit`` entries;
    entries whose count is not a number are left out, names that are not text become ``?``."""
    if not isinstance(value, dict):
        return {}
    out: dict[str, int] = {}
    for key, n in list(value.items())[:limit]:
        found = integer(n)
        if found is not None:
            out[text(key) or "?"] = found
    return out


# -- the structure of the model, in OpenAPI's words -------------------------------------------

_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}


def schema(document: type) -> dict[str, Any]:
    """The structure of ``document`` as an OpenAPI 3.0 schema object: types, nullability,
    enums, required keys and references to the other components (no descriptions, no bounds).
    """
    hints = typing.get_type_hints(document, include_extras=True)
    required = sorted(n for n, hint in hints.items() if get_origin(hint) is not NotRequired)
    out = {"type": "object",
           "properties": {name: _schema_of(hint) for name, hint in hints.items()},
           "required": required, "additionalProperties": False}
    return {**out, "nullable": True} if document in _NULLABLE else out


def _schema_of(hint: Any) -> dict[str, Any]:
    origin = get_origin(hint)
    if origin is NotRequired:
        return _schema_of(get_args(hint)[0])
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) == 1 and args[0] in _NULLABLE:
            return _schema_of(args[0])
        inner = _schema_of(args[0]) if len(args) == 1 else {"anyOf": [_schema_of(a)
                                                                       for a in args]}
        return {**inner, "nullable": True}
    if origin is Literal:
        values = list(get_args(hint))
        return {"type": _SCALARS[type(values[0])], "enum": values}
    if origin is list:
        return {"type": "array", "items": _schema_of(get_args(hint)[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema_of(get_args(hint)[1])}
    if hint in COMPONENTS:
        return {"$ref": f"#/components/schemas/{hint.__name__}"}
    if typing.is_typeddict(hint):
        return schema(hint)
    return {"type": _SCALARS[hint]}
