"""Real processes for the demo tests: start by argv, stop by PID, read their logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import free_port, wait_for

# Runs the CLI with sidecar.reporter made unimportable, as if the package were not installed.
WITHOUT_REPORTER = (
    "import sys; sys.modules['sidecar.reporter'] = None; "
    "from sidecar.cli import main; sys.exit(main(sys.argv[1:]))"
)


def http(method: str, url: str, body: Any = None, timeout: float = 5.0) -> tuple[int, Any]:
    """(status, parsed JSON or text); HTTP errors are answers, not exceptions."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            status, raw = reply.status, reply.read().decode()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read().decode()
        err.close()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def grpc_health(port: int, service: str = "") -> str:
    """The grpc.health.v1 status name of ``service`` on 127.0.0.1:``port``."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=2)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


class Proc:
    """A child process running ``python -m sidecar.cli ARGS`` (or ``python -c CODE ARGS``)."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None,
                 code: str | None = None) -> None:
        self.log_path = log_path
        launcher = ["-c", code] if code else ["-m", "sidecar.cli"]
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *launcher, *args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``sig`` and wait; kills and fails the test when it does not exit in time."""
        if self.running():
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"pid {self.pid} ignored {signal.Signals(sig).name} for "
                                 f"{timeout} s; log:\n{self.log()}") from None

    def kill(self) -> None:
        """Clean-up: SIGKILL if still running, and reap."""
        if self.running():
            self.proc.kill()
        self.proc.wait(10)


def json_log(proc: Proc) -> list[dict[str, Any]]:
    """The JSON log lines a process wrote (other lines skipped)."""
    lines = []
    for line in proc.log().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Samples of a Prometheus text exposition, parsed by prometheus-client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def handled_by_method(text: str, service: str) -> dict[str, dict[str, int]]:
    """grpc_server_handled_total of ``service`` as {method: {code: n}}, zero counts left out."""
    out: dict[str, dict[str, int]] = {}
    for (name, labels), value in parse_metrics(text).items():
        tags = dict(labels)
        if name == "grpc_server_handled_total" and tags.get("grpc_service") == service \
                and value:
            out.setdefault(tags["grpc_method"], {})[tags["grpc_code"]] = int(value)
    return out


def start_oracle(procs: Callable[..., Proc], *extra: str, socket_path: str | None = None,
                 code: str | None = None, name: str = "oracle") -> tuple[Proc, int, str]:
    """A real ``demo-oracle`` on free ports: (process, gRPC port, control base URL)."""
    port, control = free_port(), free_port()
    args = ["demo-oracle", "--host", "127.0.0.1", "--port", str(port),
            "--control-port", str(control), *extra]
    if socket_path:
        args += ["--socket", socket_path]
    proc = procs(name, args, code=code)
    url = f"http://127.0.0.1:{control}"
    wait_for(lambda: proc.running() and http("GET", url + "/knobs")[0] == 200, 15,
             f"the demo Oracle's control endpoint (log: {proc.log_path})")
    wait_for(lambda: grpc_health(port) == "SERVING", 10, "the demo Oracle to be SERVING")
    return proc, port, url
