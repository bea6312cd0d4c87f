"""The dashboard's HTTP surface through aiohttp's test client: JSON endpoints, page, safety."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

from tests.dashboard.conftest import BadPods, LivePod
from tests.dashboard.helpers import SERVICE, alert_state


async def test_status_shows_a_live_pod_with_health_and_rpc_figures(dashboard: Any,
                                                                   live_pod: LivePod) -> None:
    """One real sidecar: its health, checks, per-RPC figures and the sum over pods."""
    await live_pod.calls("GetReading", 30, 0.012)
    await live_pod.calls("AnalyzeSession", 9, 0.3)
    await live_pod.calls("AnalyzeSession", 1, 0.3, code="DeadlineExceeded")
    client = await dashboard(targets=(live_pod.url,))
    response = await client.get("/api/status")
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    doc = await response.json()
    assert doc["problems"] == []
    assert doc["dashboard"]["window"] == "1m" and doc["dashboard"]["refresh_seconds"] == 5.0
    (pod,) = doc["pods"]
    assert pod["reachable"] and pod["error"] is None
    health = pod["health"]
    assert health["status"] == "healthy" and health["ready"] is True
    assert health["freshness"] == "fresh" and health["checks"] == {"model": "loaded"}
    assert health["service"] == SERVICE and health["service_version"] == "1.4.2"
    rows = {r["method"]: r for r in pod["window"]["rpcs"]}
    assert rows["GetReading"]["count"] == 30 and rows["GetReading"]["errors"] == 0
    assert rows["AnalyzeSession"]["errors"] == 1
    assert rows["AnalyzeSession"]["last_error"]["code"] == "DeadlineExceeded"
    assert rows["AnalyzeSession"]["error_rate_percent"] == 10.0
    summed = doc["summed"]
    assert summed["pods_counted"] == 1 and summed["totals"]["count"] == 40
    assert summed["percentiles"] == "merged"
    assert doc["alerts"]["readable"] is False and "not configured" in doc["alerts"]["error"]


async def test_each_failing_pod_is_named_and_the_good_one_still_counts(
        dashboard: Any, live_pod: LivePod, bad_pods: BadPods) -> None:
    """A hanging, a garbage, a huge, a wrong-shape and a 500 pod: each named, within the timeout."""
    await live_pod.calls("GetReading", 7)
    kinds = ["slow", "garbage", "huge", "other", "failing"]
    client = await dashboard(targets=(live_pod.url, *(bad_pods.url(k) for k in kinds)),
                             timeout=0.5)
    started = time.monotonic()
    doc = await (await client.get("/api/status")).json()
    assert time.monotonic() - started < 2.0, "one slow pod must cost at most the timeout"
    errors = {p["name"]: p["error"] for p in doc["pods"]}
    assert errors[live_pod.url] is None
    assert errors[bad_pods.url("slow")] == "no answer within 0.5 s"
    assert "not JSON" in errors[bad_pods.url("garbage")]
    assert "larger than" in errors[bad_pods.url("huge")]
    assert "not a sidecar snapshot" in errors[bad_pods.url("other")]
    assert errors[bad_pods.url("failing")] == "answered HTTP 500"
    for pod in doc["pods"][1:]:
        assert pod["health"]["status"] == "unreachable" and not pod["reachable"]
    banners = [p["text"] for p in doc["problems"]]
    assert len(banners) == 5
    assert all(any(bad_pods.url(k) in text for text in banners) for k in kinds)
    assert doc["summed"]["pods_counted"] == 1 and doc["summed"]["totals"]["count"] == 7


async def test_the_dashboard_answers_other_requests_while_a_pod_hangs(
        dashboard: Any, bad_pods: BadPods) -> None:
    """While /api/status waits on a hanging pod, the page, /livez and /ready answer at once."""
    client = await dashboard(targets=(bad_pods.url("slow"),), timeout=1.5)
    waiting = asyncio.ensure_future(client.get("/api/status"))
    await asyncio.sleep(0.1)
    for path in ("/livez", "/ready", "/", "/app.js"):
        started = time.monotonic()
        response = await client.get(path)
        assert response.status == 200
        assert time.monotonic() - started < 0.3, path
    assert not waiting.done()
    doc = await (await waiting).json()
    assert doc["pods"][0]["error"] == "no answer within 1.5 s"


async def test_concurrent_requests_share_one_fetch_of_each_pod(dashboard: Any,
                                                               bad_pods: BadPods) -> None:
    """Ten tabs refreshing at once cost each pod one request, not ten."""
    client = await dashboard(targets=(bad_pods.url("slow"), bad_pods.url("garbage")),
                             timeout=0.3)
    answers = await asyncio.gather(*(client.get("/api/status") for _ in range(10)))
    assert {r.status for r in answers} == {200}
    assert bad_pods.hits["slow"] == 1 and bad_pods.hits["garbage"] == 1


async def test_window_parameter_picks_the_window_and_rejects_others(dashboard: Any,
                                                                    live_pod: LivePod) -> None:
    """window=5m answers the 5-minute figures; an unknown window is a JSON 400."""
    await live_pod.calls("GetReading", 3)
    client = await dashboard(targets=(live_pod.url,))
    doc = await (await client.get("/api/status?window=5m")).json()
    assert doc["dashboard"]["window"] == "5m" and doc["pods"][0]["window"]["seconds"] == 300.0
    doc = await (await client.get("/api/status?window=all")).json()
    assert doc["pods"][0]["window"]["totals"]["count"] == 3
    response = await client.get("/api/status?window=2d")
    assert response.status == 400
    body = await response.json()
    assert "window must be one of" in body["error"]


async def test_history_sums_the_pods_rings_and_names_the_pods_without_one(
        dashboard: Any, live_pod: LivePod, bad_pods: BadPods) -> None:
    """/api/history: 5 s points from the sidecar's own ring, per RPC too; broken pods named."""
    for n in (10, 20, 30):
        await live_pod.calls("GetReading", n)
        await live_pod.calls("SuggestRange", 1)
        await live_pod.step(5.0)
    client = await dashboard(targets=(live_pod.url, bad_pods.url("garbage")))
    doc = await (await client.get("/api/history")).json()
    assert doc["rpc"] is None and doc["pod"] is None
    counts = [p["count"] for p in doc["series"]]
    assert counts[-3:] == [11, 21, 31]
    assert doc["series"][-1]["rate_per_second"] == 6.2
    pods = {p["name"]: p for p in doc["pods"]}
    assert pods[live_pod.url]["error"] is None
    assert "not JSON" in pods[bad_pods.url("garbage")]["error"]

    one = await (await client.get(f"/api/history?rpc={SERVICE}/SuggestRange"
                                  f"&pod={live_pod.url}")).json()
    assert [p["count"] for p in one["series"]][-3:] == [1, 1, 1]
    assert one["rpc"] == f"{SERVICE}/SuggestRange" and one["pod"] == live_pod.url
    assert [p["name"] for p in one["pods"]] == [live_pod.url]

    unknown = await client.get("/api/history?pod=nope")
    assert unknown.status == 404 and (await unknown.json())["error"] == "no such pod"
    bad = await client.get("/api/history?rpc=" + "x" * 600)
    assert bad.status == 400


async def test_page_and_assets_are_served_with_a_strict_csp(dashboard: Any) -> None:
    """The page, its CSS and JS: right types, a CSP without inline script, relative URLs only."""
    client = await dashboard(targets=("http://127.0.0.1:1",))
    page = await client.get("/")
    html = await page.text()
    assert page.status == 200 and page.content_type == "text/html"
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", html))
    assert not re.search(r"\son\w+=|\sstyle=", html), "no inline handlers or styles"
    assert not re.search(r"(?:src|href)=\"(?:/|https?:)", html), "every URL is relative"
    for path, kind in (("/app.js", "text/javascript"), ("/app.css", "text/css"),
                       ("/index.html", "text/html")):
        response = await client.get(path)
        assert response.status == 200 and response.content_type == kind, path
        assert "Content-Security-Policy" in response.headers
    script = await (await client.get("/app.js")).text()
    sinks = r"\.(?:innerHTML|outerHTML)\s*=|insertAdjacentHTML\(|document\.write\(|\beval\("
    assert not re.search(sinks, script), "pod strings must never reach an HTML parser"
    assert re.search(r"fetch\(url", script) and "`api/status" in script


async def test_nothing_else_is_served_and_nothing_can_be_changed(dashboard: Any) -> None:
    """No directory listing or path traversal; every write method is a JSON 405."""
    client = await dashboard(targets=("http://127.0.0.1:1",))
    for path in ("/static/", "/static/app.js", "/app.py", "/../app.py", "/%2e%2e/app.py",
                 "/sidecar/dashboard/app.py", "/static/../app.py", "/api/", "/etc/passwd"):
        response = await client.get(path)
        assert response.status == 404, path
        body = await response.json()
        assert body["status"] == 404 and "/api/status" in body["endpoints"]
        assert "Content-Security-Policy" in response.headers
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for path in ("/api/status", "/"):
            response = await client.request(method, path)
            assert response.status == 405, (method, path)
            assert response.headers["Allow"] == "GET, HEAD"
            assert (await response.json())["status"] == 405


async def test_livez_and_ready(dashboard: Any) -> None:
    """/livez and /ready answer 200 JSON even when no pod can be reached."""
    client = await dashboard(targets=("http://127.0.0.1:1",))
    live = await client.get("/livez")
    assert live.status == 200 and (await live.json())["alive"] is True
    ready = await client.get("/ready")
    assert ready.status == 200
    assert await ready.json() == {"ready": True, "mode": "urls", "targets_known": 1}


async def test_alert_state_file_is_shown_and_its_absence_is_no_error(
        dashboard: Any, tmp_path: Path) -> None:
    """A readable state file lists alerts (open first); a missing or broken one says why."""
    path = tmp_path / "state.json"
    path.write_text(json.dumps(alert_state()))
    client = await dashboard(targets=("http://127.0.0.1:1",), alert_state_file=str(path),
                             refresh=0.01)
    alerts = (await (await client.get("/api/status")).json())["alerts"]
    assert alerts["readable"] is True and alerts["source"] == f"file {path}"
    assert [(a["kind"], a["open"]) for a in alerts["alerts"]] == [("error_rate", True),
                                                                  ("unreachable", False)]
    first = alerts["alerts"][0]
    assert first["severity"] == "WARNING" and first["rpc"] == f"{SERVICE}/AnalyzeSession"
    assert first["cooldown_until"] > time.time()

    path.write_text("{not json")
    await asyncio.sleep(0.02)
    response = await client.get("/api/status")
    alerts = (await response.json())["alerts"]
    assert response.status == 200 and alerts["readable"] is False
    assert alerts["error"].startswith("unreadable: not JSON")

    path.unlink()
    await asyncio.sleep(0.02)
    alerts = (await (await client.get("/api/status")).json())["alerts"]
    assert alerts["readable"] is False and "does not exist" in alerts["error"]


async def test_a_large_snapshot_arriving_in_chunks_is_read_whole(dashboard: Any,
                                                                live_pod: LivePod) -> None:
    """A real snapshot of 400 RPCs (hundreds of KiB, many TCP reads) is read, not cut short."""
    for i in range(400):
        series = live_pod.reporter.series(f"/{SERVICE}/Method{i:03d}")
        assert series is not None
        live_pod.reporter.observe(series, 0.01)
    await live_pod.push()
    client = await dashboard(targets=(live_pod.url,))
    doc = await (await client.get("/api/status")).json()
    assert doc["pods"][0]["error"] is None
    assert len(doc["pods"][0]["window"]["rpcs"]) == 400
    assert doc["summed"]["totals"]["count"] == 400
