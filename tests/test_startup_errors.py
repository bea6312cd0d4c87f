"""``serve`` that cannot start says so in one line naming the fix: no traceback, no INFO line
claiming it started first."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534


def serve(*args: str, as_nobody: bool = False) -> list[str]:
    """The non-empty output lines (stdout and stderr) of ``serve`` that exits at start.

    ``as_nobody``: as root, run it as user nobody (util-linux ``setpriv``), so that directory
    permissions apply; as any other user they apply already.
    """
    launcher: list[str] = []
    if as_nobody and os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to drop root for this test"
        launcher = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    done = subprocess.run([*launcher, sys.executable, "-m", "sidecar.cli", "serve", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 1, (done.stdout, done.stderr)
    return [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[Path]:
    """A directory the sidecar's user may not enter (root's 0700 dir, run as nobody)."""
    root = Path("/tmp") / f"locked-{os.getpid()}-{tmp_path.name}"
    root.mkdir(mode=0o700)
    if os.geteuid() != 0:
        root.chmod(0)
    yield root
    root.chmod(0o700)
    root.rmdir()


def test_a_socket_directory_without_permission_is_one_line(locked: Path) -> None:
    """A socket directory the user may not search: one line naming --socket, no traceback."""
    (line,) = serve("--socket", str(locked / "m.sock"), "--port", "0", as_nobody=True)
    assert "Traceback" not in line
    assert f"cannot use the socket directory {locked}: Permission denied" in line
    assert "--socket / ORACLE_METRICS_SOCKET" in line


def test_a_socket_directory_that_cannot_be_made_names_the_fix(locked: Path) -> None:
    """A socket directory that cannot be created: one line naming --socket."""
    (line,) = serve("--socket", str(locked / "sub" / "m.sock"), "--port", "0", as_nobody=True)
    assert "cannot create the socket directory" in line
    assert "--socket / ORACLE_METRICS_SOCKET" in line


def test_a_taken_port_is_one_line_and_nothing_claims_to_have_started(tmp_path: Path) -> None:
    """Port in use: one line naming --port/ORACLE_HTTP_PORT; no "receiving pushes" before it."""
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (line,) = serve("--socket", str(tmp_path / "m.sock"), "--port", str(port))
    assert f"cannot listen on 0.0.0.0:{port}: Address already in use" in line
    assert "--port / ORACLE_HTTP_PORT (0 = any free port)" in line
    assert "--host / ORACLE_HTTP_HOST" in line
    assert not (tmp_path / "m.sock").exists()
