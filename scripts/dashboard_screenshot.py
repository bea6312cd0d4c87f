"""Remakes docs/images/dashboard.png (the README's picture) from a clean ``oracle-sidecar demo``.

    .venv/bin/python scripts/dashboard_screenshot.py                 # about 2 minutes
    .venv/bin/python scripts/dashboard_screenshot.py --seconds 5 --out /tmp/shot.png

Starts the demo on free ports with a steady load, lets it run healthy, then turns two of the
demo Oracle's knobs (30 % errors on GetReading, 10 % of GetDailyInsight calls slower than 12 s)
so that the charts, the figures and the alert panel show what a fault looks like; takes a
full-page screenshot in headless Chromium (/usr/bin/chromium) at 1440 px; stops the demo with
SIGINT. It refuses to write a picture whose page holds markup-like text (a hostile RPC name
from a test must never end up in the README).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
FAULTS = {"error_rate": {"GetReading": 0.3}, "latency": {"GetDailyInsight": "12s..15s@0.1"}}


def _post(url: str, body: object) -> None:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as reply:
        reply.read()


def _wait_for_banner(log: Path, demo: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "Press Ctrl-C to stop." in text:
            return text
        if demo.poll() is not None:
            raise SystemExit(f"the demo exited with {demo.returncode}:\n{text}")
        time.sleep(0.2)
    raise SystemExit(f"the demo did not start within {timeout:g} s:\n{log.read_text()}")


def take(out: Path, seconds: float) -> None:
    """Run the demo, inject the faults half-way through ``seconds``, screenshot to ``out``."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="dashboard-shot-") as tmp:
        log = Path(tmp) / "demo.log"
        with open(log, "wb") as sink:
            demo = subprocess.Popen(
                [sys.executable, "-m", "sidecar.cli", "demo", "--oracle-port", "0",
                 "--control-port", "0", "--http-port", "0", "--dashboard-port", "0",
                 "--rate", "40"], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=sink,
                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            banner = _wait_for_banner(log, demo, 60)
            dashboard = re.search(r"dashboard\s+(http://\S+)", banner)
            knobs = re.search(r"curl -s (\S+/knobs)\n", banner)
            if dashboard is None or knobs is None:
                raise SystemExit(f"no dashboard or knobs URL in the banner:\n{banner}")
            time.sleep(seconds / 2)
            _post(f"http://{knobs.group(1)}", FAULTS)
            time.sleep(seconds / 2)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM,
                                            args=["--headless", "--no-sandbox",
                                                  "--disable-gpu"])
                try:
                    page = browser.new_page(viewport={"width": 1440, "height": 900})
                    page.goto(dashboard.group(1))
                    page.locator("details.rpc-block .method").first.wait_for(timeout=20000)
                    page.wait_for_function(
                        "() => document.querySelectorAll('#charts svg path.line').length >= 3",
                        timeout=20000)
                    page.wait_for_timeout(1500)
                    text = page.inner_text("body")
                    if re.search(r"<\s*\w+[^>]*>|onerror", text):
                        raise SystemExit("the page shows markup-like text; not a clean demo")
                    out.parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(out), full_page=True)
                finally:
                    browser.close()
        finally:
            if demo.poll() is None:
                demo.send_signal(signal.SIGINT)
                try:
                    demo.wait(30)
                except subprocess.TimeoutExpired:
                    demo.kill()
                    demo.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "dashboard.png",
                        help="where to write the PNG (default: the README's picture)")
    parser.add_argument("--seconds", type=float, default=120.0,
                        help="how long the demo runs before the picture; the faults start "
                        "half-way (default 120)")
    args = parser.parse_args()
    take(args.out, args.seconds)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
