"""First contact with the command: ``oracle-sidecar`` alone and ``--help`` list the commands in
plain text, and installing it in editable mode prints no setuptools banner."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.cli import COMMANDS

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sidecar.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("args", [(), ("--help",)], ids=["no-arguments", "help"])
def test_the_commands_are_listed_in_plain_text(args: tuple[str, ...]) -> None:
    """Every command with its one-line help; no reST markup (``, :mod:) in the text."""
    done = cli(*args)
    assert done.returncode == (0 if args else 2), done.stderr
    text = done.stdout
    for name, (_, help_text) in COMMANDS.items():
        assert name in text and help_text in text, (name, text)
    assert "``" not in text and ":mod:" not in text and ":func:" not in text, text
    assert "oracle-sidecar COMMAND --help" in text


def test_an_editable_install_prints_no_banner(tmp_path: Path) -> None:
    """setuptools' editable build of this pyproject.toml emits no "Editable installation"
    warning (pip 25+ shows backend warnings even with -q)."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "sidecar", tmp_path / "sidecar",
                    ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [sys.executable, "-W", "always", "-c",
         "from setuptools import build_meta; print(build_meta.build_editable('dist'))"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Editable installation" not in done.stdout + done.stderr, done.stderr
    assert list((tmp_path / "dist").glob("*.editable-*.whl"))
