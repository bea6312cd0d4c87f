"""A second reporter, in Node.js, written from docs/protocol.md alone, against a real sidecar."""

from __future__ import annotations

import base64
import bisect
import json
import math
import os
import queue
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar import protocol
from tests.conftest import SidecarProcess, http_get, http_json, parse_metrics, wait_for

NODE_DIR = Path(__file__).parent / "node"
ADDON = NODE_DIR / "node_modules" / "unix-dgram" / "build" / "Release" / "unix_dgram.node"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60)
# What the sidecar exports for a status the Node program was given: Go's name for either
# spelling, and for grpc-js's numeric codes.
EXPORTED: dict[str | int, str] = {**protocol.CODE_ALIASES, **{c: c for c in protocol.CODES},
                                  **dict(enumerate(protocol.CODES))}
SERVICE = "nps.oracle.OracleService"


def node_missing() -> str | None:
    """Why the Node reporter cannot run here, or None."""
    node = shutil.which("node")
    if node is None:
        return "node is not installed (Debian: apt-get install nodejs npm)"
    major = int(subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10,
                               check=True).stdout.strip().lstrip("v").split(".")[0])
    if major < 18:
        return f"node {major} is too old; the reporter needs Node.js 18 or newer"
    if not ADDON.exists():
        return (f"{ADDON.relative_to(NODE_DIR.parents[2])} is missing: run scripts/setup.sh "
                f"--test (it runs npm ci --prefix {NODE_DIR.relative_to(NODE_DIR.parents[2])})")
    return None


@pytest.fixture(scope="module", autouse=True)
def node_installed() -> None:
    """These tests fail, never skip, where the Node reporter cannot run."""
    problem = node_missing()
    if problem:
        pytest.fail(f"the Node.js reporter cannot run: {problem}", pytrace=False)


class NodeReporter:
    """drive.js as a child process: JSON commands on stdin, answers and pushes on stdout."""

    def __init__(self, socket_path: str, *args: str, interval: float = 0.2) -> None:
        self.proc = subprocess.Popen(
            ["node", str(NODE_DIR / "drive.js"), "--socket", socket_path,
             "--interval", str(interval), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.answers: queue.Queue[dict[str, Any]] = queue.Queue()
        self.pushes: list[dict[str, Any]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.source = self.answer()["source"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            if "pushed" in event:
                self.pushes.append(event)
            else:
                self.answers.put(event)
        self.answers.put({})  # end of output: the program exited

    def answer(self, timeout: float = 20) -> dict[str, Any]:
        try:
            answer = self.answers.get(timeout=timeout)
        except queue.Empty:
            answer = {}
        if not answer:
            self.proc.kill()
            stderr = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"drive.js gave no answer (exit status {self.proc.wait(10)}); "
                                 f"stderr: {stderr}")
        return answer

    def command(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self.answer()

    def pushes_after(self, seq: int) -> list[dict[str, Any]]:
        return [p for p in list(self.pushes) if p["pushed"]["seq"] > seq]

    def exit(self) -> dict[str, Any]:
        """Closes stdin: the reporter sends its `final` snapshot and exits."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        exited = self.answer()["exited"]
        assert self.proc.wait(10) == 0
        return exited

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.reader.join(10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()


@pytest.fixture
def node_factory() -> Iterator[Any]:
    """Starts Node reporters; each one is killed (by PID) after the test if still running."""
    made: list[NodeReporter] = []

    def make(sidecar: SidecarProcess, *args: str, interval: float = 0.2) -> NodeReporter:
        made.append(NodeReporter(sidecar.socket, *args, interval=interval))
        return made[-1]

    yield make
    for reporter in made:
        reporter.stop()


def call(method: str, code: str | int, seconds: float, count: int, **extra: Any) -> dict[str, Any]:
    return {"service": SERVICE, "method": method, "code": code, "seconds": seconds,
            "count": count, **extra}


def expected_samples(calls: list[dict[str, Any]], running: Counter[tuple[str, str]],
                     ) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every non-zero grpc_*/exception sample the sidecar must export for these calls."""
    out: Counter[tuple[str, frozenset[tuple[str, str]]]] = Counter()
    for c in calls:
        kind = c.get("type", "unary")
        labels = {"grpc_service": c["service"], "grpc_method": c["method"], "grpc_type": kind}
        code = EXPORTED.get(c["code"], "Unknown")
        n = c["count"]
        out["grpc_server_started_total", frozenset(labels.items())] += n
        # No message counts on the wire: the sidecar takes one request per call, one response
        # per OK (docs/protocol.md).
        out["grpc_server_msg_received_total", frozenset(labels.items())] += n
        if code == "OK":
            out["grpc_server_msg_sent_total", frozenset(labels.items())] += n
        out["grpc_server_handled_total", frozenset({**labels, "grpc_code": code}.items())] += n
        out["grpc_server_handling_seconds_count", frozenset(labels.items())] += n
        out["grpc_server_handling_seconds_sum", frozenset(labels.items())] += n * c["seconds"]
        first = bisect.bisect_left(BUCKETS, c["seconds"])  # the first bound >= seconds
        for i, bound in enumerate((*BUCKETS, math.inf)):
            if i >= first:
                le = "+Inf" if bound == math.inf else format(bound, "g")  # Go's spelling
                out["grpc_server_handling_seconds_bucket",
                    frozenset({**labels, "le": le}.items())] += n
        if "exception" in c:
            exc = {"grpc_service": c["service"], "grpc_method": c["method"],
                   "exception": c["exception"]}
            out["oracle_sidecar_rpc_exceptions_total", frozenset(exc.items())] += n
    for (method, kind), n in running.items():
        labels = {"grpc_service": SERVICE, "grpc_method": method, "grpc_type": kind}
        out["grpc_server_started_total", frozenset(labels.items())] += n
        out["grpc_server_msg_received_total", frozenset(labels.items())] += n
    return dict(out)


def exported_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The non-zero RPC samples of a /metrics text."""
    return {key: value for key, value in parse_metrics(text).items()
            if value and (key[0].startswith("grpc_server_")
                          or key[0] == "oracle_sidecar_rpc_exceptions_total")}


def same(actual: dict[Any, float], expected: dict[Any, float]) -> bool:
    return actual.keys() == expected.keys() and all(
        math.isclose(actual[k], expected[k], rel_tol=1e-9) for k in expected)


def sample(text: str, name: str) -> float:
    return sum(v for (n, _), v in parse_metrics(text).items() if n == name)


# A known distribution: durations on and just past bucket bounds, past the last bound, every kind
# of row the spec describes, codes spelt every way a Node service has them, and a code that is not
# a gRPC code (the reporter sends Unknown).
CALLS = [
    call("GetReading", "OK", 0.003, 40),
    call("GetReading", 0, 0.005, 7),  # exactly on a bound: that bucket; grpc-js's numeric OK
    call("GetReading", "INVALID_ARGUMENT", 0.0051, 5),  # the gRPC spec's spelling
    call("GetReading", "Internal", 2.5, 3, exception="KeyError"),  # Go's spelling
    call("GetReading", 4, 61.0, 2),  # DeadlineExceeded, +Inf
    call("StreamReadings", "OK", 0.3, 11, type="server_stream"),
    call("StreamReadings", "CANCELLED", 30.0, 4, type="server_stream"),
    call("StreamReadings", "Unavailable", 0.05, 1, type="server_stream"),
    call("Upload", "NOT_A_CODE", 0.1, 2, type="client_stream", exception="ValueError"),
]


def test_node_reporter_counts_are_exported_exactly(sidecar: SidecarProcess,
                                                   node_factory: Any) -> None:
    """N calls recorded in Node show on /metrics and /api/v1/snapshot with exactly those counts,
    buckets, sums, started, codes and exceptions; health and source identity arrive as sent."""
    node = node_factory(sidecar, "--service", SERVICE, "--version", "1.4.2")
    assert node.command(health={"status": "healthy",
                                "checks": {"model": "loaded", "db": "ok"}})["health"] == "healthy"
    assert node.command(record=CALLS)["recorded"] == sum(c["count"] for c in CALLS)
    assert node.command(begin={"service": SERVICE, "method": "StreamReadings",
                               "type": "server_stream", "count": 3})["begun"] == 3
    expected = expected_samples(CALLS, Counter({("StreamReadings", "server_stream"): 3}))

    wait_for(lambda: same(exported_samples(sidecar.metrics()), expected), 15,
             message="the Node reporter's counts on /metrics")
    text = sidecar.metrics()
    assert sample(text, "oracle_sidecar_messages_rejected_total") == 0
    assert sample(text, "oracle_sidecar_rows_rejected_total") == 0
    assert sample(text, "oracle_sidecar_reporter_overflow_total") == 0

    rpcs = {r["method"]: r for r in http_json(sidecar.url + "/api/v1/snapshot")
            ["windows"]["all"]["rpcs"] if r["service"] == SERVICE}
    for method, row in rpcs.items():
        mine = [c for c in CALLS if c["method"] == method]
        codes = Counter[str]()
        for c in mine:
            codes[EXPORTED.get(c["code"], "Unknown")] += c["count"]
        assert {k: v for k, v in row["codes"].items() if v} == dict(codes), method
        assert row["count"] == sum(codes.values()), method
        assert row["errors"] == sum(v for k, v in codes.items() if k != "OK"), method
        assert row["started"] == row["count"] + (3 if method == "StreamReadings" else 0), method
        excs = Counter({c["exception"]: c["count"] for c in mine if "exception" in c})
        assert {k: v for k, v in row["exceptions"].items() if v} == dict(excs), method
    assert set(rpcs) == {"GetReading", "StreamReadings", "Upload"}
    assert rpcs["GetReading"]["max_ms"] == pytest.approx(61_000)  # +Inf bucket: the sent max

    health = http_json(sidecar.url + "/health")
    assert (health["status"], health["service"], health["service_version"]) == (
        "healthy", SERVICE, "1.4.2")
    assert health["checks"] == {"model": "loaded", "db": "ok"}
    [source] = health["sources"]
    assert (source["id"], source["pid"]) == (node.source["id"], node.proc.pid)
    assert http_get(sidecar.url + "/ready")[0] == 200


def test_names_cleaned_as_the_spec_says_are_accepted_whole(sidecar: SidecarProcess,
                                                           node_factory: Any) -> None:
    """Names a careless sender would get rows rejected for (too long, Cc control characters, an
    emoji on the cut, lone surrogates, empty) are cleaned by the Node reporter as the spec says
    and accepted; other Unicode (separators, format characters, spaces) passes as data."""
    hostile = {
        "x" * 255 + "\U0001f600tail": "x" * 255 + "\U0001f600",  # cut at 256 code points
        "bell\x07del\x7fc1\x85": "bell\ufffddel\ufffdc1\ufffd",
        "lone\ud800": "lone\ufffd",
        "": "unknown",
        "line\u2028sep zero\u200bwidth nbsp\u00a0soft\u00ad": "line\u2028sep zero\u200bwidth "
                                                           "nbsp\u00a0soft\u00ad",
    }
    calls = [call(name, "OK", 0.01, 1, exception="E\x00" + "e" * 200) for name in hostile]
    calls.append(call("Healthy", "OK", 0.01, 5))
    node = node_factory(sidecar)
    node.command(record=calls)
    want = {**{cleaned: 1.0 for cleaned in hostile.values()}, "Healthy": 5.0}

    def started() -> dict[str, float]:
        return {dict(labels)["grpc_method"]: v for (name, labels), v
                in parse_metrics(sidecar.metrics()).items()
                if name == "grpc_server_started_total"}

    wait_for(lambda: started() == want, 15, message="every cleaned name exported")
    text = sidecar.metrics()
    assert sample(text, "oracle_sidecar_messages_rejected_total") == 0
    assert sample(text, "oracle_sidecar_rows_rejected_total") == 0
    exceptions = {dict(labels)["exception"] for (name, labels) in parse_metrics(text)
                  if name == "oracle_sidecar_rpc_exceptions_total"}
    assert exceptions == {"E\ufffd" + "e" * 126}  # 128 code points


def test_split_snapshots_arrive_complete_on_every_push(sidecar: SidecarProcess,
                                                       node_factory: Any) -> None:
    """1 000 long-named methods take about ten 64 KiB parts per snapshot; paced, every part of
    every push reaches the sidecar (received == sent, nothing rejected or dropped) and every
    method's count is exact."""
    methods = [f"Method{i:04d}_" + "m" * 240 for i in range(1000)]
    service = "nps.oracle." + "S" * 200
    calls = [{"service": service, "method": m, "code": "OK", "seconds": 0.02, "count": i % 5 + 1}
             for i, m in enumerate(methods)]
    node = node_factory(sidecar, interval=1.0)
    node.command(record=calls)
    first = node.command(flush=True)["flushed"]
    # No scrapes meanwhile: rendering these 17 000 long series takes the sidecar most of a second.
    wait_for(lambda: len(node.pushes_after(first["seq"])) >= 3, 30,
             message="three more pushes of the full snapshot")
    final = node.exit()
    pushes = list(node.pushes)
    assert final["final"] and pushes[-1]["pushed"] == final
    assert all(p["pushed"]["ok"] for p in pushes), [p for p in pushes if not p["pushed"]["ok"]]
    assert min(p["pushed"]["parts"] for p in pushes[1:]) >= 8
    assert pushes[-1]["counts"] == {"dropped": 0, "send_errors": 0, "overflow": 0}
    sent = pushes[-1]["sent"]
    assert sent == sum(p["pushed"]["parts"] for p in pushes)

    def received_all() -> str | None:
        text = sidecar.metrics()
        head = "".join(t for t in text.splitlines(keepends=True)
                       if t.startswith("oracle_sidecar_messages_received_total"))
        return text if sample(head, "oracle_sidecar_messages_received_total") == sent else None

    text = wait_for(received_all, 20, interval=0.5, message=f"all {sent} datagrams received")
    # Parsing all 20 MB takes seconds; the lines that matter are a few hundred kB.
    text = "".join(t for t in text.splitlines(keepends=True)
                   if t.startswith(("oracle_sidecar_", "grpc_server_started_total")))
    assert sample(text, "oracle_sidecar_messages_rejected_total") == 0
    assert sample(text, "oracle_sidecar_rows_rejected_total") == 0
    assert sample(text, "oracle_sidecar_reporter_dropped_total") == 0
    started = {dict(labels)["grpc_method"]: v for (name, labels), v in parse_metrics(text).items()
               if name == "grpc_server_started_total"}
    assert started == {m: float(i % 5 + 1) for i, m in enumerate(methods)}


def test_rows_past_64_parts_arrive_over_the_next_pushes(sidecar: SidecarProcess,
                                                        node_factory: Any) -> None:
    """600 methods with 63 long exception types each need about 85 parts: every snapshot is cut
    at 64 parts and the next one goes on with the rest, so every method arrives exact."""
    calls = [{"service": "rot.S", "method": f"M{i:03d}", "code": "INTERNAL", "seconds": 0.02,
              "count": 1, "exception": f"E{j:02d}" + "x" * 125}
             for i in range(600) for j in range(63)]
    node = node_factory(sidecar, interval=1.0)
    node.command(record=calls)
    first = node.command(flush=True)["flushed"]
    wait_for(lambda: len(node.pushes_after(first["seq"])) >= 2, 30, message="two more pushes")
    assert {p["pushed"]["parts"] for p in node.pushes} == {64}
    node.exit()

    keep = ("oracle_sidecar_messages_rejected_total", "oracle_sidecar_rows_rejected_total",
            "grpc_server_handled_total", "oracle_sidecar_rpc_exceptions_total")

    def exported() -> str | None:  # the lines that matter of ~11 MB
        text = "".join(t for t in sidecar.metrics().splitlines(keepends=True) if t.startswith(keep))
        return text if text.count(f'grpc_code="{EXPORTED["INTERNAL"]}"') == 600 else None

    text = wait_for(exported, 20, interval=0.5, message="600 methods exported")
    samples = parse_metrics(text)
    handled_ = {dict(labels)["grpc_method"]: v for (name, labels), v in samples.items()
                if name == "grpc_server_handled_total" and v}
    assert handled_ == {f"M{i:03d}": 63.0 for i in range(600)}
    excs = [v for (name, _), v in samples.items() if name == "oracle_sidecar_rpc_exceptions_total"]
    assert (len(excs), set(excs)) == (600 * 63, {1.0})
    assert sample(text, "oracle_sidecar_messages_rejected_total") == 0
    assert sample(text, "oracle_sidecar_rows_rejected_total") == 0


def test_final_makes_the_sidecar_not_ready_at_once(sidecar_factory: Any,
                                                   node_factory: Any) -> None:
    """`final` on exit: /ready turns 503 promptly (long before --stale-after), the process leaves
    /health, and its totals stay exported."""
    sc = sidecar_factory("--stale-after", "30")
    node = node_factory(sc)
    node.command(record=[call("GetReading", "OK", 0.01, 9)])
    wait_for(lambda: http_get(sc.url + "/ready")[0] == 200, 15, message="/ready 200")
    final = node.exit()
    assert final["final"] and final["ok"]
    _, body, _ = wait_for(lambda: (r := http_get(sc.url + "/ready"))[0] == 503 and r, 5,
                          message="/ready 503 after the final push")
    assert json.loads(body)["ready"] is False
    assert "exited" in json.loads(body)["reason"]  # says what happened (docs/protocol.md)
    assert http_json(sc.url + "/health")["sources"] == []
    labels = {"grpc_service": SERVICE, "grpc_method": "GetReading", "grpc_type": "unary"}
    assert parse_metrics(sc.metrics())["grpc_server_started_total", frozenset(labels.items())] == 9


def test_node_reporter_survives_a_sidecar_restart(sidecar_factory: Any,
                                                  node_factory: Any) -> None:
    """The sidecar is killed and restarted on the same path: the reporter counts the failed sends,
    finds the new socket by itself, and the new sidecar shows every call, including those made
    while it was down."""
    sc = sidecar_factory()
    node = node_factory(sc)
    node.command(record=[call("GetReading", "OK", 0.01, 10)])
    key = ("grpc_server_started_total", frozenset(
        {"grpc_service": SERVICE, "grpc_method": "GetReading", "grpc_type": "unary"}.items()))
    wait_for(lambda: parse_metrics(sc.metrics()).get(key) == 10, 15, message="10 calls")
    sc.kill()
    node.command(record=[call("GetReading", "OK", 0.01, 7)])
    wait_for(lambda: node.pushes[-1]["counts"]["send_errors"] >= 2, 15,
             message="failed sends counted while the sidecar is down")
    again = sidecar_factory()
    assert again.socket == sc.socket
    wait_for(lambda: parse_metrics(again.metrics()).get(key) == 17, 20,
             message="17 calls on the restarted sidecar")
    [source] = http_json(again.url + "/health")["sources"]
    assert source["id"] == node.source["id"]
    assert source["send_errors"] >= 2 and source["dropped"] >= 2
    assert sample(again.metrics(), "oracle_sidecar_messages_rejected_total") == 0



def test_conformance_vectors_sent_from_node_pass(sidecar: SidecarProcess,
                                                 node_factory: Any) -> None:
    """Every conformance vector, each datagram sent from the Node program's own socket, passes
    tests/protocol/run_vectors.py's checks against a real sidecar."""
    from tests.protocol import run_vectors

    node = node_factory(sidecar, "--no-start")

    class NodeSocket:
        """The runner's socket, replaced: drive.js sends each datagram to the sidecar's path."""

        def sendto(self, data: bytes, path: str) -> None:
            assert path == sidecar.socket
            errno = -node.command(send=base64.b64encode(data).decode())["sent"]
            if errno:
                raise OSError(errno, os.strerror(errno))

    receiver = run_vectors.Receiver(sidecar.socket, sidecar.url)
    receiver.sock.close()
    receiver.sock = NodeSocket()
    base = time.time()
    problems = {name: p for name, case in run_vectors.load_cases()
                if (p := run_vectors.run_case(receiver, case, base))}
    assert not problems, json.dumps(problems, indent=1, ensure_ascii=False)
