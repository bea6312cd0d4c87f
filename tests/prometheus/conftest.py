"""Fixtures for the Prometheus tests: the real promtool and a real Prometheus server.

Both come from the Debian package ``prometheus`` (scripts/setup.sh installs it). The server runs
on 127.0.0.1 with a free port, a temporary configuration and a temporary TSDB, and is stopped by
its PID after the test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar import protocol
from tests.conftest import free_port, http_get, wait_for

REPO = Path(__file__).resolve().parent.parent.parent
RULES = REPO / "prometheus" / "oracle-rules.yaml"
RULE_TESTS = REPO / "prometheus" / "oracle-rules.test.yaml"
DASHBOARD = REPO / "charts" / "oracle" / "files" / "grafana-dashboard.json"
JOB = "oracle-sidecar"  # the job the plain rule file selects


def tool(name: str) -> str:
    """The path of ``name`` (promtool, prometheus); the test fails when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: install the Debian package prometheus "
                    f"(bash scripts/setup.sh --test)")
    return path


def promtool(*args: str, stdin: str | None = None, cwd: Path | None = None
             ) -> subprocess.CompletedProcess[str]:
    """Run promtool with ``args``; the result keeps its exit code and output."""
    return subprocess.run([tool("promtool"), *args], input=stdin, capture_output=True,
                          text=True, timeout=60, cwd=cwd, check=False)


class PromQLError(AssertionError):
    """Prometheus refused a query (a parse or evaluation error)."""


@dataclass
class PrometheusServer:
    """A running Prometheus process and its HTTP API."""

    proc: subprocess.Popen[bytes]
    url: str
    started: float  # wall-clock time just before the process started
    log_path: Path

    def api(self, path: str, **params: Any) -> Any:
        """The ``data`` of a successful /api/v1 answer; PromQLError for an error answer."""
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        status, body, _ = http_get(f"{self.url}/api/v1/{path}?{query}", timeout=10)
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise PromQLError(f"{path} {params}: HTTP {status}: {answer.get('errorType')}: "
                              f"{answer.get('error')}")
        return answer["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The instant vector (or scalar, as one sample) of ``expr`` at ``at`` (default now)."""
        data = self.api("query", query=expr, time=None if at is None else f"{at:.3f}")
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        assert data["resultType"] in ("vector", "matrix"), data["resultType"]
        return list(data["result"])

    def values(self, expr: str, *labels: str, at: float | None = None
               ) -> dict[tuple[str, ...], float]:
        """``expr``'s samples as {(label values...): value}."""
        return {tuple(r["metric"].get(name, "") for name in labels): float(r["value"][1])
                for r in self.query(expr, at)}

    def scalar(self, expr: str, at: float | None = None) -> float | None:
        """The single value of ``expr``, or None when it returns nothing."""
        result = self.query(expr, at)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def prometheus_config(targets: list[str], rule_files: list[Path]) -> dict[str, Any]:
    """A configuration that scrapes ``targets`` every second as the job the rules select."""
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                   "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{
            "job_name": JOB,
            # As with a PodMonitor's default: the target's labels win over the scraped ones.
            "honor_labels": False,
            "metrics_path": "/metrics",
            "static_configs": [{"targets": targets}],
        }],
    }


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[..., PrometheusServer]]:
    """``prometheus(targets, rule_files=[])`` starts a Prometheus; it is stopped by PID after."""
    started: list[PrometheusServer] = []

    def start(targets: list[str], rule_files: list[Path] | None = None) -> PrometheusServer:
        home = tmp_path / f"prometheus{len(started)}"
        home.mkdir()
        config = home / "prometheus.yml"
        config.write_text(yaml.safe_dump(prometheus_config(targets, rule_files or [])))
        check = promtool("check", "config", str(config))
        assert check.returncode == 0, check.stdout + check.stderr
        port = free_port()
        log_path = home / "prometheus.log"
        with open(log_path, "wb") as log:
            begun = time.time()
            proc = subprocess.Popen(
                [tool("prometheus"), f"--config.file={config}",
                 f"--storage.tsdb.path={home / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, cwd=home)
        server = PrometheusServer(proc, f"http://127.0.0.1:{port}", begun, log_path)
        started.append(server)
        wait_for(lambda: proc.poll() is None and http_get(server.url + "/-/ready")[0] == 200,
                 20, message=f"Prometheus to be ready (log: {log_path})")
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.terminate()
            try:
                server.proc.wait(15)
            except subprocess.TimeoutExpired:
                server.proc.kill()
                server.proc.wait(10)
        assert server.proc.poll() is not None


# -- a real grpcio server with the Oracle's eight RPCs ------------------------------------------

SERVICE = "nps.oracle.OracleService"
METHODS = ("GetReading", "GetNameReading", "GetQuestionSign", "GetDailyInsight", "SuggestRange",
           "AnalyzeSession", "GetTimingAlignment", "HealthCheck")


@dataclass
class OracleServer:
    """A grpcio server whose eight Oracle RPCs sleep and answer as each request asks.

    A request is JSON ``{"sleep": SECONDS, "code": "NAME"}`` (Go's name, ``NotFound``); the
    answer comes after the sleep, with that status code (OK when absent). The reporter's
    interceptor counts every call.
    """

    server: Any
    port: int
    channel: Any  # one client channel, shared by the calling threads

    def call(self, method: str, sleep: float = 0.0, code: str = "OK") -> str:
        """Call ``method`` once; the status code the client saw, by Go's name."""
        import grpc

        request = json.dumps({"sleep": sleep, "code": code}).encode()
        try:
            self.channel.unary_unary(f"/{SERVICE}/{method}")(request, timeout=60)
        except grpc.RpcError as err:
            return protocol.CODES[err.code().value[0]]
        return "OK"


def _handle(request: bytes, context: Any) -> bytes:
    import grpc

    asked = json.loads(request)
    time.sleep(asked.get("sleep", 0.0))
    if asked.get("code", "OK") != "OK":
        number = protocol.CODES.index(asked["code"])
        context.abort(next(c for c in grpc.StatusCode if c.value[0] == number), "asked for it")
    return b"ok"


@pytest.fixture
def oracle_server() -> Iterator[Callable[..., OracleServer]]:
    """``oracle_server(reporter)`` serves the eight RPCs with the reporter's interceptor."""
    from concurrent import futures

    import grpc

    servers: list[OracleServer] = []

    def start(reporter: Any, workers: int = 32) -> OracleServer:
        server = grpc.server(futures.ThreadPoolExecutor(workers),
                             interceptors=[reporter.server_interceptor()])
        handlers = {m: grpc.unary_unary_rpc_method_handler(_handle) for m in METHODS}
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE,
                                                                              handlers)])
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        oracle = OracleServer(server, port, grpc.insecure_channel(f"127.0.0.1:{port}"))
        servers.append(oracle)
        return oracle

    yield start
    for oracle in servers:
        oracle.channel.close()
        oracle.server.stop(None).wait(10)
