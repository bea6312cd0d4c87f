"""Helpers for the reliability tests: worker processes, client traffic, scrapers, figures.

Every figure a test measures goes through the ``figures`` fixture: it is printed in pytest's
terminal summary (so CI's output holds it) and, when ``RELIABILITY_FIGURES`` names a file,
written there as JSON. docs/reliability.md quotes those figures.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from sidecar.protocol import CODES
from tests.conftest import parse_metrics
from tests.reliability.worker import SERVICE

ROOT = Path(__file__).resolve().parents[2]
_FIGURES: list[dict[str, Any]] = []
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- figures -------------------------------------------------------------------------------------

@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``figures(**values)`` records what this test measured, under the test's name."""
    def record(**values: Any) -> None:
        _FIGURES.append({"test": request.node.name, **values})

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("reliability figures")
    for entry in _FIGURES:
        terminalreporter.write_line(json.dumps(entry, sort_keys=False))
    target = os.environ.get("RELIABILITY_FIGURES")
    if target:
        Path(target).write_text(json.dumps(_FIGURES, indent=1) + "\n")


# -- /proc ---------------------------------------------------------------------------------------

def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time ``pid`` has used, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


# -- worker processes ----------------------------------------------------------------------------

class Worker:
    """A ``tests.reliability.worker`` gRPC server process, talked to over its stdout."""

    def __init__(self, socket_path: str, log_path: Path, *, interval: float = 0.2,
                 monitoring: bool = True, threads: int = 8, python: str | None = None) -> None:
        # With ``python`` (another venv's interpreter) the worker runs as a script outside the
        # repository, so that it imports that venv's grpcio and installed reporter, not ours.
        script = ["-m", "tests.reliability.worker"] if python is None else [
            str(ROOT / "tests" / "reliability" / "worker.py")]
        argv = [python or sys.executable, *script, "--socket", socket_path,
                "--interval", str(interval), "--threads", str(threads)]
        if not monitoring:
            argv.append("--no-monitoring")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if python is not None:
            env.pop("PYTHONPATH", None)
            env.pop("VIRTUAL_ENV", None)
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, cwd=ROOT if python is None else log_path.parent,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=log, env=env)
        self.log_path = log_path
        self._buffer = b""
        hello = self._line(20)
        self.port: int = hello["port"]
        self.source: str | None = hello["source"]
        self.grpc_version: str = hello["grpc"]
        self.reporter_file: str | None = hello["reporter"]
        self.final: dict[str, Any] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _line(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or (self.proc.poll() is not None and not select.select(
                    [self.proc.stdout], [], [], 0)[0]):
                raise AssertionError(f"worker {self.proc.pid} said nothing in {timeout} s; "
                                     f"log:\n{self.log_path.read_text()}")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk and self.proc.poll() is not None:
                    continue
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return dict(json.loads(line))

    def stats(self) -> dict[str, int]:
        """The reporter's own counters right now (asked with SIGUSR1)."""
        self.proc.send_signal(signal.SIGUSR1)
        return dict(self._line(10)["stats"])

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM: the server drains, the reporter sends its final snapshot; the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        self.final = self._line(timeout)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """Clean-up (or the kill -9 fault): SIGKILL if still running, and reap."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """``workers(socket_path, interval=..., monitoring=...)``; all are killed after the test."""
    made: list[Worker] = []

    def make(socket_path: str, **kwargs: Any) -> Worker:
        worker = Worker(socket_path, tmp_path / f"worker{len(made)}.log", **kwargs)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.kill()


# -- client traffic ------------------------------------------------------------------------------

def call(stub: Callable[..., Any]) -> str:
    """One unary call; the status code the client saw, by Go's name (as the sidecar exports it)."""
    try:
        stub(b"", timeout=10)
    except grpc.RpcError as err:
        return CODES[err.code().value[0]]
    return "OK"


class Traffic:
    """Client threads calling workers in a fixed mix until stopped; counts what they saw.

    ``seen[(port, method, code)]`` is what the clients got back: the truth the exported totals
    must equal. Every loop is bounded by ``limit`` seconds even if nobody stops it.
    """

    MIX: tuple[str, ...] = ("Ok", "Ok", "Ok", "Ok", "Fail", "Ok", "Ok", "Boom")

    def __init__(self, targets: list[str], threads: int = 2, limit: float = 120.0,
                 pause: float = 0.0) -> None:
        self.targets = list(targets)
        self.seen: Counter[tuple[str, str, str]] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pause = pause
        self._limit = limit
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(threads)]

    def __enter__(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)
            assert not t.is_alive(), "a traffic thread did not stop"

    def retarget(self, old: str, new: str) -> None:
        """Send the traffic of ``old`` to ``new`` from the next call on (a restarted worker)."""
        with self._lock:
            self.targets[self.targets.index(old)] = new

    def _run(self, index: int) -> None:
        deadline = time.monotonic() + self._limit
        channels: dict[str, grpc.Channel] = {}
        i = index
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                with self._lock:
                    target = self.targets[i % len(self.targets)]
                channel = channels.get(target)
                if channel is None:
                    channel = channels[target] = grpc.insecure_channel(target)
                method = self.MIX[(i // len(self.targets)) % len(self.MIX)]
                code = call(channel.unary_unary(f"/{SERVICE}/{method}"))
                # A worker that is gone answered nothing (Unavailable); one that is stopping
                # refuses new calls before any handler runs (Canceled): neither counted them.
                if code not in ("Unavailable", "Canceled"):
                    with self._lock:
                        self.seen[(target, method, code)] += 1
                i += 1
                if self._pause:
                    time.sleep(self._pause)
        finally:
            for channel in channels.values():
                channel.close()

    def totals(self, targets: list[str] | None = None) -> Counter[tuple[str, str]]:
        """(method, code) -> calls, summed over ``targets`` (all when None)."""
        out: Counter[tuple[str, str]] = Counter()
        with self._lock:
            for (target, method, code), n in self.seen.items():
                if targets is None or target in targets:
                    out[(method, code)] += n
        return out


def exported(text: str) -> Counter[tuple[str, str]]:
    """grpc_server_handled_total of the worker service as (method, code) -> n, zeros left out."""
    out: Counter[tuple[str, str]] = Counter()
    for (name, labels), value in parse_metrics(text).items():
        tags = dict(labels)
        if name == "grpc_server_handled_total" and tags["grpc_service"] == SERVICE and value:
            out[(tags["grpc_method"], tags["grpc_code"])] += int(value)
    return out


class Monotonic:
    """Scrapes /metrics every ``every`` s in a thread and checks that no counter goes down.

    ``families`` picks the series checked (default: the gRPC ones, which must stay monotonic
    even across sidecar restarts, because the reporter's pushes are cumulative). A series that
    is absent from a scrape (sidecar down or just restarted) is not a decrease.
    """

    def __init__(self, url: Callable[[], str], every: float = 0.2, limit: float = 120.0,
                 families: tuple[str, ...] = ("grpc_server_",)) -> None:
        self._url = url
        self._every = every
        self._limit = limit
        self._families = families
        self.scrapes = 0
        self.failed_scrapes = 0
        self.decreases: list[str] = []
        self._last: dict[Any, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Monotonic:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        import urllib.request

        deadline = time.monotonic() + self._limit
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self._url() + "/metrics", timeout=2) as reply:
                    text = reply.read().decode()
            except OSError:
                self.failed_scrapes += 1
            else:
                self.scrapes += 1
                self._check(parse_metrics(text))
            self._stop.wait(self._every)

    def _check(self, samples: dict[Any, float]) -> None:
        for key, value in samples.items():
            name = key[0]
            if not name.startswith(self._families) or not (
                    name.endswith(("_total", "_bucket", "_count", "_sum"))):
                continue
            before = self._last.get(key)
            if before is not None and value < before - 1e-9:
                self.decreases.append(f"{name}{dict(key[1])}: {before} -> {value}")
            self._last[key] = value
