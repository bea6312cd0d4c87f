"""The wire format: encoding, splitting, and a precise reason for every rejection."""

from __future__ import annotations

import bisect
import json
import random
from functools import partial
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
        ({"buckets": [1.0, 0.5]}, "bad_field"),
        ({"buckets": [-1.0, 0.5]}, "bad_field"),
        ({"health": {"status": "fine"}}, "bad_field"),
        ({"part": [3, 2]}, "bad_field"),
        ({"seq": 2**53}, "bad_field"),
        ({"seq": 1.5}, "bad_field"),
        ({"reporter": {"dropped": -1}}, "bad_field"),
        ({"source": {**SOURCE, "service": 7}}, "bad_field"),
        ({"source": {**SOURCE, "id": "a\x85b"}}, "bad_field"),
        ({"buckets": [1.0], "rpcs": [{"service": "s", "method": "m", "started": 0, "codes": {},
                                      "hist": [0, 0], "sum": 0}] * (protocol.MAX_ROWS + 1)},
         "too_many_series"),
    ],
)
def test_bad_message_fields_reject_the_datagram(change: dict[str, Any], reason: str) -> None:
    """Broken message fields (not rows) reject the whole datagram with their reason."""
    body = message(**change)
    raw = json.dumps(body, allow_nan=True, separators=(",", ":")).encode()
    assert len(raw) <= protocol.MAX_DATAGRAM
    assert reason_of(raw) == reason


@pytest.mark.parametrize(
    ("bad_row", "reason", "detail"),
    [
        (row(started=-1), "bad_field", "rpcs[0].started is -1"),
        (row(started=7.5), "bad_field", "rpcs[0].started is 7.5"),
        (row(codes={"OK": -3}), "bad_field", "rpcs[0].codes.OK is -3"),
        (row(codes={"MAYBE": 1}), "bad_field", "'MAYBE' is not a gRPC code name"),
        (row(codes={"not_found": 1}), "bad_field", "'not_found' is not a gRPC code name"),
        (row(last_error=["Nope", 1.0]), "bad_field", "last_error must be [code name"),
        (row(hist=[1, 2]), "bad_field", "rpcs[0].hist has 2 counts"),
        (row(type="sideways"), "bad_field", "rpcs[0].type 'sideways'"),
        (row(method="bad\nname"), "bad_field", "holds U+000A"),
        (row(method="x" * 300), "bad_field", "has 300 code points"),
        (row(sum=float("nan")), "bad_field", "rpcs[0].sum is nan"),
        (row(exceptions={f"E{i}": 1 for i in range(100)}), "too_many_series", "100 types"),
        ({k: v for k, v in row().items() if k != "hist"}, "missing_field", "rpcs[0].hist is"),
    ],
)
def test_a_bad_row_is_skipped_alone(bad_row: dict[str, Any], reason: str, detail: str) -> None:
    """A broken row is left out with its reason and the field named; the others decode."""
    body = message(rpcs=[bad_row, row("Healthy")])
    msg = decode(json.dumps(body, allow_nan=True, separators=(",", ":")).encode())
    assert [r.method for r in msg.rows] == ["Healthy"]
    ((got_reason, got_detail),) = msg.rejected_rows
    assert got_reason == reason and detail in got_detail, got_detail


def test_names_allow_everything_but_cc_and_cs() -> None:
    """U+00A0, U+200B, U+2028, U+00AD, emoji are data; U+0085, U+007F and surrogates are not."""
    ok = ["a\u00a0b", "a\u200bb", "a\u2028b", "a\u00adb", "\U0001F600" * 256, "\ue000"]
    bad = ["a\u0085b", "a\u007fb", "a\ud800b", "a\x00b", "\U0001F600" * 257]
    body = message(rpcs=[row(n) for n in ok + bad])
    msg = decode(json.dumps(body).encode())
    assert [r.method for r in msg.rows] == ok
    assert [reason for reason, _ in msg.rejected_rows] == ["bad_field"] * len(bad)


def test_integers_follow_json_number_semantics() -> None:
    """7.0 is the integer 7; 1e21 and 2**53 are beyond the exact range of a double."""
    text = json.dumps(message(rpcs=[row("A", started=3)])).replace('"started": 3', '"started": 3.0')
    assert decode(text.encode()).rows[0].started == 3
    assert type(decode(text.encode()).rows[0].started) is int
    for big in ("1e21", str(2**53)):
        body = json.dumps(message(rpcs=[row("A")])).replace('"started": 3', f'"started": {big}')
        assert decode(body.encode()).rejected_rows[0][0] == "bad_field"


def test_descriptive_texts_are_repaired_not_rejected() -> None:
    """source.service/version, checks and exception names are cut and cleaned, never refused."""
    body = message(source={**SOURCE, "service": "s\x01" + "v" * 300, "version": "\x85"},
                   health={"status": "degraded",
                           "checks": {"db\n": "t" * 5000, **{f"c{i}": "ok" for i in range(80)}}},
                   rpcs=[row(exceptions={"E\x00" + "e" * 200: 1, "F": 2})])
    msg = decode(json.dumps(body).encode())
    assert msg.service == "s\ufffd" + "v" * 254 and msg.version == "\ufffd"
    assert msg.checks is not None and len(msg.checks) == protocol.MAX_KEYS
    assert msg.checks["db\ufffd"] == "t" * protocol.MAX_TEXT
    assert msg.rows[0].exceptions == {"E\ufffd" + "e" * 126: 1, "F": 2}


def test_duplicate_rows_keep_the_first() -> None:
    """Two rows for one method in one datagram: the first counts, the second is rejected."""
    msg = decode(json.dumps(message(rpcs=[row("A", 2), row("A", 5)])).encode())
    assert [r.started for r in msg.rows] == [2]
    assert [reason for reason, _ in msg.rejected_rows] == ["duplicate_row"]


def test_health_only_in_part_zero() -> None:
    """Later parts may omit health (None: keep the last); part 0 must carry it."""
    body = message(part=[1, 2])
    del body["health"]
    assert decode(json.dumps(body).encode()).health is None
    body["part"] = [0, 2]
    assert reason_of(body) == "missing_field"


def test_split_snapshot_carries_health_in_part_zero_and_final_everywhere() -> None:
    """encode() puts health in the first part only and final in every part."""
    rows = [row(f"Method{i:05d}") for i in range(1500)]
    parts = encode(source=SOURCE, seq=7, time=1.0, buckets=DEFAULT_BUCKETS, rows=rows,
                   health="down", checks={"a": "b"}, reporter={}, final=True)
    decoded = [decode(p) for p in parts]
    assert [m.health for m in decoded] == ["down"] + [None] * (len(parts) - 1)
    assert all(m.final for m in decoded)


def test_health_checks_are_cut_to_fit_part_zero() -> None:
    """63 checks of 1 024 four-byte characters still make a datagram under 64 KiB."""
    checks = {f"check{i}": "\U0001F600" * protocol.MAX_TEXT for i in range(63)}
    (part,) = encode(source=SOURCE, seq=1, time=1.0, buckets=DEFAULT_BUCKETS, rows=[row()],
                     health="degraded", checks=checks, reporter={})
    assert len(part) <= protocol.MAX_DATAGRAM
    msg = decode(part)
    assert msg.checks is not None and "more checks not sent" in msg.checks["health_checks"]


def test_rows_past_64_parts_are_left_for_the_next_snapshot() -> None:
    """encode_parts() never makes more than 64 parts; the rows left over are returned."""
    rows = [row(f"M{i:05d}") for i in range(protocol.MAX_PARTS * 3)]
    datagrams, rest, too_large = protocol.encode_parts(
        source=SOURCE, seq=1, time=1.0, buckets=DEFAULT_BUCKETS, rows=rows, health="healthy",
        checks={}, reporter={}, limit=700)
    assert len(datagrams) == protocol.MAX_PARTS and rest and not too_large
    sent = [r.method for d in datagrams for r in decode(d).rows]
    assert sent + [r["method"] for r in rest] == [r["method"] for r in rows]


def test_hostile_but_printable_names_are_accepted_as_data() -> None:
    """Markup in a method name is data, not an error: the outputs escape it."""
    msg = decode(json.dumps(message(rpcs=[row(method='<img src=x onerror=alert(1)>"}')])).encode())
    assert msg.rows[0].method == '<img src=x onerror=alert(1)>"}'


def test_a_row_no_datagram_holds_is_left_out_not_sent_oversized() -> None:
    """A row larger than the datagram limit is returned as too large; the others are sent."""
    big = row("Big", exceptions={f"E{i:03d}" + "e" * 120: 1 for i in range(60)})
    datagrams, rest, too_large = protocol.encode_parts(
        source=SOURCE, seq=1, time=1.0, buckets=DEFAULT_BUCKETS, rows=[row("A"), big, row("B")],
        health="healthy", checks={}, reporter={}, limit=4096)
    assert too_large == [big] and not rest
    assert all(len(d) <= 4096 for d in datagrams)
    assert [r.method for d in datagrams for r in decode(d).rows] == ["A", "B"]


_HIST = [0, 0, 0, 5] + [0] * (len(DEFAULT_BUCKETS) - 3)
# Values near the rules' edges, tried in every row field (and then in twos and threes).
EDGE_VALUES: list[Any] = [
    -1, -1.5, 0, 5, 5.0, 2**53 - 1, 2**53, 2**64, 1e21, True, False, None, "x", "", [], {},
    float("inf"), float("nan"), "unary", "bidi_stream", "sideways", "a\x00b", "b" * 257,
    [True, *_HIST[1:]], [1.0, *_HIST[1:]], [-1, *_HIST[1:]], [2**53, *_HIST[1:]], _HIST[1:],
    [0, 0, 0, 2**60, *_HIST[4:]], {"OK": True}, {"OK": 1.0}, {"OK": -1}, {"NOT_FOUND": 1},
    {"Nope": 1}, {"OK": 2**60}, {"OK": 4, "UNAVAILABLE": 1}, {"E\x00": 1}, {"KeyError": 1.0},
    {"KeyError": True}, {f"E{i}": 1 for i in range(70)}, ["OK", 1], ["NOT_FOUND", 5],
    ["OK", True], ["OK", float("inf")], [None, 1.0], ["Nope", 1.0], ["OK"],
    {"schema": 1, "runs": [[0, True]]}, {"schema": 1, "runs": [[0, 1.0]]},
    {"schema": 2, "runs": 1}, {"schema": True},
    {"schema": 1, "runs": [[5, 1], [3, 1]]}, {"schema": 1, "runs": [[178, 5]]},
]
ROW_FIELDS = ["service", "method", "type", "started", "codes", "hist", "sum", "max",
              "exceptions", "last_error", "msg_received", "msg_sent", "fine"]


def _valid_row(fine_runs: bool) -> dict[str, Any]:
    out = row("GetReading", 5, hist=list(_HIST), codes={"OK": 4, "NOT_FOUND": 1},
              exceptions={"KeyError": 1}, last_error=["NOT_FOUND", 1.7e9], msg_received=5,
              msg_sent=4)
    if fine_runs:
        bounds = protocol.fine_histogram.bounds(DEFAULT_BUCKETS)
        assert bounds is not None
        out["fine"] = {"schema": 1, "runs": [[bisect.bisect_left(bounds, 0.04), 2, 0, 3]]}
    return out


def _outcome(decode_row: Any) -> Any:
    try:
        return decode_row()
    except ProtocolError as err:
        return (err.reason, err.detail)


def _changed_rows() -> Any:
    """Valid rows with one field changed to each edge value or left out, then 3 000 rows with
    two or three fields changed at random (seeded)."""
    for fine_runs in (False, True):
        for name in ROW_FIELDS:
            yield fine_runs, {}, {name}
            for value in EDGE_VALUES:
                yield fine_runs, {name: value}, set()
    rng = random.Random(15)
    for _ in range(3000):
        names = rng.sample(ROW_FIELDS, rng.randint(2, 3))
        yield (rng.random() < 0.5, {n: rng.choice(EDGE_VALUES) for n in names[1:]},
               set(names[:1]) if rng.random() < 0.2 else set())


def test_the_fast_row_check_decides_as_the_field_by_field_one() -> None:
    """Any row: the C-level check gives the very Row, or the very error, of the careful one."""
    decided = set()
    for fine_runs, changes, removed in _changed_rows():
        raw = {k: v for k, v in {**_valid_row(fine_runs), **changes}.items() if k not in removed}
        text = json.dumps(raw, allow_nan=True)
        raw = json.loads(text)  # as the wire gives it
        careful = _outcome(partial(protocol._row_checked, raw, DEFAULT_BUCKETS))
        decided.add(type(careful))
        no_bools = "true" not in text and "false" not in text
        for flag in {no_bools, False}:  # False is always allowed
            fast = _outcome(partial(protocol._row, raw, DEFAULT_BUCKETS, flag))
            assert fast == careful, (changes, removed)
            if isinstance(fast, protocol.Row):
                assert [type(getattr(fast, f)) for f in ROW_FIELDS[3:12]] == [
                    type(getattr(careful, f)) for f in ROW_FIELDS[3:12]]
    assert decided == {protocol.Row, tuple}


def test_bounds_equal_to_the_last_ones_still_refuse_a_boolean() -> None:
    """true equals 1: bounds that compare equal to the cached ones but hold true are refused."""
    for bounds in ([1.0, 2.5], [1, 2.5]):
        assert decode(json.dumps(message(buckets=bounds, rpcs=[])).encode()).buckets == (1.0, 2.5)
    assert reason_of(message(buckets=[True, 2.5], rpcs=[])) == "bad_field"
