"""Child processes for the benchmarks: started here, ended here by PID, never by name.

Every server listens on 127.0.0.1 or on a Unix socket in a temporary directory.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

__all__ = ["Http", "Procs", "free_port", "wait_until"]

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` (errors count as not yet) until it is truthy; RuntimeError on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (OSError, ValueError, http.client.HTTPException) as err:
            last = err
        else:
            if last:
                return last
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}; last: {last!r}")


class Http:
    """A keep-alive HTTP/1.1 client for one 127.0.0.1 port; reconnects once on a dropped link."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.port = port
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, float]:
        """(status, body, seconds from sending the request to the last byte)."""
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                        timeout=self.timeout)
            try:
                t0 = time.perf_counter()
                self._conn.request("GET", path, headers=headers or {})
                response = self._conn.getresponse()
                body = response.read()
                return response.status, body, time.perf_counter() - t0
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Procs:
    """Starts children and ends each one it started (SIGTERM, then SIGKILL), by its PID."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="oracle-bench-")
        self.dir = Path(self._tmp.name)
        self.children: list[subprocess.Popen[bytes]] = []
        self._logs: dict[int, Path] = {}

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        for child in reversed(self.children):
            self.stop(child)
        self._tmp.cleanup()

    def start(self, args: list[str], name: str, stdin: int | IO[Any] | None = subprocess.DEVNULL,
              stdout: int | IO[Any] | None = subprocess.DEVNULL, cpu: int | None = None,
              env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.Popen[bytes]:
        """Start ``args`` with stderr to a log file in the temp dir; pin it to ``cpu`` if given."""
        log_path = self.dir / f"{name}-{len(self.children)}.log"
        with open(log_path, "wb") as log:
            child = subprocess.Popen(args, stdin=stdin, stdout=stdout, stderr=log, cwd=cwd,
                                     env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
        self.children.append(child)
        self._logs[child.pid] = log_path
        if cpu is not None and cpu in os.sched_getaffinity(0):
            os.sched_setaffinity(child.pid, {cpu})
        return child

    def python(self, module: str, *args: str, name: str | None = None, **kw: Any
               ) -> subprocess.Popen[bytes]:
        """Start ``python -m module args`` with this interpreter."""
        return self.start([sys.executable, "-m", module, *args], name or module.split(".")[-1],
                          **kw)

    def sidecar(self, port: int | None = None, socket_path: str | None = None,
                cpu: int | None = None, extra: tuple[str, ...] = ()
                ) -> tuple[subprocess.Popen[bytes], int, str]:
        """A real ``oracle-sidecar serve``; returns (process, port, socket path) once it answers."""
        port = port or free_port()
        socket_path = socket_path or str(self.dir / f"sidecar{len(self.children)}.sock")
        child = self.python("sidecar.cli", "serve", "--socket", socket_path, "--host",
                            "127.0.0.1", "--port", str(port), "--drain-seconds", "0",
                            "--log-level", "WARNING", *extra, name="sidecar", cpu=cpu)
        http = Http(port, timeout=2.0)
        try:
            wait_until(lambda: self.alive(child) and http.get("/livez")[0] == 200, 20,
                       "the sidecar to answer /livez")
        finally:
            http.close()
        return child, port, socket_path

    def alive(self, child: subprocess.Popen[bytes]) -> bool:
        if child.poll() is not None:
            raise RuntimeError(f"{child.args!r} exited with {child.returncode}:\n"
                               f"{self.log(child)[-2000:]}")
        return True

    def log(self, child: subprocess.Popen[bytes]) -> str:
        try:
            return self._logs[child.pid].read_text(errors="replace")
        except (KeyError, OSError):
            return ""

    def stop(self, child: subprocess.Popen[bytes], timeout: float = 5.0) -> int | None:
        """End one child this object started: SIGTERM, wait, then SIGKILL; by PID only."""
        if child not in self.children or child.poll() is not None:
            return child.returncode
        try:
            os.kill(child.pid, signal.SIGTERM)
            return child.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(child.pid, signal.SIGKILL)
            return child.wait(timeout)
        except ProcessLookupError:
            return child.wait(timeout)
