"""The README's picture comes from a clean demo: scripts/dashboard_screenshot.py runs the real
demo, turns its fault knobs and takes a full-page Chromium screenshot."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not Path("/usr/bin/chromium").exists(),
                                reason="Debian package chromium is not installed")


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


@pytest.mark.timeout(180)
def test_the_screenshot_script_pictures_a_clean_demo(tmp_path: Path) -> None:
    """A short run writes a 1440 px wide full-page PNG; the README shows the script's picture."""
    out = tmp_path / "dashboard.png"
    done = subprocess.run([sys.executable, "scripts/dashboard_screenshot.py", "--seconds", "4",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=170)
    assert done.returncode == 0, done.stdout + done.stderr
    width, height = png_size(out)
    assert width == 1440 and height > 900
    assert png_size(ROOT / "docs" / "images" / "dashboard.png")[0] == 1440
    assert "scripts/dashboard_screenshot.py" in (ROOT / "README.md").read_text()
