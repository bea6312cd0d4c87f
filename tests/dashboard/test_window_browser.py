"""One window per view, in a real browser: in the URL, stated on the page, the same figures.

Headless Chromium on a dashboard process reading two real sidecars, each fed exact durations
by a real reporter (no new calls after that, so every figure holds still while it is read).
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import pytest

from sidecar.reporter.core import Reporter
from tests.conftest import wait_for
from tests.dashboard.helpers import SERVICE, DashboardProcess

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian package chromium is not installed")


def _ms(value: float) -> str:
    """The page's fmtMs for the values of this test (100 ms to 10 s)."""
    if value >= 1000:
        return f"{value / 1000:.{1 if value >= 10000 else 2}f} s"
    return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms"


@pytest.mark.timeout(180)
def test_window_is_in_the_url_and_cards_tables_and_chart_headlines_agree(
        sidecar_factory: Any, tmp_path: Path) -> None:
    """?window=all opens on "since start"; the p95 card, table and chart headline match; a
    click puts the new window in the URL and a reload keeps it."""
    from playwright.sync_api import sync_playwright

    pods = [sidecar_factory(socket_path=str(tmp_path / f"pod{i}" / "metrics.sock"))
            for i in range(2)]
    reporters = [Reporter(SERVICE, "1.4.2", [], socket_path=p.socket, interval=0.2).start()
                 for p in pods]
    rng = random.Random(16)
    for rep, draw in zip(reporters, (lambda: rng.uniform(0.12, 0.18),
                                     lambda: rng.lognormvariate(math.log(0.4), 0.7)),
                         strict=True):
        series = rep.series(f"/{SERVICE}/GetReading")
        assert series is not None
        for _ in range(800):
            rep.observe(series, draw())
    dash = DashboardProcess(["--refresh", "1", *[a for p in pods for a in ("--target", p.url)]],
                            tmp_path / "dashboard.log").start()
    try:
        status = wait_for(lambda: (lambda s: s if s["summed"]["totals"]["count"] == 1600
                                   else None)(dash.status("all")), 15,
                          message="both pods' calls in the dashboard")
        p95 = _ms(status["summed"]["totals"]["p95_ms"])
        assert status["summed"]["percentiles"] == "merged"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                problems: list[str] = []
                page.on("pageerror", lambda e: problems.append(str(e)))
                page.goto(dash.url + "?window=all")
                page.locator("#rpcs-note", has_text="since start window").wait_for()
                assert page.get_attribute("button[data-window=all]", "aria-pressed") == "true"
                tile = page.locator(".tile", has_text="p95 latency")
                tile.locator(".tile-value", has_text=p95).wait_for()
                assert "since start" in tile.inner_text() and "all pods merged" in \
                    tile.inner_text()
                chart = page.locator("figure.chart", has_text="p95 latency")
                chart.locator(".chart-value", has_text=p95).wait_for(timeout=10000)
                assert "since start window" in chart.locator("figcaption").inner_text()
                row = page.locator("details.rpc-block").first.locator("tfoot tr")
                assert p95 in row.all_inner_texts()[0]

                page.click("button[data-window='5m']")
                page.locator("#rpcs-note", has_text="5 min window").wait_for()
                assert page.url.endswith("?window=5m")
                page.reload()
                page.locator("#rpcs-note", has_text="5 min window").wait_for()
                assert page.get_attribute("button[data-window='5m']", "aria-pressed") == "true"
                chart.locator("figcaption", has_text="5 min window").wait_for()
                assert problems == []
            finally:
                browser.close()
    finally:
        dash.stop()
        for rep in reporters:
            rep.close()
