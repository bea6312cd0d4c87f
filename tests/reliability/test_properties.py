"""Property-based tests (hypothesis) of the decoder, the store and the exposition.

No input may make the decoder raise anything but ProtocolError with a known reason; whatever
it accepts satisfies the protocol's invariants; the store never lets an exported counter go
down; and no name a sender can get accepted can break either exposition format.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families as text_parse

from sidecar import protocol
from sidecar.exposition import Exposition
from sidecar.protocol import Message, ProtocolError, decode
from sidecar.store import Store
from tests.reliability.hostile import HOSTILE_NAMES, json_values, message, names, rows

# The names a sender can get accepted (Cc and Cs code points reject the row as bad_field).
PRINTABLE_HOSTILE = st.sampled_from([n for n in HOSTILE_NAMES
                                     if not protocol.FORBIDDEN.search(n)])
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def decoded_or_reason(data: bytes) -> Message | str:
    """decode(), with a rejection turned into its reason; any other exception fails the test."""
    try:
        return decode(data)
    except ProtocolError as err:
        assert err.reason in protocol.REJECT_REASONS
        assert err.detail
        return err.reason


def check_invariants(msg: Message) -> None:
    """What the decoder promises about anything it accepts."""
    assert msg.source and len(msg.source) <= protocol.MAX_NAME
    assert not protocol.FORBIDDEN.search(msg.source)
    assert 0 <= msg.part < msg.parts <= protocol.MAX_PARTS
    assert list(msg.buckets) == sorted(set(msg.buckets))
    assert all(math.isfinite(b) for b in msg.buckets)
    assert msg.health in (*protocol.HEALTH_STATES, None) and (msg.health or msg.part != 0)
    assert len(msg.rows) <= protocol.MAX_ROWS
    assert all(reason in protocol.ROW_REJECT_REASONS for reason, _ in msg.rejected_rows)
    assert len({(r.service, r.method) for r in msg.rows}) == len(msg.rows)
    for text in (msg.service, msg.version, *(msg.checks or {}).keys(),
                 *(msg.checks or {}).values()):
        assert not protocol.FORBIDDEN.search(text)
    for row in msg.rows:
        assert len(row.hist) == len(msg.buckets) + 1 and min(row.hist) >= 0
        assert set(row.codes) <= set(protocol.CODES) and min(row.codes.values(), default=0) >= 0
        assert math.isfinite(row.sum) and row.sum >= 0 and math.isfinite(row.max)
        for name in (row.service, row.method, *row.exceptions):
            assert not protocol.FORBIDDEN.search(name) and 0 < len(name) <= protocol.MAX_NAME


@SETTINGS
@given(st.binary(max_size=2000))
@example(b"[" * 60_000)  # deeper than the JSON parser recurses: once an uncaught RecursionError
@example(b'{"a":' * 20_000)
@example(b'{"v": 1, "n": ' + b"9" * 5000 + b"}")  # longer than int() converts
@example(b"\xef\xbb\xbf{}")
def test_any_bytes_decode_or_are_rejected_with_a_known_reason(data: bytes) -> None:
    """Arbitrary bytes: a Message or a ProtocolError with a listed reason, nothing else."""
    result = decoded_or_reason(data)
    if isinstance(result, Message):
        check_invariants(result)


@SETTINGS
@given(json_values)
def test_any_json_value_decodes_or_is_rejected_with_a_known_reason(value: Any) -> None:
    """Arbitrary JSON (NaN, Infinity, huge integers included) is judged, never crashes."""
    result = decoded_or_reason(json.dumps(value).encode())
    if isinstance(result, Message):
        check_invariants(result)


@st.composite
def mutated(draw: Any) -> bytes:
    """A valid message with one field deleted or replaced by any JSON value, at any depth."""
    body = json.loads(message(draw(st.lists(rows(), min_size=1, max_size=3)))[0])
    node: Any = body
    path: list[Any] = []
    while isinstance(node, (dict, list)) and node:
        keys = sorted(node) if isinstance(node, dict) else list(range(len(node)))
        key = draw(st.sampled_from(keys))
        path.append(key)
        if draw(st.booleans()):
            break
        node = node[key]
    parent: Any = body
    for key in path[:-1]:
        parent = parent[key]
    if path:
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    return json.dumps(body, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


@SETTINGS
@given(mutated())
def test_mutated_messages_decode_within_the_invariants_or_are_rejected(data: bytes) -> None:
    """One field of a valid message changed, at any depth: judged, and invariants hold."""
    result = decoded_or_reason(data)
    if isinstance(result, Message):
        check_invariants(result)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rows(), min_size=1, max_size=40, unique_by=lambda r: (r["service"], r["method"])),
       st.integers(600, protocol.MAX_DATAGRAM))
def test_encoded_snapshots_split_under_any_limit_and_decode_to_the_same_rows(
        body: list[dict[str, Any]], limit: int) -> None:
    """encode() splits any snapshot under the limit; the parts decode to exactly the rows."""
    datagrams, rest, too_large = protocol.encode_parts(
        source={"id": "p", "pid": 1, "started": 1.0}, seq=1, time=2.0,
        buckets=protocol.DEFAULT_BUCKETS, rows=body, health="healthy", checks={}, reporter={},
        limit=limit)
    assert not rest
    body = [r for r in body if r not in too_large]  # rows no datagram of this limit holds
    parts = datagrams
    decoded = [decode(p) for p in parts]
    assert all(len(p) <= limit for p in parts) and all(not m.rejected_rows for m in decoded)
    assert [m.part for m in decoded] == list(range(len(parts)))
    assert {m.parts for m in decoded} == {len(parts)}
    got = [r for m in decoded for r in m.rows]
    assert len(got) == len(body)
    for row, want in zip(got, body, strict=True):
        assert (row.service, row.method, row.type) == (want["service"], want["method"],
                                                       want["type"])
        assert row.codes == want["codes"] and list(row.hist) == want["hist"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 3),
                          st.integers(-2, 3), st.booleans()), min_size=1, max_size=40))
def test_store_counters_never_go_down_whatever_the_order_of_messages(
        steps: list[tuple[str, int, int, bool]]) -> None:
    """Sources restarting, replaying, going backwards, exiting: exported totals only grow."""
    store = Store(max_series=3)
    clock_counts: dict[str, int] = {}
    seqs: dict[str, int] = {}
    before: dict[Any, int] = {}
    for source, method_index, step, final in steps:
        count = max(clock_counts.get(source, 0) + step, 0)  # may go down: must be refused
        clock_counts[source] = count
        seq = seqs[source] = seqs.get(source, 0) + (1 if step else 0)  # 0: a replay
        hist = [0] * (len(protocol.DEFAULT_BUCKETS) + 1)
        hist[0] = count
        body = [{"service": "s", "method": f"m{method_index}", "type": "unary",
                 "started": count, "codes": {"OK": count}, "hist": hist, "sum": count * 0.1}]
        reason = store.ingest(message(body, source, seq, final=final)[0])
        assert reason is None or reason in protocol.REJECT_REASONS
        if final and reason is None:
            clock_counts.pop(source)  # the process exited; a new one starts from zero
            seqs.pop(source)
            source_id_bump(store, source)
        now = {key: t.handled for key, t in store.totals().items()}
        for key, n in before.items():
            assert now.get(key, 0) >= n, (key, before, now)
        assert len(now) <= 3
        before = now


def source_id_bump(store: Store, source: str) -> None:
    """A restarted process has a new id; forget the old one so the test can reuse the name."""
    store._retired_ids.pop(source, None)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(names, PRINTABLE_HOSTILE), min_size=1, max_size=6, unique=True),
       st.one_of(names, PRINTABLE_HOSTILE))
def test_no_accepted_name_can_break_either_exposition_format(methods: list[str],
                                                             exception: str) -> None:
    """Any printable service, method or exception name round-trips through both formats."""
    now = [0.0]
    store = Store(clock=lambda: now[0])
    body = []
    for i, method in enumerate(methods):
        hist = [0] * (len(protocol.DEFAULT_BUCKETS) + 1)
        hist[3] = i + 1
        body.append({"service": methods[-1], "method": method, "type": "unary",
                     "started": i + 1, "codes": {"Internal": i + 1}, "hist": hist,
                     "sum": 0.03 * (i + 1), "exceptions": {exception: i + 1}})
    assert store.ingest(message(body)[0]) is None
    now[0] += store.stale_after  # past the settling of a sidecar that met a running process
    exposition = Exposition(store)
    want = {m: i + 1 for i, m in enumerate(methods)}
    for accept, parse in (("text/plain", text_parse),
                          ("application/openmetrics-text; version=1.0.0", om_parse)):
        text = exposition.metrics(accept)[0].decode()
        got: dict[str, float] = {}
        exceptions: dict[str, float] = {}
        for family in parse(text):
            for s in family.samples:
                if s.name == "grpc_server_handled_total" and s.labels["grpc_code"] == "Internal":
                    assert s.labels["grpc_service"] == methods[-1]
                    got[s.labels["grpc_method"]] = s.value
                if s.name == "oracle_sidecar_rpc_exceptions_total":
                    exceptions[s.labels["exception"]] = exceptions.get(
                        s.labels["exception"], 0) + s.value
        assert got == want
        assert exceptions == {exception: sum(want.values())}
    snapshot = json.loads(json.dumps(exposition.snapshot({})))
    assert {r["method"] for r in snapshot["windows"]["all"]["rpcs"]} == set(methods)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rows(), min_size=1, max_size=5), st.booleans())
def test_json_documents_stay_strict_json_whatever_was_accepted(
        body: list[dict[str, Any]], drop_max: bool) -> None:
    """No accepted message can put NaN or Infinity into the snapshot or history (browsers'
    JSON.parse refuses both); ``max`` is optional in the protocol, so it may be missing."""
    if drop_max:
        for row in body:
            row.pop("max")
    store = Store()
    if store.ingest(message(body)[0]) is not None:
        return  # e.g. two rows with one key: rejected, nothing to render
    exposition = Exposition(store)
    json.dumps(exposition.snapshot({}), allow_nan=False)
    json.dumps(exposition.history(), allow_nan=False)


@SETTINGS
@given(rows(), st.sampled_from(["service", "method", "type", "started", "codes", "hist", "sum"]),
       json_values)
def test_the_fast_row_check_accepts_only_what_the_careful_one_accepts(
        row: dict[str, Any], field: str, value: Any) -> None:
    """The decoder's fast path for valid rows never accepts what field-by-field checks refuse,
    and gives the same row or the same reason and detail."""
    row[field] = value
    text = json.dumps(row)
    no_bools = "true" not in text and "false" not in text  # as the decoder decides it

    def outcome(check: Any) -> Any:
        try:
            return check(row)
        except ProtocolError as err:
            return err.reason, err.detail

    buckets = protocol.DEFAULT_BUCKETS
    assert outcome(lambda r: protocol._row(r, buckets, no_bools)) == outcome(
        lambda r: protocol._row_checked(r, buckets))
