"""The page in a real browser: headless Chromium on a dashboard process wired to real sidecars.

The README's picture is not taken here (this page shows a hostile method name on purpose):
scripts/dashboard_screenshot.py takes it from a clean demo.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sidecar.reporter.core import Reporter
from tests.conftest import http_get, wait_for
from tests.dashboard.helpers import XSS, DashboardProcess, Traffic, alert_state, kubeconfig
from tests.fakes.kube_api import pod

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian package chromium is not installed")


def _count(page: Any, method: str) -> int:
    """The Count cell of ``method`` in the summed ("All pods") table."""
    row = page.locator("details.rpc-block").first.locator("tbody tr").filter(
        has=page.locator(".method", has_text=method))
    return int(row.locator("td").nth(1).inner_text().replace(",", ""))


@pytest.mark.timeout(240)
def test_browser_shows_live_pods_refreshes_and_renders_pod_strings_as_text(
        sidecar_factory: Any, fake_kube: Any, tmp_path: Path) -> None:
    """Auto-refresh raises a count; tables and charts drawn; a hostile method name is only text.

    End to end: the dashboard process logs in with a kubeconfig, lists the pods through the
    (fake) Kubernetes API, and reads two real sidecars at the pods' IPs (127.0.0.1, 127.0.0.2,
    one port); a third pod is Pending without an IP. Alerts come from the state ConfigMap.
    """
    from playwright.sync_api import sync_playwright

    first_pod = sidecar_factory(socket_path=str(tmp_path / "pod0" / "metrics.sock"), start=False)
    second_pod = sidecar_factory("--host", "127.0.0.2", "--port", str(first_pod.port),
                                 socket_path=str(tmp_path / "pod1" / "metrics.sock"),
                                 start=False)
    for sc in (first_pod, second_pod):
        sc.start(wait=False)  # both start at once; then wait for each
    for ip in ("127.0.0.1", "127.0.0.2"):
        wait_for(lambda ip=ip: http_get(f"http://{ip}:{first_pod.port}/livez", timeout=2)[0]
                 == 200, 15, message=f"the sidecar on {ip} to answer")
    names = ["oracle-7c9d5f-2xkqp", "oracle-7c9d5f-9hm4t", "oracle-7c9d5f-zt6wd"]
    fake_kube.pods = [pod(names[0], "127.0.0.1"), pod(names[1], "127.0.0.2", ready=False),
                      pod(names[2], None, phase="Pending", ready=False)]
    fake_kube.put_config_map("oracle", "oracle-alerter-state", {
        "state.json": json.dumps(alert_state(targets=(names[1], "oracle-7c9d5f-4bq8n")))})
    reporters = [Reporter("nps.oracle.OracleService", "1.4.2", [], socket_path=sc.socket,
                          interval=0.2).start() for sc in (first_pod, second_pod)]
    reporters[0].set_health("healthy", {"model": "loaded", "ephemeris": "ok"})
    reporters[1].set_health("degraded", {"model": "loaded", "ephemeris": "slow: 2.4 s"})
    traffic = [Traffic(reporters[0], rate=40, seed=1, wave=0.4, period=70).start(),
               Traffic(reporters[1], rate=24, seed=2, wave=0.5, period=45, slowdown=1.6).start()]
    with reporters[0].track(XSS):
        pass
    dash = DashboardProcess(
        ["--refresh", "1", "--namespace", "oracle", "--sidecar-port", str(first_pod.port),
         "--selector", "app.kubernetes.io/component=oracle",
         "--alert-state-configmap", "oracle-alerter-state"],
        tmp_path / "dashboard.log",
        env={"KUBECONFIG": str(kubeconfig(tmp_path / "kubeconfig", fake_kube.url))}).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                dialogs: list[str] = []
                problems: list[str] = []

                def dialog(d: Any) -> None:
                    dialogs.append(d.message)
                    d.dismiss()

                def console(m: Any) -> None:
                    if m.type == "error":
                        problems.append(m.text)

                page.on("dialog", dialog)
                page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
                page.on("console", console)
                page.goto(dash.url)

                # The per-RPC table (summed over both pods) and each pod's card.
                page.locator("details.rpc-block .method", has_text="GetReading").first.wait_for(
                    timeout=10000)
                assert page.locator("article.pod").count() == 3
                assert page.locator(".banner.warning", has_text=names[2]).count() == 1
                assert page.locator("article.pod .badge", has_text="degraded").count() == 1
                assert page.locator(".checks li", has_text="slow: 2.4 s").count() == 1
                head = page.locator("details.rpc-block").first.locator("thead th")
                assert head.all_inner_texts()[:3] == ["RPC", "REQ/S", "COUNT"]

                # Auto-refresh: a later count is higher, with no reload. (Counts since start
                # only grow; the 1-minute window's may fall when the traffic slows.)
                page.click("button[data-window=all]")
                page.locator("#rpcs-note", has_text="since start window").wait_for()
                assert page.get_attribute("button[data-window=all]", "aria-pressed") == "true"
                first = _count(page, "GetReading")
                page.wait_for_function(
                    """([method, before]) => [...document.querySelectorAll(
                         "details.rpc-block:first-of-type tbody tr")].some((tr) =>
                         tr.querySelector(".method")?.textContent === method &&
                         Number(tr.cells[2].textContent.replace(/,/g, "")) > before)""",
                    arg=["GetReading", first], timeout=10000)

                # The hostile method name is text: no <img> anywhere, no dialog.
                methods = page.locator(".method").all_text_contents()
                assert XSS in methods
                assert page.evaluate("document.querySelectorAll('img').length") == 0
                page.wait_for_timeout(300)
                assert dialogs == []

                # Charts: three SVG charts, each with a line of at least two points.
                page.wait_for_function(
                    """() => [...document.querySelectorAll("#charts svg")].filter((s) =>
                         [...s.querySelectorAll("path.line")].some((p) =>
                           p.getAttribute("d").includes("L"))).length === 3""",
                    timeout=20000)

                # Alerts from the state file.
                assert page.locator("#alerts tr.open", has_text="AnalyzeSession").count() == 1

                # Keyboard: "p" pauses (counts freeze), "p" again resumes.
                page.keyboard.press("p")
                assert page.get_attribute("#pause", "aria-pressed") == "true"
                assert page.inner_text("#updated").startswith("Paused")
                frozen = _count(page, "GetReading")
                page.wait_for_timeout(2200)
                assert _count(page, "GetReading") == frozen
                page.keyboard.press("p")
                assert page.get_attribute("#pause", "aria-pressed") == "false"
                page.wait_for_function(
                    """(before) => [...document.querySelectorAll(
                         "details.rpc-block:first-of-type tbody tr")].some((tr) =>
                         tr.querySelector(".method")?.textContent === "GetReading" &&
                         Number(tr.cells[2].textContent.replace(/,/g, "")) > before)""",
                    arg=frozen, timeout=10000)

                page.click("button[data-window='1m']")
                page.locator("#rpcs-note", has_text="1 min window").wait_for()
                assert problems == [], problems  # CSP violations would be console errors
                shot = tmp_path / "dashboard.png"
                page.wait_for_timeout(600)
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 20000
            finally:
                browser.close()
    finally:
        dash.stop()
        for t in traffic:
            t.stop()
        for r in reporters:
            r.close()
