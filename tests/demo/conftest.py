"""Fixtures for the demo tests: processes that are always stopped, by PID, after the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_for
from tests.demo.helpers import Proc, http


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """``procs(name, args, env=None, code=None)`` starts a process; all are killed at the end."""
    started: list[Proc] = []

    def start(name: str, args: list[str], env: dict[str, str] | None = None,
              code: str | None = None) -> Proc:
        proc = Proc(args, tmp_path / f"{name}.log", env, code)
        started.append(proc)
        return proc

    yield start
    for proc in reversed(started):
        proc.kill()


@pytest.fixture
def sidecar(procs: Callable[..., Proc], tmp_path: Path) -> tuple[Proc, str, str]:
    """A real ``oracle-sidecar serve``: (process, base URL, socket path)."""
    port, sock = free_port(), str(tmp_path / "metrics.sock")
    proc = procs("sidecar", ["serve", "--socket", sock, "--host", "127.0.0.1",
                             "--port", str(port), "--drain-seconds", "0"])
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: http("GET", url + "/livez")[0] == 200, 15, "the sidecar's /livez")
    return proc, url, sock
