"""Dashboard test helpers: synthetic traffic through a real reporter, a dashboard process."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidecar.reporter.core import Reporter
from tests.conftest import free_port, http_get, wait_for

XSS = "<img src=x onerror=alert(1)>"
SERVICE = "nps.oracle.OracleService"

# method -> (typical seconds, share of calls that fail, error code)
ORACLE_METHODS: dict[str, tuple[float, float, str]] = {
    "GetReading": (0.012, 0.0, "Internal"),
    "GetNameReading": (0.018, 0.004, "InvalidArgument"),
    "GetQuestionSign": (0.009, 0.0, "Internal"),
    "GetDailyInsight": (0.045, 0.01, "Unavailable"),
    "SuggestRange": (0.006, 0.0, "Internal"),
    "AnalyzeSession": (0.26, 0.03, "DeadlineExceeded"),
    "GetTimingAlignment": (0.021, 0.0, "Internal"),
    "HealthCheck": (0.001, 0.0, "Internal"),
}


@dataclass
class Traffic:
    """Feeds a real Reporter with plausible RPC observations from a thread of its own.

    ``rate`` calls per second spread over ``methods``, swinging by ``wave`` (0.4: +-40 %) over
    ``period`` seconds; durations are log-normal around each method's typical time, slower when
    the rate is high. ``calls`` counts what was recorded, per method.
    """

    reporter: Reporter
    rate: float = 40.0
    methods: dict[str, tuple[float, float, str]] = field(
        default_factory=lambda: dict(ORACLE_METHODS))
    seed: int = 1
    slowdown: float = 1.0
    wave: float = 0.0
    period: float = 60.0
    calls: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        rng = random.Random(self.seed)
        names = list(self.methods)
        weights = [3.0 if n.startswith("Get") else 1.0 for n in names]
        step = 0.05
        started = time.monotonic()
        owed = 0.0
        while not self._stop.wait(step):
            swing = self.wave * math.sin(2 * math.pi * (time.monotonic() - started) / self.period)
            owed += self.rate * (1 + swing) * step
            calls, owed = int(owed), owed - int(owed)
            for _ in range(calls):
                name = rng.choices(names, weights)[0]
                typical, fail, code = self.methods[name]
                series = self.reporter.series(f"/{SERVICE}/{name}")
                if series is None:
                    continue
                seconds = typical * self.slowdown * (1 + swing) * rng.lognormvariate(0, 0.5)
                failed = rng.random() < fail
                self.reporter.observe(series, seconds, code if failed else "OK",
                                      "RuntimeError" if failed and code == "Internal" else None)
                self.calls[name] = self.calls.get(name, 0) + 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def kubeconfig(path: Path, server: str) -> Path:
    """A kubeconfig for the fake API server, as `kubectl config view` would write it."""
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "fake", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake",
                                                  "namespace": "oracle"}}]}))
    return path


@dataclass
class DashboardProcess:
    """A real ``oracle-sidecar dashboard`` process on a free port."""

    args: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> DashboardProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child writes to it
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DASHBOARD_", "ORACLE_", "ALERT_", "KUBE"))}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar.cli", "dashboard", "--host", "127.0.0.1",
             "--port", str(self.port), *self.args],
            stdout=log, stderr=subprocess.STDOUT, env={**env, **self.env})
        log.close()
        wait_for(lambda: http_get(self.url + "livez", timeout=2)[0] == 200, 15,
                 message="the dashboard to answer /livez")
        return self

    def status(self, window: str = "1m") -> Any:
        return json.loads(http_get(f"{self.url}api/status?window={window}")[1])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def alert_state(now: float | None = None, targets: tuple[str, str] = ("oracle-1", "oracle-0")
                ) -> dict[str, Any]:
    """Alerter state as the alerter writes it: one open alert, one resolved."""
    now = now or time.time()
    return {"version": 1, "updated": now - 12, "alerts": {
        f"error_rate|{targets[0]}|{SERVICE}/AnalyzeSession": {
            "kind": "error_rate", "severity": "WARNING", "target": targets[0],
            "rpc": f"{SERVICE}/AnalyzeSession", "open": True, "opened": now - 240,
            "last_sent": now - 120, "cooldown_until": now + 180,
            "summary": "AnalyzeSession error rate 3.1 % over 5 min (threshold 2 %)"},
        f"unreachable|{targets[1]}|-": {
            "kind": "unreachable", "severity": "CRITICAL", "target": targets[1], "rpc": None,
            "open": False, "opened": now - 1900, "last_sent": now - 1900,
            "cooldown_until": now - 1600, "summary": f"{targets[1]} did not answer for 90 s"},
    }}
