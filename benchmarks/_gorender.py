"""Build benchmarks/gorender, the Go reference for /metrics: client_golang from Debian's packages.

``golang-go`` and ``golang-github-prometheus-client-golang-dev`` (scripts/setup.sh --test
installs both) build it in GOPATH mode, offline, into a directory of the caller's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["GOPATH", "build"]

GOPATH = "/usr/share/gocode"
SOURCE = Path(__file__).resolve().parent / "gorender"


def build(directory: Path) -> Path:
    """The gorender binary, built in ``directory``; RuntimeError saying what to install."""
    go = shutil.which("go")
    if go is None or not Path(GOPATH, "src/github.com/prometheus/client_golang").is_dir():
        raise RuntimeError("building the Go reference needs the Debian packages golang-go and "
                           "golang-github-prometheus-client-golang-dev "
                           "(bash scripts/setup.sh --test)")
    binary = directory / "gorender"
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": GOPATH, "GOFLAGS": "",
           "GOCACHE": str(directory / "gocache")}
    done = subprocess.run([go, "build", "-o", str(binary), "."], cwd=SOURCE, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"go build of {SOURCE} failed:\n{done.stderr}")
    return binary
