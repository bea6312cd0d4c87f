"""The alert panel in headless Chromium at 1024 px, fed by real alerter runs without Telegram:
long RPC names cut (full on hover and focus), SUMMARY in view, and only what really happened
("logged only, not sent"; no cooldown for a resolved alert)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sidecar.alerter.state import parse
from sidecar.reporter.core import Reporter
from tests.conftest import SidecarProcess, http_get, wait_for
from tests.dashboard.helpers import DashboardProcess
from tests.dashboard.test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian package chromium is not installed")

SERVICE = "nps.oracle." + "Long" * 22 + "Service"  # 106 characters
METHOD = "Get" + "VeryLongMethodName" * 10 + "Reading" + "X" * 3  # 193 characters
RPC = f"{SERVICE}/{METHOD}"


def alert_run(sidecar: SidecarProcess, state: Path) -> None:
    """One ``oracle-sidecar alert`` process as the demo runs it: no Telegram token."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NPS_", "ALERT_", "TELEGRAM_", "ORACLE_"))}
    done = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "alert", "--target", sidecar.url, "--state-file",
         str(state), "--window", "1m", "--min-requests", "10", "--cooldown", "5m"],
        env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.timeout(180)
def test_alert_panel_at_1024px_with_a_300_character_rpc(sidecar: SidecarProcess,
                                                         tmp_path: Path) -> None:
    """Logged-only alerts say so; a resolved one has no cooldown; the 300-character RPC name
    is cut with its full name on hover and focus; SUMMARY stays in view; no page overflow."""
    from playwright.sync_api import sync_playwright

    assert len(RPC) == 300
    rep = Reporter(SERVICE, "1.0", [f"/{RPC}"], socket_path=sidecar.socket,
                   interval=0.2).start()
    state = tmp_path / "alert-state.json"
    dash = None
    try:
        series = rep.series(f"/{RPC}")
        assert series is not None
        for i in range(30):
            rep.observe(series, 0.01, "Internal" if i % 3 == 0 else "OK")
        rep.set_health("degraded", {"db": "timeout"})
        wait_for(lambda: json.loads(http_get(sidecar.url + "/api/v1/snapshot")[1])["windows"]
                 ["1m"]["totals"]["count"] >= 30 and http_get(sidecar.url + "/ready")[0] == 503,
                 10, message="the pushes")
        alert_run(sidecar, state)  # CRITICAL degraded + WARNING error rate, logged
        rep.set_health("healthy", {"db": "ok"})
        wait_for(lambda: http_get(sidecar.url + "/ready")[0] == 200, 10, message="/ready 200")
        alert_run(sidecar, state)  # degraded resolves; the error rate holds, in cooldown
        alerts = parse(state.read_text()).alerts
        assert {(a.kind, a.open, a.sent_via) for a in alerts.values()} == {
            ("degraded", False, "log"), ("error_rate", True, "log")}

        dash = DashboardProcess(["--target", sidecar.url, "--alert-state-file", str(state),
                                 "--refresh", "1"], tmp_path / "dashboard.log").start()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1024, "height": 800})
                page.goto(dash.url)
                page.locator("table.alerts tr.closed").wait_for(timeout=15000)
                open_row = page.locator("table.alerts tr.open")
                closed_row = page.locator("table.alerts tr.closed")
                headers = page.locator("table.alerts thead th").all_inner_texts()
                cells = {name.lower(): i for i, name in enumerate(headers)}

                def cell(row: Any, name: str) -> str:
                    return str(row.locator("td").nth(cells[name]).inner_text())

                # Truthful: nothing was sent; a resolved alert has no cooldown to wait for.
                assert cell(open_row, "last sent").startswith("logged only, not sent")
                assert cell(closed_row, "last sent").startswith("logged only, not sent")
                assert cell(closed_row, "cooldown until") == "—"
                assert cell(open_row, "cooldown until") != "—"

                # The long RPC: cut, with the full name as its title and shown on focus.
                label = open_row.locator(".rpc-name")
                assert label.get_attribute("title") == RPC
                method = label.locator(".method")
                assert method.evaluate("e => e.scrollWidth > e.clientWidth + 1")
                label.focus()
                assert method.evaluate("e => e.scrollWidth <= e.clientWidth + 1")
                assert method.evaluate("e => e.getBoundingClientRect().height") > 40
                page.locator("body").click(position={"x": 5, "y": 5})

                # Layout: no horizontal overflow of the page or of the alert table; every
                # SUMMARY cell inside the visible part of its table.
                assert page.evaluate("document.documentElement.scrollWidth") <= 1024
                wrap = page.locator("#alerts .table-wrap")
                assert wrap.evaluate("e => e.scrollWidth <= e.clientWidth + 1")
                right = wrap.evaluate("e => e.getBoundingClientRect().right")
                for box in page.locator("table.alerts td.summary").all():
                    edge = box.evaluate("e => e.getBoundingClientRect()")
                    assert edge["width"] > 60 and edge["right"] <= right + 1, edge
                page.screenshot(path=str(tmp_path / "alerts-1024.png"), full_page=True)
            finally:
                browser.close()
    finally:
        if dash is not None:
            dash.stop()
        rep.close()
