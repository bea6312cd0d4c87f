"""The sidecar process: endpoints, rejections, the socket's life, signals and configuration."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from sidecar import protocol
from sidecar.reporter.core import Reporter
from tests.conftest import SidecarProcess, http_get, http_json, parse_metrics, wait_for


def send(path: str, *datagrams: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as tx:
        for d in datagrams:
            tx.sendto(d, path)


def rejected(sc: SidecarProcess, family: str = "oracle_sidecar_messages_rejected_total"
             ) -> dict[str, float]:
    return {dict(labels)["reason"]: v for (name, labels), v in parse_metrics(sc.metrics()).items()
            if name == family}


def test_bad_datagrams_are_counted_by_reason_and_the_receiver_keeps_serving(
        sidecar: SidecarProcess) -> None:
    """Garbage, wrong version, oversized and decreasing counters: each counted, none fatal."""
    rep = Reporter("svc", socket_path=sidecar.socket)
    with rep.track("Work"):
        pass
    rep.flush()
    good = json.loads(protocol.encode(
        source={"id": "x1", "pid": 1, "started": 1.0}, seq=5, time=1.0,
        buckets=protocol.DEFAULT_BUCKETS, health="healthy", checks={}, reporter={"dropped": 5},
        rows=[{"service": "s", "method": "m", "started": 9, "codes": {"OK": 9},
               "hist": [9] + [0] * 14, "sum": 0.01}])[0])
    fewer_drops = dict(good, seq=6, reporter={"dropped": 1})
    row_decreased = dict(good, seq=7, rpcs=[dict(good["rpcs"][0], started=1, codes={"OK": 1},
                                                 hist=[1] + [0] * 14)])
    send(sidecar.socket, b"\x00\xff garbage", b'{"v": 99}', b"[]", b"{" + b" " * 70_000 + b"}",
         json.dumps(good).encode(), json.dumps(fewer_drops).encode(),
         json.dumps(row_decreased).encode(), json.dumps(good).encode())
    expected = {"bad_json": 2, "bad_version": 1, "oversized": 1, "counter_decreased": 1,
                "not_newer": 1}
    wait_for(lambda: all(rejected(sidecar)[k] == v for k, v in expected.items()), 5,
             message="rejections counted by reason")
    assert set(rejected(sidecar)) == set(protocol.REJECT_REASONS)  # all reasons, from zero
    rows = rejected(sidecar, "oracle_sidecar_rows_rejected_total")
    assert rows == {**dict.fromkeys(protocol.ROW_REJECT_REASONS, 0), "counter_decreased": 1}
    rep.flush()
    assert http_get(sidecar.url + "/livez")[0] == 200
    samples = parse_metrics(sidecar.metrics())
    assert samples[("oracle_sidecar_messages_received_total", frozenset())] == 10


def test_an_oversized_datagram_is_logged_with_its_true_size(sidecar_factory: Any) -> None:
    """The receiver reports the size that was sent, not the 65 537 bytes it read."""
    sc = sidecar_factory(env={"LOG_LEVEL": "DEBUG"})
    send(sc.socket, b"{" + b" " * 70_000 + b"}", b"x" * 100_000)
    wait_for(lambda: rejected(sc)["oversized"] == 2, 5, message="two oversized datagrams")
    wait_for(lambda: "100000 bytes, the limit is 65536" in sc.log(), 5, message="the log line")
    assert "70002 bytes, the limit is 65536" in sc.log()


def test_endpoints_answer_json_and_negotiate_formats(sidecar: SidecarProcess) -> None:
    """404/405 as JSON, OpenMetrics on request, the JSON snapshot from /metrics on request."""
    status, body, _ = http_get(sidecar.url + "/nowhere")
    assert status == 404 and json.loads(body)["error"] == "Not Found"
    request = urllib.request.Request(sidecar.url + "/metrics", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 405 and json.loads(info.value.read())["status"] == 405
    status, body, headers = http_get(
        sidecar.url + "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"})
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.endswith("# EOF\n") and body.count("# EOF") == 1
    status, body, headers = http_get(sidecar.url + "/metrics?format=json")
    assert headers["Content-Type"].startswith("application/json")
    assert set(json.loads(body)["windows"]) == {"1m", "5m", "1h", "all"}
    status, body, _ = http_get(sidecar.url + "/metrics", {"Accept": "application/json"})
    assert "windows" in json.loads(body)
    health = http_json(sidecar.url + "/health")
    assert health["status"] == "unknown" and health["ready"] is False
    points = http_json(sidecar.url + "/api/v1/history")["points"]
    assert points and all(p["count"] == 0 for p in points)


def test_socket_is_made_with_mode_0660_in_a_new_directory(sidecar: SidecarProcess) -> None:
    """The socket directory is created and the socket is group-writable only."""
    mode = os.stat(sidecar.socket).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660


def test_a_live_sidecar_socket_is_not_stolen(sidecar: SidecarProcess,
                                             sidecar_factory: Any) -> None:
    """A second sidecar on the same socket exits 1 with a clear message; the first keeps it."""
    second = sidecar_factory(start=False, socket_path=sidecar.socket)
    second.start(wait=False)
    assert second.proc is not None and second.proc.wait(15) == 1
    assert "another sidecar is receiving on" in second.log()
    assert http_get(sidecar.url + "/livez")[0] == 200


def test_a_regular_file_at_the_socket_path_is_a_clear_error(tmp_path: Path,
                                                            sidecar_factory: Any) -> None:
    """A path taken by a regular file is never deleted; the sidecar says so and exits 1."""
    path = tmp_path / "taken"
    path.write_text("precious")
    sc = sidecar_factory(start=False, socket_path=str(path))
    sc.start(wait=False)
    assert sc.proc is not None and sc.proc.wait(15) == 1
    assert "exists and is not a socket" in sc.log()
    assert path.read_text() == "precious"


def test_socket_file_removed_at_run_time_is_made_again(sidecar: SidecarProcess) -> None:
    """If the socket directory is removed while running, the sidecar re-creates the socket."""
    os.unlink(sidecar.socket)
    os.rmdir(os.path.dirname(sidecar.socket))
    wait_for(lambda: os.path.exists(sidecar.socket), 5, message="the socket to come back")
    rep = Reporter("svc", socket_path=sidecar.socket)
    assert rep.flush() is True
    wait_for(lambda: http_json(sidecar.url + "/health")["status"] == "healthy", 5,
             message="the push to arrive")


def test_sigterm_turns_unready_first_then_exits_zero(sidecar_factory: Any) -> None:
    """SIGTERM: /ready answers 503 at once while the drain lasts, then exit 0, socket removed."""
    sc = sidecar_factory("--drain-seconds", "3")
    rep = Reporter("svc", socket_path=sc.socket, interval=0.2).start()
    wait_for(lambda: http_get(sc.url + "/ready")[0] == 200, 5, message="ready")
    assert sc.proc is not None
    sc.proc.send_signal(signal.SIGTERM)
    _, body, _ = wait_for(lambda: (a := http_get(sc.url + "/ready"))[0] == 503 and a, 3,
                          message="/ready 503 while the drain lasts")
    assert "shutting down" in body
    assert sc.proc.wait(10) == 0
    assert not os.path.exists(sc.socket)
    rep.close()


def test_bad_configuration_exits_with_a_message_naming_the_setting(tmp_path: Path) -> None:
    """A bad env var or flag stops the command before it starts, naming what was wrong."""
    def serve(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sidecar.cli", "serve", *args],
                              capture_output=True, text=True, timeout=30,
                              env={**os.environ, **env})

    out = serve(ORACLE_HTTP_PORT="ninety")
    assert out.returncode == 2 and "ORACLE_HTTP_PORT='ninety'" in out.stderr
    out = serve("--stale-after", "-3")
    assert out.returncode == 2 and "--stale-after" in out.stderr and "above zero" in out.stderr
    out = serve(LOG_LEVEL="LOUD")
    assert out.returncode == 2 and "LOG_LEVEL" in out.stderr
    out = serve("--grpc-health-target", "nohost")
    assert out.returncode == 2 and "HOST:PORT" in out.stderr


def test_history_percentiles_are_capped_at_the_largest_duration_seen(
        sidecar: SidecarProcess) -> None:
    """History p95 never exceeds the slowest RPC, as in the snapshot (not bucket interpolation)."""
    rep = Reporter("svc", socket_path=sidecar.socket)
    for _ in range(20):
        series = rep.series("/svc/Fast")
        assert series is not None
        rep.observe(series, 0.000002)
    rep.flush()
    wait_for(lambda: http_json(sidecar.url + "/api/v1/history")["points"][-1]["count"] == 20, 5,
             message="the push in the history")
    point = http_json(sidecar.url + "/api/v1/history?rpc=svc/Fast")["points"][-1]
    assert point["p95_ms"] == 0.002
    assert stat.S_IMODE(os.stat(os.path.dirname(sidecar.socket)).st_mode) & 0o007 == 0


async def test_a_wake_up_applies_datagrams_only_within_its_time_budget(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no time budget left, the receiver applies one datagram per turn of the event
    loop and leaves the rest in the socket for the next turns: the loop is never held."""
    from sidecar.server import Receiver
    from sidecar.store import Store

    monkeypatch.setattr(Receiver, "READ_SECONDS", 0.0)
    store = Store()
    receiver = Receiver(str(tmp_path / "metrics.sock"), store)
    await receiver.open()
    try:
        row = {"service": "s.v1.S", "method": "M", "type": "unary", "started": 0,
               "codes": {"OK": 0}, "hist": [0] * (len(protocol.DEFAULT_BUCKETS) + 1),
               "sum": 0.0, "max": 0.0}
        pushes = []
        for seq in range(1, 6):
            row = {**row, "started": seq, "codes": {"OK": seq}}
            pushes += protocol.encode(
                source={"id": "a", "pid": 1, "started": 1.0, "service": "s.v1.S",
                        "version": "1"}, seq=seq, time=1.0, buckets=protocol.DEFAULT_BUCKETS,
                rows=[row], health="healthy", checks={},
                reporter={"dropped": 0, "send_errors": 0, "overflow": 0})
        send(receiver.path, *pushes)  # all five wait in the socket before the loop turns
        seen = [store.received]
        while store.received < 5:
            await asyncio.sleep(0)
            seen.append(store.received)
        assert all(b - a <= 1 for a, b in pairwise(seen)), seen
        assert store.totals()[("s.v1.S", "M", "unary")].codes == {"OK": 5}
    finally:
        receiver.close()


async def test_a_large_datagram_is_applied_over_several_turns_and_the_next_waits_for_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With slices of no time, a 100-row datagram is decoded and applied 32 rows per turn of
    the loop, the store's generation moves once at its end, the state file waits for it, and
    the datagram sent after it is applied after it."""
    from sidecar import slices
    from sidecar.persist import StateFile
    from sidecar.server import Receiver
    from sidecar.store import Store

    monkeypatch.setattr(slices, "SLICE_SECONDS", 0.0)
    store = Store()
    state = StateFile(str(tmp_path / "metrics.sock"), store)
    receiver = Receiver(str(tmp_path / "metrics.sock"), store)
    await receiver.open()
    try:
        def push(seq: int) -> bytes:
            rows = [{"service": "s.v1.S", "method": f"M{i}", "type": "unary", "started": seq,
                     "codes": {"OK": seq}, "hist": [seq] + [0] * len(protocol.DEFAULT_BUCKETS),
                     "sum": 0.0, "max": 0.0} for i in range(100)]
            (one,) = protocol.encode(
                source={"id": "a", "pid": 1, "started": 1.0, "service": "s.v1.S",
                        "version": "1"}, seq=seq, time=1.0, buckets=protocol.DEFAULT_BUCKETS,
                rows=rows, health="healthy", checks={}, reporter={})
            return one

        send(receiver.path, push(1), push(2))
        generations, busy = [], 0
        while store.received < 2 or store.applying:
            busy += store.applying
            if store.applying:
                assert not state.due()
            generations.append(store.generation)
            await asyncio.sleep(0)
        assert busy >= 4  # each datagram took several turns
        assert sorted(set(generations)) == [0, 1]  # once per datagram, at its end (1, then 2)
        assert store.generation == 2 and store.rows_rejected == dict.fromkeys(
            protocol.ROW_REJECT_REASONS, 0)
        assert {t.started for t in store.totals().values()} == {2}
        assert len(store.totals()) == 100
    finally:
        receiver.close()


async def test_a_datagram_applied_in_slices_takes_turns_with_the_other_sliced_work(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large datagram's slices and a render's slices under way together: one slice in all
    per turn of the event loop (a turn holding one of each would be twice as long)."""
    from sidecar import slices
    from sidecar.server import Receiver
    from sidecar.store import Store

    monkeypatch.setattr(slices, "SLICE_SECONDS", 0.0)
    store = Store()
    receiver = Receiver(str(tmp_path / "metrics.sock"), store)
    turn = [0]
    ran: list[tuple[str, int]] = []

    def watched(name: str, work: slices.Slices[Any]) -> slices.Slices[Any]:
        while True:
            ran.append((name, turn[0]))
            try:
                next(work)
            except StopIteration as done:
                return done.value
            yield

    ingest = store.ingest_slices
    monkeypatch.setattr(store, "ingest_slices", lambda data: watched("datagram", ingest(data)))
    await receiver.open()
    try:
        rows = [{"service": "s.v1.S", "method": f"M{i}", "type": "unary", "started": 1,
                 "codes": {"OK": 1}, "hist": [1] + [0] * len(protocol.DEFAULT_BUCKETS),
                 "sum": 0.0, "max": 0.0} for i in range(300)]
        (one,) = protocol.encode(
            source={"id": "a", "pid": 1, "started": 1.0, "service": "s.v1.S", "version": "1"},
            seq=1, time=1.0, buckets=protocol.DEFAULT_BUCKETS, rows=rows, health="healthy",
            checks={}, reporter={})
        send(receiver.path, one)
        while not store.applying:
            await asyncio.sleep(0)
        render = asyncio.ensure_future(slices.run(watched("render", slices_of(40))))
        while store.applying or not render.done():
            await asyncio.sleep(0)
            turn[0] += 1
        names = {name for name, _ in ran}
        assert names == {"datagram", "render"} and len(store.totals()) == 300
        per_turn = [n for _, n in ran]
        assert len(per_turn) - len(set(per_turn)) <= 1, ran  # the render's first slice, at once
    finally:
        receiver.close()



async def test_the_json_documents_are_made_in_slices_and_a_probe_is_answered_meanwhile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """/api/v1/snapshot and /api/v1/history for 500 methods, made and written in slices on the
    event loop: a /livez asked after them is answered before they are done, the loop turns
    hundreds of times meanwhile, and each is the document made at once."""
    import aiohttp
    from aiohttp import web

    from sidecar import slices
    from sidecar.exposition import Exposition
    from sidecar.server import STATE, Settings, create_app
    from sidecar.store import RING_STEP, Store

    now = [1000.0]
    store = Store(clock=lambda: now[0], wall=lambda: 1_700_000_000.0 + now[0])
    rows = [{"service": "s.v1.S", "method": f"M{i:03d}", "type": "unary", "started": i + 2,
             "codes": {"OK": i, "Internal": 2}, "hist": [i, 2] + [0] * (
                 len(protocol.DEFAULT_BUCKETS) - 1), "sum": 0.01 * i, "max": 0.02,
             "exceptions": {"ValueError": 1}} for i in range(500)]
    for seq in range(1, 7):  # six history points
        rows = [{**row, "started": row["started"] + 1, "codes": {
            "OK": row["codes"]["OK"] + 1, "Internal": 2},
            "hist": [row["hist"][0] + 1, *row["hist"][1:]]} for row in rows]
        for part in protocol.encode(
                source={"id": "a", "pid": 1, "started": 1.0, "service": "s.v1.S",
                        "version": "1"}, seq=seq, time=1.0, buckets=protocol.DEFAULT_BUCKETS,
                rows=rows, health="healthy", checks={}, reporter={}):
            assert store.ingest(part) is None
        now[0] += RING_STEP
        store.tick()
    app = create_app(Settings(socket=str(tmp_path / "metrics.sock"), host="127.0.0.1",
                              port=0), store)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    counter = asyncio.ensure_future(count_turns())
    monkeypatch.setattr(slices, "SLICE_SECONDS", 0.0)
    try:
        async with aiohttp.ClientSession() as http:
            async def get(path: str) -> Any:
                async with http.get(url + path) as response:
                    assert response.status == 200
                    return await response.json()

            expected = Exposition(store)
            for path, made in (("/api/v1/snapshot", lambda: expected.snapshot({})),
                               ("/api/v1/history", lambda: expected.history(None))):
                document = asyncio.ensure_future(get(path))
                while not app[STATE]["json_lock"].locked():
                    await asyncio.sleep(0)
                before = turns
                assert (await get("/livez"))["alive"] is True
                assert not document.done()
                got = await document
                assert turns - before >= 100
                want = made()
                if path == "/api/v1/snapshot":
                    assert len(got["windows"]["all"]["rpcs"]) == 500
                    assert got["windows"] == want["windows"] and got["errors"] == want["errors"]
                else:  # now's point is stamped with the time of day it was made
                    assert len(got["points"]) == 7 and got["points"][:-1] == want["points"][:-1]
                    assert {**got["points"][-1], "time": 0} == {**want["points"][-1], "time": 0}
    finally:
        counter.cancel()
        await runner.cleanup()


def slices_of(count: int) -> Any:
    for _ in range(count):
        yield


@pytest.mark.parametrize("value", [
    {"windows": {"1m": {"rpcs": [{"method": f"M{i}", "fine": list(range(i))}
                                 for i in range(100)]}}, "errors": {"by_rpc": {}}},
    [list(range(70)), {"a": "\u2028\"\\", "b": None, "c": 1.5e300}], [], {}, {"k": {}}, "text",
    {f"k{i}": [i] * 3 for i in range(200)},
])
def test_json_pieces_join_into_the_compact_json_text_and_split_large_values(value: Any) -> None:
    """Pieced together, the compact JSON text; large values in many pieces; a value that is
    its writer's own is emptied as it is written, any other left as it was."""
    from sidecar.server import JSON_MEMBERS, _json_pieces

    text = json.dumps(value, separators=(",", ":"))
    pieces = list(_json_pieces(value))
    assert "".join(pieces) == text and json.dumps(value, separators=(",", ":")) == text
    assert max(map(len, pieces)) < 40 * JSON_MEMBERS * 4  # nothing large written whole
    own = json.loads(text)  # a document nothing else holds: let go of as it is written
    assert "".join(_json_pieces(own, own=True)) == text
    assert len(json.dumps(own)) < 40 * JSON_MEMBERS * 4
