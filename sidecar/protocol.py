"""The push protocol between the reporter and the sidecar: the only place that knows the wire.

One UTF-8 JSON object per Unix datagram (``AF_UNIX``/``SOCK_DGRAM``), at most 64 KiB. Each
message is a *cumulative* snapshot of one reporting process since it started, so a lost message
costs nothing: the next one carries the same totals and more. docs/protocol.md is the spec.

Standard library only: the reporter imports this inside the gRPC process.
"""

from __future__ import annotations

import json
import math
from array import array
from dataclasses import dataclass, field
from typing import Any

from sidecar import fine as fine_histogram

__all__ = [
    "CODES",
    "CODE_ALIASES",
    "DEFAULT_BUCKETS",
    "HEALTH_STATES",
    "MAX_DATAGRAM",
    "REJECT_REASONS",
    "RPC_TYPES",
    "VERSION",
    "Message",
    "ProtocolError",
    "Row",
    "clean_name",
    "clean_text",
    "code_name",
    "decode",
    "encode",
]

VERSION = 1
MAX_DATAGRAM = 64 * 1024
MAX_ROWS = 512  # rows in one datagram; the encoder never puts more, so more is misbehaviour
MAX_NAME = 256  # characters in a service, method, exception or check name
MAX_TEXT = 1024  # characters in a health check's text
MAX_KEYS = 64  # distinct exception types or health checks in one row / message
MAX_PARTS = 64

# Upper bounds in seconds; +Inf is implied. They reach past 10 s for the P95 > 10 s alert.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
)
# gRPC status codes by number, spelt as Go's codes.Code.String() writes them: the spelling
# go-grpc-prometheus exports and the public dashboards and alert rules match. Everything after
# the decoder (store, JSON API, /metrics, alerter, dashboard, chart) uses these names.
CODES: tuple[str, ...] = (
    "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
    "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
    "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
    "Unauthenticated",
)
# The gRPC spec's upper-case names (grpc.StatusCode's, py-grpc-prometheus's), same order. The
# wire accepts them too; the decoder turns them into Go's names. The one alias map.
CODE_ALIASES: dict[str, str] = dict(zip((
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
), CODES, strict=True))
_CODE_NAMES: dict[str, str] = {**CODE_ALIASES, **{c: c for c in CODES}}
RPC_TYPES = ("unary", "client_stream", "server_stream", "bidi_stream")
HEALTH_STATES = ("healthy", "degraded", "down")

# Every reason a datagram can be rejected for; the sidecar exports each one, at zero from start.
REJECT_REASONS = (
    "bad_json",  # not UTF-8 JSON, or not an object
    "bad_version",  # "v" missing or not 1
    "missing_field",  # a required field is absent
    "bad_field",  # a field has the wrong type, range or form
    "oversized",  # larger than MAX_DATAGRAM
    "too_many_series",  # more rows or keys than the limits allow
    "counter_decreased",  # a cumulative counter went down within one source
    "not_newer",  # sequence number not newer than the one already applied
    "bucket_mismatch",  # bucket bounds differ from the ones this sidecar already exports
)


class ProtocolError(ValueError):
    """A rejected message: ``reason`` is one of REJECT_REASONS, ``detail`` says what exactly."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def code_name(name: str) -> str | None:
    """Go's name of a gRPC code given as Go spells it or as the spec does; None if neither."""
    return _CODE_NAMES.get(name) if isinstance(name, str) else None


@dataclass(frozen=True, slots=True)
class Row:
    """Cumulative totals of one RPC method in one process."""

    service: str
    method: str
    type: str
    started: int
    codes: dict[str, int]
    hist: tuple[int, ...]  # per bucket, not cumulative; the last one is +Inf
    sum: float
    max: float
    exceptions: dict[str, int] = field(default_factory=dict)
    last_error: tuple[str, float] | None = None  # (code, unix time)
    msg_received: int = 0
    msg_sent: int = 0
    fine: array | None = None  # sparse fine counts (sidecar.fine); None when not sent

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.service, self.method, self.type)

    @property
    def handled(self) -> int:
        return sum(self.codes.values())


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded datagram (or one part of a split snapshot)."""

    source: str
    pid: int
    started: float
    service: str
    version: str
    seq: int
    time: float
    part: int
    parts: int
    buckets: tuple[float, ...]
    rows: tuple[Row, ...]
    health: str
    checks: dict[str, str]
    dropped: int
    send_errors: int
    overflow: int
    final: bool


# ---------------------------------------------------------------------------------------------
# Encoding (reporter side)

def clean_name(text: str, fallback: str = "unknown") -> str:
    """``text`` as a name the decoder accepts: at most MAX_NAME characters, all printable.

    Control, format and unpaired surrogate characters become U+FFFD. A sender must never put a
    name in a message that the sidecar would reject, because one bad name would get the whole
    cumulative snapshot rejected, push after push.
    """
    if 0 < len(text) <= MAX_NAME and text.isprintable():
        return text
    cleaned = "".join(c if c.isprintable() else "\ufffd" for c in text[:MAX_NAME])
    return cleaned or fallback


def clean_text(text: str) -> str:
    """``text`` as a health check text the decoder accepts: valid UTF-8, at most MAX_TEXT."""
    return text[:MAX_TEXT].encode("utf-8", "replace").decode("utf-8")


def encode(
    *,
    source: dict[str, Any],
    seq: int,
    time: float,
    buckets: tuple[float, ...],
    rows: list[dict[str, Any]],
    health: str,
    checks: dict[str, str],
    reporter: dict[str, int],
    final: bool = False,
    limit: int = MAX_DATAGRAM,
) -> list[bytes]:
    """Serialise one snapshot into as many datagrams as it takes to keep each under ``limit``.

    ``rows`` are dicts with the keys of :class:`Row` (``hist`` a list). Every part carries the
    source, sequence number, health and bucket bounds; the rows are spread across the parts.
    """
    head: dict[str, Any] = {
        "v": VERSION,
        "source": source,
        "seq": seq,
        "time": round(time, 6),
        "buckets": list(buckets),
        "health": {"status": health, "checks": checks},
        "reporter": reporter,
    }
    if final:
        head["final"] = True

    def dump(part: int, parts: int, chunk: list[dict[str, Any]]) -> bytes:
        body = dict(head, part=[part, parts], rpcs=chunk)
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()

    whole = dump(0, 1, rows)
    if (len(whole) <= limit and len(rows) <= MAX_ROWS) or len(rows) <= 1:
        return [whole]
    # Greedy split by encoded row size; the header is the same in every part.
    overhead = len(dump(0, MAX_PARTS, [])) + 8
    chunks: list[list[dict[str, Any]]] = [[]]
    size = overhead
    for row in rows:
        row_size = len(json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode()) + 1
        if chunks[-1] and (size + row_size > limit or len(chunks[-1]) >= MAX_ROWS):
            chunks.append([])
            size = overhead
        chunks[-1].append(row)
        size += row_size
    return [dump(i, len(chunks), chunk) for i, chunk in enumerate(chunks)]


# ---------------------------------------------------------------------------------------------
# Decoding and validation (sidecar side)

def decode(data: bytes) -> Message:
    """Parse and validate one datagram; raises :class:`ProtocolError` with a precise reason."""
    if len(data) > MAX_DATAGRAM:
        raise ProtocolError("oversized", f"{len(data)} bytes, the limit is {MAX_DATAGRAM}")
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:  # deep nesting: Recursion
        raise ProtocolError("bad_json", f"not UTF-8 JSON: {err}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_json", f"a message is a JSON object, not {_kind(obj)}")
    if "v" not in obj:
        raise ProtocolError("bad_version", 'no "v" field; this sidecar speaks version 1')
    if obj["v"] != VERSION or isinstance(obj["v"], bool):
        raise ProtocolError("bad_version", f"version {obj['v']!r}; this sidecar speaks 1")

    src = _get(obj, "source", dict, "")
    source = _name(_get(src, "id", str, "source."), "source.id")
    pid = _count(_get(src, "pid", int, "source."), "source.pid")
    started = _number(_get(src, "started", (int, float), "source."), "source.started")
    service = _name(src.get("service", ""), "source.service", empty=True)
    version = _name(src.get("version", ""), "source.version", empty=True)

    seq = _count(_get(obj, "seq", int, ""), "seq")
    time = _number(_get(obj, "time", (int, float), ""), "time")
    part, parts = _part(obj.get("part", [0, 1]))
    buckets = _buckets(_get(obj, "buckets", list, ""))

    health_obj = _get(obj, "health", dict, "")
    health = _get(health_obj, "status", str, "health.")
    if health not in HEALTH_STATES:
        raise ProtocolError("bad_field", f"health.status {health!r} is not one of "
                                         f"{', '.join(HEALTH_STATES)}")
    checks = _text_map(health_obj.get("checks", {}), "health.checks")

    rep = obj.get("reporter", {})
    if not isinstance(rep, dict):
        raise ProtocolError("bad_field", f"reporter must be an object, not {_kind(rep)}")
    dropped = _count(rep.get("dropped", 0), "reporter.dropped")
    send_errors = _count(rep.get("send_errors", 0), "reporter.send_errors")
    overflow = _count(rep.get("overflow", 0), "reporter.overflow")

    raw_rows = _get(obj, "rpcs", list, "")
    if len(raw_rows) > MAX_ROWS:
        raise ProtocolError("too_many_series", f"{len(raw_rows)} rpcs in one message, "
                                               f"the limit is {MAX_ROWS}")
    rows = tuple(_row(r, i, buckets) for i, r in enumerate(raw_rows))
    final = obj.get("final", False)
    if not isinstance(final, bool):
        raise ProtocolError("bad_field", f"final must be true or false, not {_kind(final)}")
    return Message(source, pid, float(started), service, version, seq, float(time), part, parts,
                   buckets, rows, health, checks, dropped, send_errors, overflow, final)


def _row(obj: Any, index: int, buckets: tuple[float, ...]) -> Row:
    where = f"rpcs[{index}]."
    n_buckets = len(buckets) + 1
    if not isinstance(obj, dict):
        raise ProtocolError("bad_field", f"rpcs[{index}] must be an object, not {_kind(obj)}")
    service = _name(_get(obj, "service", str, where), where + "service")
    method = _name(_get(obj, "method", str, where), where + "method")
    rpc_type = obj.get("type", "unary")
    if rpc_type not in RPC_TYPES:
        raise ProtocolError("bad_field", f"{where}type {rpc_type!r} is not one of "
                                         f"{', '.join(RPC_TYPES)}")
    started = _count(_get(obj, "started", int, where), where + "started")
    codes = _codes(_get(obj, "codes", dict, where), where + "codes")
    hist_raw = _get(obj, "hist", list, where)
    if len(hist_raw) != n_buckets:
        raise ProtocolError("bad_field", f"{where}hist has {len(hist_raw)} counts; the bucket "
                                         f"bounds need {n_buckets} (one more for +Inf)")
    hist = tuple(_count(c, f"{where}hist[{i}]") for i, c in enumerate(hist_raw))
    total = _number(_get(obj, "sum", (int, float), where), where + "sum")
    largest = _number(obj.get("max", 0.0), where + "max")
    exceptions = _count_map(obj.get("exceptions", {}), where + "exceptions")
    last = obj.get("last_error")
    last_error = None
    if last is not None:
        code = code_name(last[0]) if isinstance(last, list) and len(last) == 2 else None
        if code is None or not isinstance(last[1], (int, float)) or isinstance(last[1], bool):
            raise ProtocolError("bad_field", f"{where}last_error must be [code name, unix time]")
        last_error = (code, float(last[1]))
    # Messages received and sent; a sender that does not count them is taken to be unary:
    # one request per started call, one response per OK.
    msg_received = _count(obj.get("msg_received", started), where + "msg_received")
    msg_sent = _count(obj.get("msg_sent", codes.get("OK", 0)), where + "msg_sent")
    fine = _fine(obj.get("fine"), where + "fine", buckets, hist)
    return Row(service, method, rpc_type, started, codes, hist, float(total), float(largest),
               exceptions, last_error, msg_received, msg_sent, fine)


def _fine(value: Any, where: str, buckets: tuple[float, ...], hist: tuple[int, ...]
          ) -> array | None:
    """The optional fine histogram of a row, checked against its classic counts.

    An unknown schema (a newer reporter) is ignored, so its classic counts still count.
    """
    if value is None:
        return None
    if not isinstance(value, dict) or isinstance(value.get("schema"), bool) \
            or not isinstance(value.get("schema"), int):
        raise ProtocolError("bad_field", f'{where} must be {{"schema": 1, "runs": [...]}}')
    fine_bounds = fine_histogram.bounds(buckets, value["schema"])
    if fine_bounds is None:
        return None
    try:
        pairs = fine_histogram.from_runs(_get(value, "runs", list, where + "."),
                                         len(fine_bounds) + 1, where + ".runs")
    except ValueError as err:
        raise ProtocolError("bad_field", str(err)) from None
    folded = fine_histogram.fold_classic(pairs, buckets)
    if tuple(folded) != hist:
        raise ProtocolError("bad_field", f"{where} counts add up to {folded} per classic "
                                         f"bucket, but hist says {list(hist)}")
    return pairs


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def _get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise ProtocolError("missing_field", f"{where}{key} is required")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        names = {dict: "an object", list: "an array", str: "a string", int: "an integer"}
        want = "a number" if isinstance(kind, tuple) else names.get(kind, kind.__name__)
        raise ProtocolError("bad_field", f"{where}{key} must be {want}, not {_kind(value)}")
    return value


def _count(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError("bad_field", f"{where} must be an integer, not {_kind(value)}")
    if value < 0:
        raise ProtocolError("bad_field", f"{where} is {value}; counters are never negative")
    return value


def _number(value: Any, where: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ProtocolError("bad_field", f"{where} must be a number, not {_kind(value)}")
    if not math.isfinite(value) or value < 0:
        raise ProtocolError("bad_field", f"{where} is {value}; it must be finite and >= 0")
    return float(value)


def _name(value: Any, where: str, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ProtocolError("bad_field", f"{where} must be a string, not {_kind(value)}")
    if (not value and not empty) or len(value) > MAX_NAME:
        raise ProtocolError("bad_field", f"{where} must have 1 to {MAX_NAME} characters")
    if not value.isprintable():
        raise ProtocolError("bad_field", f"{where} {value[:40]!r} has control characters")
    return value


def _bounded_map(obj: Any, where: str) -> dict[Any, Any]:
    """An object of at most MAX_KEYS keys (exception types, codes, checks)."""
    if not isinstance(obj, dict):
        raise ProtocolError("bad_field", f"{where} must be an object, not {_kind(obj)}")
    if len(obj) > MAX_KEYS:
        raise ProtocolError("too_many_series", f"{where} has {len(obj)} keys, "
                                               f"the limit is {MAX_KEYS}")
    return obj


def _count_map(obj: Any, where: str) -> dict[str, int]:
    out = {}
    for key, value in _bounded_map(obj, where).items():
        out[_name(key, f"{where} key")] = _count(value, f"{where}.{key[:40]}")
    return out


def _codes(obj: Any, where: str) -> dict[str, int]:
    """Counts per code, keyed by Go's names; a spec spelling of the same code is added to it."""
    out: dict[str, int] = {}
    for key, value in _count_map(obj, where).items():
        code = code_name(key)
        if code is None:
            raise ProtocolError("bad_field", f"{where} key {key[:40]!r} is not a gRPC code name "
                                             f"(Go's, e.g. NotFound, or the spec's, NOT_FOUND)")
        out[code] = out.get(code, 0) + value
    return out


def _text_map(obj: Any, where: str) -> dict[str, str]:
    out = {}
    for key, value in _bounded_map(obj, where).items():
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise ProtocolError("bad_field", f"{where}.{key[:40]} must be a string of at most "
                                             f"{MAX_TEXT} characters")
        out[_name(key, f"{where} key")] = value
    return out


def _part(value: Any) -> tuple[int, int]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            or not 0 <= value[0] < value[1] <= MAX_PARTS):
        raise ProtocolError("bad_field", f"part must be [index, count] with 0 <= index < count "
                                         f"<= {MAX_PARTS}")
    return value[0], value[1]


def _buckets(values: list[Any]) -> tuple[float, ...]:
    if not 1 <= len(values) <= 64:
        raise ProtocolError("bad_field", "buckets must list 1 to 64 upper bounds")
    out = []
    for i, v in enumerate(values):
        out.append(_number(v, f"buckets[{i}]"))
        if i and out[i] <= out[i - 1]:
            raise ProtocolError("bad_field", "buckets must be strictly increasing")
    return tuple(out)
