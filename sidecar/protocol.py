"""The push protocol between the reporter and the sidecar: the only place that knows the wire.

One UTF-8 JSON object per Unix datagram (``AF_UNIX``/``SOCK_DGRAM``), at most 64 KiB. Each
message is a *cumulative* snapshot of one reporting process since it started, so a lost message
costs nothing: the next one carries the same totals and more. docs/protocol.md is the spec.

Standard library only: the reporter imports this inside the gRPC process.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from array import array
from dataclasses import dataclass, field
from typing import Any

from sidecar import fine as fine_histogram
from sidecar.slices import Deadline, Slices, drive

__all__ = [
    "CODES",
    "CODE_ALIASES",
    "DEFAULT_BUCKETS",
    "DEFAULT_SOCKET",
    "HEALTH_STATES",
    "MAX_DATAGRAM",
    "REJECT_REASONS",
    "ROW_REJECT_REASONS",
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
    "encode_parts",
]

VERSION = 1
MAX_DATAGRAM = 64 * 1024
MAX_ROWS = 512  # rows in one datagram; the encoder never puts more, so more is misbehaviour
MAX_NAME = 256  # code points in a source id, service, method, version or check name
MAX_EXCEPTION = 128  # code points in an exception type's name (so a row fits one datagram)
MAX_TEXT = 1024  # code points in a health check's text
MAX_KEYS = 64  # distinct exception types in one row, or health checks in one message
MAX_PARTS = 64
MAX_BUCKETS = 64
MAX_INT = 2**53 - 1  # integers are JSON numbers: every language's double holds them exactly
HEALTH_BUDGET = 16 * 1024  # bytes of the encoded health object (sender's duty): part 0 fits

# Code points no name or text may hold: Unicode general categories Cc and Cs. Both sets are
# fixed by Unicode's stability policy, so every language and Unicode version agrees on them.
FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

# Upper bounds in seconds; +Inf is implied. They reach past 10 s for the P95 > 10 s alert.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
)
# Where the sidecar listens and the reporters send, unless ORACLE_METRICS_SOCKET says otherwise.
DEFAULT_SOCKET = "/var/run/oracle-sidecar/metrics.sock"
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
# Every reason one row of an accepted datagram can be skipped for (the rest is applied).
ROW_REJECT_REASONS = (
    "missing_field",  # a required row field is absent
    "bad_field",  # a row field has the wrong type, range or form
    "too_many_series",  # more exception types than MAX_KEYS
    "counter_decreased",  # one of the row's counters went down within its source
    "duplicate_row",  # a second row for one (service, method) in one datagram
    "type_changed",  # the method's type differs from the one its source reported
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


@dataclass(slots=True)  # not frozen: a frozen dataclass costs a setattr call per field
class Row:
    """Cumulative totals of one RPC method in one process (never changed once decoded)."""

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
    fine: array[int] | None = None  # sparse fine counts (sidecar.fine); None when not sent

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.service, self.method, self.type)

    @property
    def handled(self) -> int:
        return sum(self.codes.values())


@dataclass(slots=True)  # not frozen, as Row
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
    health: str | None  # None: not in this part; the source keeps the last one
    checks: dict[str, str] | None
    dropped: int | None  # None: not in this message; the source keeps the last count
    send_errors: int | None
    overflow: int | None
    final: bool
    rejected_rows: tuple[tuple[str, str], ...] = ()  # (reason, detail) of rows skipped


# ---------------------------------------------------------------------------------------------
# Encoding (reporter side)

def clean_name(text: str, fallback: str = "unknown", limit: int = MAX_NAME) -> str:
    """``text`` as a name the decoder accepts: 1 to ``limit`` code points, no Cc or Cs.

    Each forbidden code point becomes U+FFFD. A sender must never put a name in a message that
    the sidecar would reject, because every snapshot repeats it: the row would be lost for
    good. The sidecar repairs descriptive names (checks, exceptions) the same way.
    """
    if 0 < len(text) <= limit and not FORBIDDEN.search(text):
        return text
    return FORBIDDEN.sub("\ufffd", text[:limit]) or fallback


def clean_text(text: str) -> str:
    """``text`` as a health check text: at most MAX_TEXT code points, no Cc or Cs."""
    return FORBIDDEN.sub("\ufffd", text[:MAX_TEXT])


def encode(**snapshot: Any) -> list[bytes]:
    """Serialise one snapshot (the arguments of :func:`encode_parts`) into its datagrams.

    Raises ValueError when the rows need more than MAX_PARTS parts or a row fits no datagram
    (:func:`encode_parts` says which, for a sender that sends them in turns).
    """
    datagrams, rest, too_large = encode_parts(**snapshot)
    if rest or too_large:
        raise ValueError(f"{len(rest)} rows need more than {MAX_PARTS} parts, "
                         f"{len(too_large)} fit no datagram")
    return datagrams


def encode_parts(
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
) -> tuple[list[bytes], list[dict[str, Any]], list[dict[str, Any]]]:
    """(datagrams, rows left for the next snapshot, rows too large for any datagram).

    Every part carries the source, sequence number, bucket bounds, reporter counts and, on the
    last snapshot, ``final``; part 0 alone carries ``health`` (cut to HEALTH_BUDGET bytes).
    Rows are spread greedily over at most MAX_PARTS parts; those that do not fit are returned,
    to be sent first in the next snapshot (the sidecar keeps rows a message leaves out).
    """
    head: dict[str, Any] = {
        "v": VERSION,
        "source": source,
        "seq": seq,
        "time": round(time, 6),
        "buckets": list(buckets),
        "reporter": reporter,
    }
    if final:
        head["final"] = True
    first = dict(head, health={"status": health, "checks": _fit_checks(checks)})

    def dump(part: int, parts: int, chunk: list[dict[str, Any]]) -> bytes:
        body = dict(first if part == 0 else head, part=[part, parts], rpcs=chunk)
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()

    whole = dump(0, 1, rows)
    if len(whole) <= limit and len(rows) <= MAX_ROWS:
        return [whole], [], []
    # Greedy split by encoded row size; part 0's header (with health) is the largest.
    overhead = len(dump(0, MAX_PARTS, [])) + 8
    chunks: list[list[dict[str, Any]]] = [[]]
    size = overhead
    too_large = []
    rest: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        row_size = len(json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode()) + 1
        if overhead + row_size > limit:
            too_large.append(row)
            continue
        if chunks[-1] and (size + row_size > limit or len(chunks[-1]) >= MAX_ROWS):
            if len(chunks) == MAX_PARTS:
                rest = rows[i:]
                break
            chunks.append([])
            size = overhead
        chunks[-1].append(row)
        size += row_size
    return [dump(i, len(chunks), chunk) for i, chunk in enumerate(chunks)], rest, too_large


def _fit_checks(checks: dict[str, str]) -> dict[str, str]:
    """The checks, in order, as many as fit HEALTH_BUDGET bytes encoded; then a note."""
    out: dict[str, str] = {}
    size = 64  # {"status":"degraded","checks":{}} and the note's own room
    items = list(checks.items())[:MAX_KEYS]
    for i, (name, text) in enumerate(items):
        size += len(json.dumps({name: text}, ensure_ascii=False).encode())
        if size > HEALTH_BUDGET - 96 or (i == MAX_KEYS - 1 and len(checks) > MAX_KEYS):
            out["health_checks"] = f"{len(checks) - i} more checks not sent"
            break
        out[name] = text
    return out

# ---------------------------------------------------------------------------------------------
# Decoding and validation (sidecar side)
#
# Every check is written once, in the helpers below, and costs no more than a type test and a
# comparison while the value is valid: the text of an error is built only when there is one.
# Fields of a row are checked in `_row`; a row that fails is skipped on its own (its reason
# goes to Message.rejected_rows), a message field that fails rejects the datagram.

_INT_ONLY = {int}
_CODE_SET = frozenset(CODES)


def decode(data: bytes) -> Message:
    """Parse and validate one datagram; raises :class:`ProtocolError` with a precise reason.

    Rows that break a rule are left out of ``rows`` and listed in ``rejected_rows``.
    """
    return drive(decode_slices(data))


def decode_slices(data: bytes) -> Slices[Message]:
    """:func:`decode` in slices (:mod:`sidecar.slices`): it yields between rows whenever a
    slice's time is over, so that a receiver on an event loop can answer between them."""
    if len(data) > MAX_DATAGRAM:
        raise ProtocolError("oversized", f"{len(data)} bytes, the limit is {MAX_DATAGRAM}")
    deadline = Deadline()  # the first slice holds the parse, then as many rows as fit
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:  # deep nesting: Recursion
        raise ProtocolError("bad_json", f"not UTF-8 JSON: {err}") from None
    if type(obj) is not dict:
        raise ProtocolError("bad_json", f"a message is a JSON object, not {_kind(obj)}")
    if "v" not in obj:
        raise ProtocolError("bad_version", 'no "v" field; this sidecar speaks version 1')
    if obj["v"] != VERSION or type(obj["v"]) is bool:
        raise ProtocolError("bad_version", f"version {obj['v']!r}; this sidecar speaks 1")

    src = _get(obj, "source", dict, "")
    source = _name(_get(src, "id", str, "source."), "source.id")
    pid = _int(_need(src, "pid", "source."), "source.pid")
    started = _number(_get(src, "started", _NUMBER, "source."), "source.started")
    service = _repair(_string(src.get("service", ""), "source.service"), MAX_NAME)
    version = _repair(_string(src.get("version", ""), "source.version"), MAX_NAME)

    seq = _int(_need(obj, "seq", ""), "seq")
    time = _number(_get(obj, "time", _NUMBER, ""), "time")
    part, parts = _part(obj.get("part", [0, 1]))
    # JSON makes a boolean from the literal true or false and from nothing else: a text without
    # either holds none, and its integer arrays need no per-item type test.
    no_bools = b"true" not in data and b"false" not in data
    buckets = _buckets(_get(obj, "buckets", list, ""), no_bools)

    health: str | None = None
    checks: dict[str, str] | None = None
    if "health" in obj or part == 0:
        health_obj = _get(obj, "health", dict, "")
        health = _get(health_obj, "status", str, "health.")
        if health not in HEALTH_STATES:
            raise ProtocolError("bad_field", f"health.status {health!r} is not one of "
                                             f"{', '.join(HEALTH_STATES)}")
        checks = _checks(health_obj.get("checks", {}))

    rep = obj.get("reporter", {})
    if type(rep) is not dict:
        raise ProtocolError("bad_field", f"reporter must be an object, not {_kind(rep)}")
    dropped, send_errors, overflow = rep.get("dropped"), rep.get("send_errors"), \
        rep.get("overflow")  # None: absent, the source keeps its last count
    if dropped is not None:
        dropped = _int(dropped, "reporter.dropped")
    if send_errors is not None:
        send_errors = _int(send_errors, "reporter.send_errors")
    if overflow is not None:
        overflow = _int(overflow, "reporter.overflow")

    raw_rows = _get(obj, "rpcs", list, "")
    if len(raw_rows) > MAX_ROWS:
        raise ProtocolError("too_many_series", f"{len(raw_rows)} rpcs in one message, "
                                               f"the limit is {MAX_ROWS}")
    final = obj.get("final", False)
    if type(final) is not bool:
        raise ProtocolError("bad_field", f"final must be true or false, not {_kind(final)}")

    rows: list[Row] = []
    rejected: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for i, raw in enumerate(raw_rows):
        if not i % 32 and i and deadline.passed():
            yield
            deadline.reset()
        try:
            row = _row(raw, buckets, no_bools)
        except ProtocolError as err:
            rejected.append((err.reason, f"rpcs[{i}]{err.detail}"))
            continue
        name = (row.service, row.method)
        if name in seen:
            rejected.append(("duplicate_row", f"rpcs[{i}] repeats {row.service}/{row.method} "
                                              f"in one message; the first one counts"))
            continue
        seen.add(name)
        rows.append(row)
    return Message(source, pid, started, service, version, seq, time, part, parts, buckets,
                   tuple(rows), health, checks, dropped, send_errors, overflow, final,
                   tuple(rejected))


def _row(obj: Any, buckets: tuple[float, ...], no_bools: bool = False) -> Row:
    """One row of ``rpcs``; a ProtocolError's detail starts with the field (after ``rpcs[i]``).

    A valid row costs a few C-level calls; any other is checked field by field, in the order
    below, so that the first problem is the one reported.
    """
    row = _valid_row(obj, buckets, no_bools) if type(obj) is dict else None
    return row if row is not None else _row_checked(obj, buckets)


_NO_KEY: Any = object()


def _valid_row(obj: Any, buckets: tuple[float, ...], no_bools: bool) -> Row | None:
    """:func:`_row` of a row whose fields break no rule and need no conversion; None for any
    other (7.0 for 7, a time as an integer: the careful path converts them or says what is
    wrong).

    Only the fine histogram, the last field, may raise here: every field before it is valid.
    """
    get = obj.get
    service, method, rpc_type = get("service"), get("method"), get("type", "unary")
    started, codes, hist, total = get("started"), get("codes"), get("hist"), get("sum")
    largest, exceptions, last = get("max", 0.0), get("exceptions", _NO_KEY), get("last_error")
    received, sent = get("msg_received", started), get("msg_sent", _NO_KEY)
    if exceptions is _NO_KEY:
        exceptions = {}
    if not (type(service) is str and type(method) is str
            and 0 < len(service) <= MAX_NAME and 0 < len(method) <= MAX_NAME
            and (service.isprintable() or not FORBIDDEN.search(service))
            and (method.isprintable() or not FORBIDDEN.search(method))
            and rpc_type in RPC_TYPES
            and type(codes) is dict
            and type(hist) is list and len(hist) == len(buckets) + 1
            and ((type(total) is float and 0 <= total < math.inf)
                 or (type(total) is int and 0 <= total <= MAX_INT))
            and ((type(largest) is float and 0 <= largest < math.inf)
                 or (type(largest) is int and 0 <= largest <= MAX_INT))
            and type(exceptions) is dict and len(exceptions) <= MAX_KEYS):
        return None
    ints = [started, received, *codes.values(), *hist, *exceptions.values()]
    if sent is not _NO_KEY:
        ints.append(sent)
    if not _naturals(ints, no_bools) or sum(ints) > MAX_INT:
        return None  # (a sum past MAX_INT, never seen, is left to the careful path too)
    if not codes.keys() <= _CODE_SET:  # the spec's spellings: Go's names, summed
        if not codes.keys() <= _CODE_NAMES.keys():
            return None
        codes = _codes(codes)
    if last is not None:
        when = last[1] if type(last) is list and len(last) == 2 else None
        if (type(when) is not float or not math.isfinite(when) or type(last[0]) is not str
                or last[0] not in _CODE_NAMES):
            return None
        last = (_CODE_NAMES[last[0]], when)
    if exceptions and not exceptions.keys() <= _GOOD_EXCEPTIONS:
        exceptions = _exceptions(exceptions)  # names to repair or to learn; never raises here
    hist = tuple(hist)
    fine = get("fine")
    if fine is not None:
        fine = _fine(fine, ".fine", buckets, hist, no_bools)
    return Row(service, method, rpc_type, started, codes, hist, float(total), float(largest),
               exceptions, last, received, codes.get("OK", 0) if sent is _NO_KEY else sent,
               fine)


def _naturals(values: list[Any], no_bools: bool) -> bool:
    """True when every value is an integer from 0 to 2**64 - 1 written as one in JSON (not
    7.0, not ``true``); False otherwise, not an error.

    One C-level conversion to unsigned 64-bit items tests type and sign at once. It takes
    ``True`` for 1, so unless ``no_bools`` (the JSON text held neither ``true`` nor ``false``)
    the types are looked at too.
    """
    try:
        array("Q", values)
    except (TypeError, OverflowError):
        return False
    return no_bools or set(map(type, values)) <= _INT_ONLY


def _row_checked(obj: Any, buckets: tuple[float, ...]) -> Row:
    """:func:`_row` field by field, converting 7.0 to 7, raising the exact error."""
    service, method, rpc_type, started, codes, hist, total = _core_checked(obj, len(buckets) + 1)
    largest = _number(obj["max"], ".max") if "max" in obj else 0.0
    exceptions = _exceptions(obj["exceptions"]) if "exceptions" in obj else {}
    last = obj.get("last_error")
    last_error = None
    if last is not None:
        code = code_name(last[0]) if type(last) is list and len(last) == 2 else None
        if code is None or type(last[1]) not in _NUMBER or not math.isfinite(last[1]):
            raise ProtocolError("bad_field", ".last_error must be [code name, unix time]")
        last_error = (code, float(last[1]))
    # Messages received and sent; a sender that does not count them is taken to be unary:
    # one request per started call, one response per OK.
    msg_received = _int(obj["msg_received"], ".msg_received") if "msg_received" in obj \
        else started
    msg_sent = _int(obj["msg_sent"], ".msg_sent") if "msg_sent" in obj else codes.get("OK", 0)
    fine = _fine(obj.get("fine"), ".fine", buckets, hist)
    return Row(service, method, rpc_type, started, codes, hist, total, largest, exceptions,
               last_error, msg_received, msg_sent, fine)


def _fine(value: Any, where: str, buckets: tuple[float, ...], hist: tuple[int, ...],
          no_bools: bool = False) -> array[int] | None:
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
        pairs, folded = fine_histogram.from_runs_folded(
            _get(value, "runs", list, where + "."), len(fine_bounds) + 1, buckets,
            where + ".runs", no_bools)
    except ValueError as err:
        raise ProtocolError("bad_field", str(err)) from None
    if tuple(folded) != hist:
        raise ProtocolError("bad_field", f"{where} counts add up to {folded} per classic "
                                         f"bucket, but hist says {list(hist)}")
    return pairs


def _plain(values: Any) -> bool:
    """True when every value is a JSON integer written as one, 0 to MAX_INT."""
    return set(map(type, values)) <= _INT_ONLY and (
        not values or (min(values) >= 0 and max(values) <= MAX_INT))


def _core_checked(obj: Any, n_hist: int) -> tuple[str, str, str, int, dict[str, int],
                                                  tuple[int, ...], float]:
    """The required fields of a row, one by one, converting 7.0 to 7, raising the exact error."""
    if type(obj) is not dict:
        raise ProtocolError("bad_field", f" must be an object, not {_kind(obj)}")
    service = _name(_get(obj, "service", str, "."), ".service")
    method = _name(_get(obj, "method", str, "."), ".method")
    rpc_type = obj.get("type", "unary")
    if rpc_type not in RPC_TYPES:
        raise ProtocolError("bad_field", f".type {rpc_type!r} is not one of "
                                         f"{', '.join(RPC_TYPES)}")
    started = _int(_need(obj, "started", "."), ".started")
    codes = _codes(_get(obj, "codes", dict, "."))
    hist = _ints(_get(obj, "hist", list, "."), ".hist")
    if len(hist) != n_hist:
        raise ProtocolError("bad_field", f".hist has {len(hist)} counts; the bucket bounds "
                                         f"need {n_hist} (one more for +Inf)")
    total = _number(_get(obj, "sum", _NUMBER, "."), ".sum")
    return service, method, rpc_type, started, codes, hist, total


_NUMBER = (int, float)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def _need(obj: dict[str, Any], key: str, where: str) -> Any:
    try:
        return obj[key]
    except KeyError:
        raise ProtocolError("missing_field", f"{where}{key} is required") from None


def _get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    try:
        value = obj[key]
    except KeyError:
        raise ProtocolError("missing_field", f"{where}{key} is required") from None
    if type(value) is kind or (kind is _NUMBER and type(value) in _NUMBER):
        return value
    names: dict[Any, str] = {dict: "an object", list: "an array", str: "a string",
                             _NUMBER: "a number"}
    want = names.get(kind, "?")
    raise ProtocolError("bad_field", f"{where}{key} must be {want}, not {_kind(value)}")


def _int(value: Any, where: str) -> int:
    """An integer in JSON's sense: a number with a whole value, 0 to MAX_INT (7.0 is 7)."""
    if type(value) is int and 0 <= value <= MAX_INT:
        return value
    if type(value) is float and value.is_integer() and 0 <= value <= MAX_INT:
        return int(value)
    if type(value) not in _NUMBER:
        raise ProtocolError("bad_field", f"{where} must be an integer, not {_kind(value)}")
    raise ProtocolError("bad_field", f"{where} is {value}; an integer from 0 to {MAX_INT} "
                                     f"is required")


def _ints(values: list[Any], where: str) -> tuple[int, ...]:
    if set(map(type, values)) <= _INT_ONLY and (
            not values or (min(values) >= 0 and max(values) <= MAX_INT)):
        return tuple(values)
    return tuple(_int(v, f"{where}[{i}]") for i, v in enumerate(values))


def _number(value: Any, where: str) -> float:
    if type(value) is float:
        if value >= 0 and value != math.inf:  # NaN fails the first test
            return value
    elif type(value) is int and 0 <= value <= MAX_INT:
        return float(value)
    elif type(value) is not int:
        raise ProtocolError("bad_field", f"{where} must be a number, not {_kind(value)}")
    elif value > 0 and value.bit_length() <= 1023:  # a long integer within a double's range
        return float(value)
    raise ProtocolError("bad_field", f"{where} is {value}; it must be finite and >= 0")


def _name(value: str, where: str) -> str:
    """An exact name (identity: source id, service, method): 1 to MAX_NAME, no Cc or Cs."""
    if 0 < len(value) <= MAX_NAME and not FORBIDDEN.search(value):
        return value
    if not value or len(value) > MAX_NAME:
        raise ProtocolError("bad_field", f"{where} has {len(value)} code points; a name has "
                                         f"1 to {MAX_NAME}")
    bad = FORBIDDEN.search(value)
    assert bad is not None
    raise ProtocolError("bad_field", f"{where} {value[:40]!r} holds U+{ord(bad.group()):04X} "
                                     f"(Unicode category Cc or Cs)")


def _string(value: Any, where: str) -> str:
    if type(value) is not str:
        raise ProtocolError("bad_field", f"{where} must be a string, not {_kind(value)}")
    return value


def _repair(text: str, limit: int, empty: str = "") -> str:
    """A descriptive text as the sidecar keeps it: cut to ``limit`` code points, Cc/Cs -> U+FFFD."""
    if len(text) > limit:
        text = text[:limit]
    if FORBIDDEN.search(text):
        text = FORBIDDEN.sub("\ufffd", text)
    return text or empty


def _codes(obj: dict[str, Any]) -> dict[str, int]:
    """Counts per code, keyed by Go's names; a spec spelling of the same code is added to it."""
    if obj.keys() <= _CODE_SET and _plain(obj.values()):
        return obj
    out: dict[str, int] = {}
    for key, value in obj.items():
        code = code_name(key)
        if code is None:
            raise ProtocolError("bad_field", f".codes key {key[:40]!r} is not a gRPC code name "
                                             f"(Go's, e.g. NotFound, or the spec's, NOT_FOUND)")
        out[code] = out.get(code, 0) + _int(value, f".codes.{key}")
    return out


def _exceptions(obj: Any) -> dict[str, int]:
    """Exception type -> count; names repaired (cut, cleaned), counts of equal names added."""
    if type(obj) is dict and len(obj) <= MAX_KEYS and _plain(obj.values()):
        if obj.keys() <= _GOOD_EXCEPTIONS:  # names seen valid before: one C-level subset test
            return obj
        if all(0 < len(k) <= MAX_EXCEPTION and k.isprintable() for k in obj):
            if len(_GOOD_EXCEPTIONS) > 4096:  # bounded, whatever senders invent
                _GOOD_EXCEPTIONS.clear()
            _GOOD_EXCEPTIONS.update(obj)
            return obj
    if type(obj) is not dict:
        raise ProtocolError("bad_field", f".exceptions must be an object, not {_kind(obj)}")
    if len(obj) > MAX_KEYS:
        raise ProtocolError("too_many_series", f".exceptions has {len(obj)} types, "
                                               f"the limit is {MAX_KEYS}")
    out: dict[str, int] = {}
    for key, value in obj.items():
        n = _int(value, f".exceptions.{key[:40]}")
        name = _repair(key, MAX_EXCEPTION, "\ufffd")
        out[name] = out.get(name, 0) + n
    return out


_GOOD_EXCEPTIONS: set[str] = set()  # exception names that need no repair


def _checks(obj: Any) -> dict[str, str]:
    """Check name -> text, repaired: the first MAX_KEYS, names and texts cut and cleaned."""
    if type(obj) is not dict:
        raise ProtocolError("bad_field", f"health.checks must be an object, not {_kind(obj)}")
    out = {}
    for key, value in list(obj.items())[:MAX_KEYS]:
        if type(value) is not str:
            raise ProtocolError("bad_field", f"health.checks.{key[:40]} must be a string, "
                                             f"not {_kind(value)}")
        out[_repair(key, MAX_NAME, "\ufffd")] = _repair(value, MAX_TEXT)
    return out


def _part(value: Any) -> tuple[int, int]:
    if type(value) is list and len(value) == 2:
        try:
            index, count = _int(value[0], "part"), _int(value[1], "part")
        except ProtocolError:
            pass
        else:
            if 0 <= index < count <= MAX_PARTS:
                return index, count
    raise ProtocolError("bad_field", f"part must be [index, count] with 0 <= index < count "
                                     f"<= {MAX_PARTS}")


def _buckets(values: list[Any], no_bools: bool = False) -> tuple[float, ...]:
    known = _last_buckets  # every message of every source repeats the same bounds
    # Equal numbers give equal bounds (7 and 7.0 alike); only true, equal to 1, must not pass.
    if values == known[0] and (no_bools or set(map(type, values)) == known[2]):
        cached: tuple[float, ...] = known[1]
        return cached
    if not 1 <= len(values) <= MAX_BUCKETS:
        raise ProtocolError("bad_field", f"buckets must list 1 to {MAX_BUCKETS} upper bounds")
    out = tuple(_number(v, f"buckets[{i}]") for i, v in enumerate(values))
    if any(b <= a for a, b in itertools.pairwise(out)):
        raise ProtocolError("bad_field", "buckets must be strictly increasing")
    _last_buckets[:] = [list(values), out, set(map(type, values))]
    return out


_last_buckets: list[Any] = [None, (), set()]
