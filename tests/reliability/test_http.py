"""Hostile HTTP against the sidecar (:9090) and the dashboard (:9000), and schemathesis.

Each server gets the same treatment while slow clients hold connections open: oversized
request lines and headers, too many headers, smuggling attempts, wrong and unknown methods,
path traversal, malformed query strings. Every answer must be a clear 4xx, nothing may leak a
file, and the server must keep serving. Then schemathesis runs the published OpenAPI
description (/openapi.json) against the live server with every check it has.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.reporter.core import Reporter
from sidecar.web import KEEPALIVE  # what both servers give a connection for its request
from tests.conftest import SidecarProcess, free_port, http_get, wait_for

ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def raw(port: int, data: bytes, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` as is; (status, headers, body) of the answer, status 0 when none came."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(data)
        chunks = []
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
                if _ and b"content-length:" in head.lower():
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    if len(rest) >= length:
                        break
        except TimeoutError:
            pass
    answer = b"".join(chunks)
    if not answer:
        return 0, {}, b""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return int(lines[0].split()[1]), headers, body


class SlowClient(threading.Thread):
    """A connection that never finishes its request; records when the server cut it off."""

    def __init__(self, port: int, kind: str) -> None:
        super().__init__(daemon=True)
        self.kind = kind
        self.conn = socket.create_connection(("127.0.0.1", port), timeout=1)
        self.opened = time.monotonic()
        self.closed_after: float | None = None

    def run(self) -> None:
        deadline = self.opened + 3 * KEEPALIVE
        if self.kind == "partial":
            self.conn.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        drip = iter(b"X-Slow: " + b"a" * 1000)
        try:
            while time.monotonic() < deadline:
                if self.kind == "drip":  # one byte a second: the slowloris pattern
                    self.conn.sendall(bytes([next(drip)]) if self.opened + 0.5 < time.monotonic()
                                      else b"GET / HTTP/1.1\r\n")
                try:
                    if self.conn.recv(4096) == b"":
                        break
                except TimeoutError:
                    continue
        except OSError:  # reset or broken pipe: cut off as well
            pass
        self.closed_after = time.monotonic() - self.opened
        self.conn.close()


@pytest.fixture(params=["sidecar", "dashboard"])
def server(request: pytest.FixtureRequest, sidecar: SidecarProcess, tmp_path: Path
           ) -> Iterator[dict[str, Any]]:
    """The server under attack, with some data in it: {name, port, url, log, pid}."""
    rep = Reporter("hostile.Svc", "1", socket_path=sidecar.socket, interval=0.2).start()
    with rep.track("Work"):
        pass
    wait_for(lambda: http_get(sidecar.url + "/ready")[0] == 200, 10, message="ready")
    if request.param == "sidecar":
        assert sidecar.proc is not None
        yield {"name": "sidecar", "port": sidecar.port, "url": sidecar.url, "log": sidecar.log,
               "pid": sidecar.proc.pid}
    else:
        port = free_port()
        log_path = tmp_path / "dashboard.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sidecar.cli", "dashboard", "--host", "127.0.0.1",
                 "--port", str(port), "--target", sidecar.url],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: http_get(url + "/livez")[0] == 200, 15, message="the dashboard")
            yield {"name": "dashboard", "port": port, "url": url, "log": log_path.read_text,
                   "pid": proc.pid}
        finally:
            proc.kill()
            proc.wait(10)
    rep.close()


HOSTILE: list[tuple[str, bytes]] = [
    ("request line of 20 KB", b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("query string of 20 KB", b"GET /livez?q=" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("header of 20 KB", b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000
     + b"\r\n\r\n"),
    ("200 headers", b"GET /livez HTTP/1.1\r\nHost: x\r\n"
     + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n"),
    ("unknown method token", b"BREW /livez HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("invalid method token", b"G(T /livez HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("bad HTTP version", b"GET /livez HTTP/9.9\r\nHost: x\r\n\r\n"),
    ("Content-Length and chunked (smuggling)", b"POST /livez HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("broken chunked body", b"POST /livez HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
     b"\r\n\r\nzz\r\n"),
    ("negative Content-Length", b"POST /livez HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
    ("control character in the path", b"GET /li\x01vez HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("body of 100 MB announced", b"POST /livez HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 100000000\r\n\r\n"),
]
TRAVERSAL = [
    "/../../../../etc/passwd", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2f..%2fetc%2fpasswd",
    "/static/../../../etc/passwd", "//etc/passwd", "/app.js/../../../etc/passwd",
    "/%252e%252e/etc/passwd", "/..\\..\\etc\\passwd", "/index.html%00.js", "/.git/config",
    "/sidecar/dashboard/app.py", "/openapi.json/../../etc/passwd",
]
QUERIES = {  # path?query -> must the answer be a 400 (else 200 or 400)
    "sidecar": [
        ("/api/v1/history?rpc=%ZZ", True), ("/api/v1/history?rpc=%00%FF", True),
        ("/api/v1/history?rpc=" + "a" * 600 + "/b", True), ("/api/v1/history?rpc=x", True),
        ("/api/v1/history?rpc=a/b&rpc=c/d", False), ("/metrics?format=%FF%FE", False),
        ("/metrics?=&&==&format", False), ("/health?a[]=1&a[x]=2", False),
        ("/api/v1/snapshot?%00=%00", False),
    ],
    "dashboard": [
        ("/api/history?rpc=%ZZ", True), ("/api/history?rpc=" + "a" * 600 + "/b", True),
        ("/api/history?rpc=x", True), ("/api/status?window=forever", True),
        ("/api/status?window=%ZZ", True), ("/api/status?window=1m&window=5m", False),
        ("/api/status?=&&==&window", False), ("/ready?a[]=1&a[x]=2", False),
    ],
}


def test_hostile_http_gets_clear_4xx_slow_clients_are_cut_off_and_schemathesis_passes(
        server: dict[str, Any], tmp_path: Path, figures: Any) -> None:
    """Oversized, smuggled, unknown, traversing, malformed; slow clients; then schemathesis."""
    port, url = server["port"], server["url"]
    slow = [SlowClient(port, kind) for kind in ("idle", "partial", "drip") for _ in range(10)]
    for client in slow:
        client.start()

    answers: dict[str, int] = {}
    for what, data in HOSTILE:
        status, _, _ = raw(port, data)
        answers[what] = status
        assert 400 <= status < 500, (what, status)
        assert http_get(url + "/livez")[0] == 200, f"not serving after {what}"

    endpoints = (["/metrics", "/health", "/ready", "/livez", "/api/v1/snapshot",
                  "/api/v1/history", "/openapi.json"] if server["name"] == "sidecar" else
                 ["/", "/app.js", "/api/status", "/api/history", "/livez", "/ready",
                  "/openapi.json"])
    for path in endpoints:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            status, headers, body = raw(port, f"{method} {path} HTTP/1.1\r\nHost: x\r\n"
                                              f"Content-Length: 0\r\n\r\n".encode())
            assert status == 405, (method, path, status)
            assert "GET" in headers["allow"] and json.loads(body)["status"] == 405

    for path in TRAVERSAL:
        status, _, body = raw(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert 400 <= status < 500, (path, status)
        assert b"root:" not in body and b"[core]" not in body and b"import" not in body

    for path, must_refuse in QUERIES[server["name"]]:
        status, text, _ = http_get(url + path)
        assert status == 400 if must_refuse else status in (200, 400), (path, status)
        if not path.startswith("/metrics"):
            json.loads(text)

    t0 = time.monotonic()
    report = tmp_path / "schemathesis.json"
    out = subprocess.run(
        [str(SCHEMATHESIS), "run", url + "/openapi.json", "--checks", "all",
         "--max-examples", "25", "--seed", "8", "--workers", "1", "--no-color",
         "--request-timeout", "5", "--report", "json", "--report-json-path", str(report)],
        cwd=tmp_path, capture_output=True, text=True, timeout=180)
    schemathesis_s = time.monotonic() - t0
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    summary = out.stdout.rsplit("Test cases:", 1)[-1].strip().splitlines()[0]

    for client in slow:
        client.join(3 * KEEPALIVE + 5)
    cut = [c.closed_after for c in slow]
    assert all(c is not None and c <= KEEPALIVE + 3 for c in cut), cut
    assert http_get(url + "/livez")[0] == 200
    assert http_get(url + ("/metrics" if server["name"] == "sidecar" else "/api/status"))[0] \
        == 200
    log = server["log"]()
    assert "Traceback" not in log and "Error handling request" not in log
    figures(server=server["name"], hostile_requests=len(HOSTILE), traversal=len(TRAVERSAL),
            wrong_methods=4 * len(endpoints), statuses=answers, schemathesis=summary,
            schemathesis_s=round(schemathesis_s, 1), slow_clients=len(slow),
            slow_cut_off_s_max=round(max(c for c in cut if c is not None), 1),
            rss_kib=int(Path(f"/proc/{server['pid']}/status").read_text().split("VmRSS:")[1]
                        .split()[0]) if os.path.exists(f"/proc/{server['pid']}") else None)
