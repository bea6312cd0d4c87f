#!/usr/bin/env python3
"""Feed the protocol's conformance vectors to a RUNNING receiver and check what it exports.

    python tests/protocol/run_vectors.py --socket PATH --url http://127.0.0.1:9090 [--only NAME]

Standard library only, so that it runs anywhere a receiver (this sidecar, or another
implementation of docs/protocol.md) runs. Every case in tests/protocol/vectors/*.json is sent
datagram by datagram over the Unix socket; after each datagram the runner waits until
``oracle_sidecar_messages_received_total`` has counted it, then compares the change of
``oracle_sidecar_messages_rejected_total{reason}`` and
``oracle_sidecar_rows_rejected_total{reason}`` with the step's expectation. After a case's
steps it checks the exported series on /metrics and /api/v1/snapshot and the sources on
/health. Cases are independent (own source ids, own service
names, default buckets), so they run against one receiver in any order; run them against a
receiver that nothing else pushes to. Exit status 0 when every case passed.

The module also holds what the in-process test (tests/protocol/test_vectors.py) shares: loading
the cases, building each step's datagram, and comparing an observed state with a case.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import socket
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parent / "vectors"
NOW_TOKEN = "@NOW@"

Key = tuple[str, str, str]  # (service, method, type)


def load_cases(directory: Path = VECTORS) -> list[tuple[str, dict[str, Any]]]:
    """(file stem, case) for every vector, sorted by name."""
    return [(p.stem, json.loads(p.read_text(encoding="utf-8")))
            for p in sorted(directory.glob("*.json"))]


def datagram(step: dict[str, Any], base: float) -> bytes:
    """The bytes one step sends; ``base`` is the run's start (Unix time)."""
    if "message" in step:
        msg = json.loads(json.dumps(step["message"]))  # a copy
        src = msg.get("source")
        if isinstance(src, dict) and isinstance(src.get("started"), (int, float)):
            src["started"] = base + src["started"]
        if isinstance(msg.get("time"), (int, float)) and not isinstance(msg["time"], bool):
            msg["time"] = base + msg["time"]
        return json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if "text" in step:
        text: str = step["text"]
        return text.replace(NOW_TOKEN, repr(base)).encode("utf-8", "surrogatepass")
    if "base64" in step:
        return base64.b64decode(step["base64"])
    if "fill" in step:
        fill: dict[str, Any] = step["fill"]
        return str(fill["byte"]).encode() * int(fill["count"])
    raise ValueError(f"a step needs message, text, base64 or fill: {sorted(step)}")


def step_problems(index: int, step: dict[str, Any], result: str,
                  rows: dict[str, int]) -> list[str]:
    """What differs between a step's expectation and (its result, rows rejected by reason)."""
    out = []
    if result != step["expect"]:
        out.append(f"step {index}: expected {step['expect']}, got {result}")
    want_rows = {k: v for k, v in step.get("rows_rejected", {}).items() if v}
    got_rows = {k: v for k, v in rows.items() if v}
    if want_rows != got_rows:
        out.append(f"step {index}: expected rows rejected {want_rows}, got {got_rows}")
    return out


def state_problems(case: dict[str, Any], state: dict[str, Any]) -> list[str]:
    """What differs between a case's expected end state and the observed ``state``.

    ``state`` has ``series`` {(service, method, type): {"started", "handled", "count", "sum",
    "exceptions"}}, ``sources`` {id: {"service", "version", "checks", "dropped",
    "send_errors"}} for the live sources.
    """
    out = []
    series, sources = state["series"], state["sources"]
    for want in case.get("series", []):
        key = (want["service"], want["method"], want.get("type", "unary"))
        have = series.get(key)
        if have is None:
            out.append(f"series {key} is not exported")
            continue
        for field in ("started", "count"):
            if field in want and have[field] != want[field]:
                out.append(f"series {key}: {field} {have[field]}, expected {want[field]}")
        if "sum" in want and not math.isclose(have["sum"], want["sum"], rel_tol=1e-9,
                                              abs_tol=1e-9):
            out.append(f"series {key}: sum {have['sum']}, expected {want['sum']}")
        for field in ("handled", "exceptions"):
            if field in want:
                got = {k: v for k, v in have[field].items() if v}
                if got != want[field]:
                    out.append(f"series {key}: {field} {got}, expected {want[field]}")
    for gone in case.get("absent", []):
        for key in series:
            if key[:2] == (gone["service"], gone["method"]) and gone.get("type", key[2]) == key[2]:
                out.append(f"series {key} is exported but must not be")
    for sid, want_state in case.get("sources", {}).items():
        have_state = "live" if sid in sources else "retired"
        if have_state != want_state:
            out.append(f"source {sid!r} is {have_state}, expected {want_state}")
    for sid, fields in case.get("source_fields", {}).items():
        for name, value in fields.items():
            got = sources.get(sid, {}).get(name)
            if got != value:
                out.append(f"source {sid!r} {name} is {got!r}, expected {value!r}")
    for sid, checks in case.get("checks", {}).items():
        got = sources.get(sid, {}).get("checks")
        if got != checks:
            out.append(f"source {sid!r} checks are {got!r}, expected {checks!r}")
    for sid, n in case.get("check_count", {}).items():
        got_n = len(sources.get(sid, {}).get("checks") or {})
        if got_n != n:
            out.append(f"source {sid!r} has {got_n} checks, expected {n}")
    for sid, counts in case.get("reporter", {}).items():
        for name, value in counts.items():
            got = sources.get(sid, {}).get(name)
            if got != value:
                out.append(f"source {sid!r} reporter {name} is {got}, expected {value}")
    return out


# ---------------------------------------------------------------------------------------------
# Against a running receiver


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Samples of the Prometheus text format (the subset a receiver writes)."""
    out = {}
    for line in text.split("\n"):
        if not line or line.startswith("#"):
            continue
        name, labels, rest = line, {}, ""
        brace = line.find("{")
        space = line.find(" ")
        if brace != -1 and (space == -1 or brace < space):
            name = line[:brace]
            i = brace + 1
            while line[i] != "}":
                eq = line.index("=", i)
                label = line[i:eq].strip(", ")
                j, value = eq + 2, []
                while line[j] != '"':
                    if line[j] == "\\":
                        j += 1
                        value.append({"n": "\n", "\\": "\\", '"': '"'}[line[j]])
                    else:
                        value.append(line[j])
                    j += 1
                labels[label] = "".join(value)
                i = j + 1
                while line[i] in ", ":
                    i += 1
            rest = line[i + 1:]
        else:
            name, rest = line[:space], line[space:]
        out[(name, frozenset(labels.items()))] = float(rest.split()[0])
    return out


class Receiver:
    """A running receiver: its socket and its HTTP address."""

    def __init__(self, socket_path: str, url: str, timeout: float = 10.0) -> None:
        self.socket_path = socket_path
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.settimeout(timeout)  # blocking: a full queue waits, nothing is dropped

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=self.timeout) as response:
            body: bytes = response.read()
            return body.decode("utf-8")

    def counters(self) -> tuple[float, dict[str, float], dict[str, float]]:
        samples = parse_metrics(self.get("/metrics"))
        received = samples.get(("oracle_sidecar_messages_received_total", frozenset()), 0.0)
        rejected: dict[str, float] = {}
        rows: dict[str, float] = {}
        for (name, labels), value in samples.items():
            if name == "oracle_sidecar_messages_rejected_total":
                rejected[dict(labels)["reason"]] = value
            elif name == "oracle_sidecar_rows_rejected_total":
                rows[dict(labels)["reason"]] = value
        return received, rejected, rows

    def send(self, data: bytes) -> tuple[str, dict[str, int]]:
        """Send one datagram; (accepted or the rejection reason, rows rejected by reason)."""
        received, rejected, rows = self.counters()
        try:
            self.sock.sendto(data, self.socket_path)
        except OSError as err:
            if err.errno != 90:  # EMSGSIZE: larger than the socket takes; nothing to check
                raise
            return "oversized", {}
        deadline = time.monotonic() + self.timeout
        while True:
            now_received, now_rejected, now_rows = self.counters()
            if now_received > received:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the receiver did not count the datagram")
            time.sleep(0.01)
        reasons = [r for r, n in now_rejected.items() if n > rejected.get(r, 0)]
        result = reasons[0] if len(reasons) == 1 else "accepted" if not reasons else str(reasons)
        return result, {r: int(n - rows.get(r, 0)) for r, n in now_rows.items()
                        if n > rows.get(r, 0)}

    def state(self) -> dict[str, Any]:
        samples = parse_metrics(self.get("/metrics"))
        series: dict[Key, dict[str, Any]] = {}

        def entry(labels: dict[str, str]) -> dict[str, Any]:
            key = (labels["grpc_service"], labels["grpc_method"], labels["grpc_type"])
            return series.setdefault(key, {"started": 0, "handled": {}, "count": 0, "sum": 0.0,
                                           "exceptions": {}})

        exceptions: dict[tuple[str, str], dict[str, int]] = {}
        for (name, labels_set), value in samples.items():
            labels = dict(labels_set)
            if name == "grpc_server_started_total":
                entry(labels)["started"] = int(value)
            elif name == "grpc_server_handled_total":
                entry(labels)["handled"][labels["grpc_code"]] = int(value)
            elif name == "grpc_server_handling_seconds_count":
                entry(labels)["count"] = int(value)
            elif name == "grpc_server_handling_seconds_sum":
                entry(labels)["sum"] = value
            elif name == "oracle_sidecar_rpc_exceptions_total":
                exceptions.setdefault((labels["grpc_service"], labels["grpc_method"]), {})[
                    labels["exception"]] = int(value)
        for key, s in series.items():
            s["exceptions"] = exceptions.get(key[:2], {})
        health = json.loads(self.get("/health"))
        sources = {s["id"]: s for s in health["sources"]}
        snapshot = json.loads(self.get("/api/v1/snapshot"))
        in_snapshot = {(r["service"], r["method"], r["type"]): r["count"]
                       for r in snapshot["windows"]["all"]["rpcs"]}
        return {"series": series, "sources": sources, "snapshot": in_snapshot}


def run_case(receiver: Receiver, case: dict[str, Any], base: float) -> list[str]:
    problems = []
    for i, step in enumerate(case["steps"]):
        result, rows = receiver.send(datagram(step, base))
        problems += step_problems(i, step, result, rows)
    state = receiver.state()
    problems += state_problems(case, state)
    for want in case.get("series", []):  # the JSON API counts finished RPCs, by code
        key = (want["service"], want["method"], want.get("type", "unary"))
        finished = sum(want.get("handled", {}).values())
        if "handled" in want and state["snapshot"].get(key) != finished:
            problems.append(f"/api/v1/snapshot: {key} count {state['snapshot'].get(key)}, "
                            f"expected {finished}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", required=True, help="the receiver's Unix datagram socket")
    parser.add_argument("--url", required=True, help="the receiver's HTTP address")
    parser.add_argument("--vectors", default=str(VECTORS), help="directory of the cases")
    parser.add_argument("--only", action="append", default=[], help="run only this case")
    args = parser.parse_args(argv)
    receiver = Receiver(args.socket, args.url)
    base = time.time()
    failed = 0
    cases = [(n, c) for n, c in load_cases(Path(args.vectors)) if not args.only or n in args.only]
    for name, case in cases:
        problems = run_case(receiver, case, base)
        print(f"{'ok  ' if not problems else 'FAIL'} {name}: {case['name']}")
        for p in problems:
            print(f"       {p}")
        failed += bool(problems)
    print(f"{len(cases) - failed} of {len(cases)} cases passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
