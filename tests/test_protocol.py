"""The wire format: encoding, splitting, and a precise reason for every rejection."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sidecar import protocol
from sidecar.protocol import DEFAULT_BUCKETS, ProtocolError, decode, encode

SOURCE = {"id": "abc123", "pid": 42, "started": 1700000000.0, "service": "nps.oracle.Oracle",
          "version": "1.0"}


def row(method: str = "GetReading", ok: int = 3, **extra: Any) -> dict[str, Any]:
    hist = [0] * (len(DEFAULT_BUCKETS) + 1)
    hist[2] = ok
    return {"service": "nps.oracle.OracleService", "method": method, "type": "unary",
            "started": ok, "codes": {"OK": ok}, "hist": hist, "sum": 0.02 * ok, "max": 0.02,
            **extra}


def message(**overrides: Any) -> dict[str, Any]:
    body = json.loads(encode(source=SOURCE, seq=1, time=1700000001.0, buckets=DEFAULT_BUCKETS,
                             rows=[row()], health="healthy", checks={"db": "ok"},
                             reporter={"dropped": 0, "send_errors": 0, "overflow": 0})[0])
    body.update(overrides)
    return body


def reason_of(body: Any) -> str:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(ProtocolError) as info:
        decode(raw)
    return info.value.reason


def test_round_trip_keeps_every_field() -> None:
    """A snapshot encoded by the reporter decodes to the same figures."""
    msg = decode(json.dumps(message()).encode())
    assert (msg.source, msg.pid, msg.seq, msg.health) == ("abc123", 42, 1, "healthy")
    assert msg.checks == {"db": "ok"}
    assert msg.buckets == DEFAULT_BUCKETS
    (r,) = msg.rows
    assert (r.service, r.method, r.type, r.started, r.codes) == (
        "nps.oracle.OracleService", "GetReading", "unary", 3, {"OK": 3})
    assert r.hist[2] == 3 and sum(r.hist) == 3


def test_both_spellings_of_a_code_decode_to_go_names() -> None:
    """The spec's UNAVAILABLE and Go's Unavailable are one code, kept under Go's name."""
    msg = decode(json.dumps(message(rpcs=[row(
        started=9, codes={"OK": 3, "UNAVAILABLE": 2, "Unavailable": 1, "CANCELLED": 1,
                          "DeadlineExceeded": 2},
        last_error=["NOT_FOUND", 5.0])])).encode())
    (r,) = msg.rows
    assert r.codes == {"OK": 3, "Unavailable": 3, "Canceled": 1, "DeadlineExceeded": 2}
    assert r.last_error == ("NotFound", 5.0)
    assert protocol.CODES[1] == "Canceled" and len(protocol.CODES) == 17
    assert {protocol.code_name(c) for c in protocol.CODE_ALIASES} == set(protocol.CODES)
    assert protocol.code_name("Not_Found") is None and protocol.code_name("ok") is None


def test_large_snapshot_is_split_under_the_limit_and_every_part_decodes() -> None:
    """More rows than fit in 64 KiB are spread over parts that each decode on their own."""
    rows = [row(f"Method{i:05d}", exceptions={"ValueError": i}) for i in range(1500)]
    parts = encode(source=SOURCE, seq=7, time=1.0, buckets=DEFAULT_BUCKETS, rows=rows,
                   health="healthy", checks={}, reporter={})
    assert len(parts) > 1
    assert all(len(p) <= protocol.MAX_DATAGRAM for p in parts)
    decoded = [decode(p) for p in parts]
    assert {m.parts for m in decoded} == {len(parts)}
    assert sorted(m.part for m in decoded) == list(range(len(parts)))
    assert sum(len(m.rows) for m in decoded) == 1500
    assert {m.seq for m in decoded} == {7}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe not utf-8", "bad_json"),
        (b"{not json", "bad_json"),
        (b"[1, 2]", "bad_json"),
        ({"hello": 1}, "bad_version"),
        ({"v": 2}, "bad_version"),
        ({"v": True}, "bad_version"),
        (b"x" * (protocol.MAX_DATAGRAM + 1), "oversized"),
    ],
)
def test_malformed_datagrams_are_rejected_with_their_reason(body: Any, reason: str) -> None:
    """Garbage, wrong versions and oversized datagrams each get their own reason."""
    assert reason_of(body) == reason


def test_missing_and_mistyped_fields_name_the_field() -> None:
    """A missing or mistyped field is rejected, and the detail says which one."""
    body = message()
    del body["seq"]
    with pytest.raises(ProtocolError, match="seq is required") as info:
        decode(json.dumps(body).encode())
    assert info.value.reason == "missing_field"
    with pytest.raises(ProtocolError, match=r"source.pid must be an integer") as info:
        decode(json.dumps(message(source={**SOURCE, "pid": "42"})).encode())
    assert info.value.reason == "bad_field"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"rpcs": [row(started=-1)]}, "bad_field"),
        ({"rpcs": [row(codes={"OK": -3})]}, "bad_field"),
        ({"rpcs": [row(codes={"MAYBE": 1})]}, "bad_field"),
        ({"rpcs": [row(codes={"not_found": 1})]}, "bad_field"),
        ({"rpcs": [row(last_error=["Nope", 1.0])]}, "bad_field"),
        ({"rpcs": [row(hist=[1, 2])]}, "bad_field"),
        ({"rpcs": [row(type="sideways")]}, "bad_field"),
        ({"rpcs": [row(method="bad\nname")]}, "bad_field"),
        ({"rpcs": [row(method="x" * 300)]}, "bad_field"),
        ({"rpcs": [row(sum=float("nan"))]}, "bad_field"),
        ({"buckets": [1.0, 0.5]}, "bad_field"),
        ({"health": {"status": "fine"}}, "bad_field"),
        ({"part": [3, 2]}, "bad_field"),
        ({"buckets": [1.0], "rpcs": [{"service": "s", "method": "m", "started": 0, "codes": {},
                                      "hist": [0, 0], "sum": 0}] * (protocol.MAX_ROWS + 1)},
         "too_many_series"),
        ({"rpcs": [row(exceptions={f"E{i}": 1 for i in range(100)})]}, "too_many_series"),
    ],
)
def test_bad_values_are_rejected(change: dict[str, Any], reason: str) -> None:
    """Negative counters, unknown codes, wrong shapes and too many series are all refused."""
    body = message(**change)
    raw = json.dumps(body, allow_nan=True, separators=(",", ":")).encode()
    assert len(raw) <= protocol.MAX_DATAGRAM
    assert reason_of(raw) == reason


def test_hostile_but_printable_names_are_accepted_as_data() -> None:
    """Markup in a method name is data, not an error: the outputs escape it."""
    msg = decode(json.dumps(message(rpcs=[row(method='<img src=x onerror=alert(1)>"}')])).encode())
    assert msg.rows[0].method == '<img src=x onerror=alert(1)>"}'
