"""Shared fixtures: a real sidecar process, free ports, HTTP helpers, a tiny gRPC service."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 5.0
             ) -> tuple[int, str, dict[str, str]]:
    """(status, body, headers) of a GET; HTTP errors are answers, not exceptions."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), dict(err.headers)


def http_json(url: str) -> Any:
    return json.loads(http_get(url)[1])


def wait_for(predicate: Any, timeout: float = 10.0, message: str = "condition",
             interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``message`` on timeout.

    The one condition wait of the tests: an error that means "not yet" (a refused connection,
    a half-written file, a gRPC server still starting) counts as not yet, and is shown as the
    last value when time runs out.
    """
    import grpc

    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (OSError, ValueError, grpc.RpcError) as err:
            last = err
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}; last: {last!r}")


@dataclass
class SidecarProcess:
    """A real ``oracle-sidecar serve`` process on a free port and a socket in a temp dir."""

    socket: str
    port: int
    extra: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> SidecarProcess:
        assert self.log_path is not None
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child writes to it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar.cli", "serve", "--socket", self.socket,
             "--host", "127.0.0.1", "--port", str(self.port), "--drain-seconds", "0.2",
             *self.extra],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env},
        )
        log.close()
        if wait:
            wait_for(lambda: http_get(self.url + "/livez")[0] == 200, 15,
                     message="the sidecar to answer /livez")
        return self

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(10)

    def metrics(self) -> str:
        return http_get(self.url + "/metrics")[1]

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path else ""


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[SidecarProcess]:
    """A started sidecar process; stopped (by PID) after the test."""
    sc = SidecarProcess(str(tmp_path / "run" / "metrics.sock"), free_port(),
                        log_path=tmp_path / "sidecar.log")
    sc.start()
    yield sc
    if sc.proc is not None and sc.proc.poll() is None:
        sc.proc.kill()
        sc.proc.wait(10)


@pytest.fixture
def sidecar_factory(tmp_path: Path) -> Iterator[Any]:
    """Makes sidecar processes with extra flags; every one is stopped after the test."""
    made: list[SidecarProcess] = []

    def make(*extra: str, start: bool = True, socket_path: str | None = None,
             env: dict[str, str] | None = None) -> SidecarProcess:
        sc = SidecarProcess(socket_path or str(tmp_path / "run" / "metrics.sock"), free_port(),
                            list(extra), env or {}, log_path=tmp_path / f"sidecar{len(made)}.log")
        made.append(sc)
        return sc.start() if start else sc

    yield make
    for sc in made:
        if sc.proc is not None and sc.proc.poll() is None:
            sc.proc.kill()
            sc.proc.wait(10)


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Samples of a Prometheus text exposition, parsed by prometheus-client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def handled(samples: dict[Any, float], method: str, code: str) -> float:
    """grpc_server_handled_total for one method and code, summed over services and types."""
    return sum(v for (name, labels), v in samples.items()
               if name == "grpc_server_handled_total" and ("grpc_method", method) in labels
               and ("grpc_code", code) in labels)


@pytest.fixture
def fake_kube() -> Iterator[Any]:
    """A local fake Kubernetes API server (pods, ConfigMaps, 403/409 injection)."""
    from tests.fakes.kube_api import FakeKubeAPI

    api = FakeKubeAPI().start()
    yield api
    api.stop()
