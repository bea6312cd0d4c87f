"""The alert rules, table-driven: every rule, its threshold edges and the window it reads."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.alerter.rules import Thresholds, evaluate, judge, no_running_pod, selector_target
from tests.alerter.conftest import answer, pod_target, rpc, snapshot, url_target

TH = Thresholds(error_rate_percent=5.0, p95_seconds=10.0, window="5m", min_requests=20,
                startup_grace=60.0)


def kinds(verdict: Any) -> list[tuple[str, str, str | None]]:
    return sorted((f.kind, f.severity, f.rpc) for f in verdict.findings)


GET = "nps.oracle.OracleService/GetReading"
NAME = "nps.oracle.OracleService/GetNameReading"

CASES = [
    # (id, answer, expected status, expected findings)
    ("healthy-and-ready", answer(snapshot()), "ok", []),
    ("connection-refused", answer(error="unreachable: ClientConnectorError"), "failing",
     [("unreachable", "CRITICAL", None)]),
    ("http-404", answer({"error": "not found"}, status=404), "failing",
     [("unreachable", "CRITICAL", None)]),
    ("not-a-snapshot", answer({"hello": "world"}), "failing",
     [("unreachable", "CRITICAL", None)]),
    ("json-list", answer([1, 2, 3]), "failing", [("unreachable", "CRITICAL", None)]),
    ("degraded", answer(snapshot("degraded", ready=False, checks={"db": "timeout"})),
     "failing", [("degraded", "CRITICAL", None)]),
    ("down", answer(snapshot("down", ready=False)), "failing",
     [("degraded", "CRITICAL", None)]),
    ("healthy-but-not-ready", answer(snapshot("healthy", ready=False)), "failing",
     [("degraded", "CRITICAL", None)]),
    ("ready-missing-counts-as-health-only", answer(snapshot("healthy", ready=None)), "ok", []),
    ("unknown-after-startup-grace", answer(snapshot("unknown", ready=False, uptime=60.0)),
     "failing", [("degraded", "CRITICAL", None)]),
    ("unknown-within-startup-grace", answer(snapshot("unknown", ready=False, uptime=59.9)),
     "skipped", []),
    # the Oracle reported and exited within the sidecar's first minute: no grace
    ("exited-within-startup-grace", answer(snapshot(
        "down", ready=False, uptime=10.0,
        reason="the Oracle process 7 exited 2 s ago and has not come back")),
     "failing", [("degraded", "CRITICAL", None)]),
    ("pod-pending", answer(None, target=pod_target(phase="Pending"), error="no IP"), "skipped",
     []),
    ("pod-terminating", answer(snapshot("down", ready=False),
                               target=pod_target(terminating=True)), "skipped", []),
    # error rate: strictly above the threshold, and only with enough requests
    ("error-rate-just-above", answer(snapshot(rows=[rpc("GetReading", 1000, 51)])), "ok",
     [("error_rate", "WARNING", GET)]),
    ("error-rate-exactly-at", answer(snapshot(rows=[rpc("GetReading", 1000, 50)])), "ok", []),
    ("error-rate-min-requests-met", answer(snapshot(rows=[rpc("GetReading", 20, 2)])), "ok",
     [("error_rate", "WARNING", GET)]),
    ("error-rate-one-short-of-min", answer(snapshot(rows=[rpc("GetReading", 19, 19)])), "ok",
     []),
    ("one-error-in-two-pages-nobody", answer(snapshot(rows=[rpc("GetReading", 2, 1)])), "ok",
     []),
    ("error-rate-per-rpc", answer(snapshot(rows=[rpc("GetReading", 100, 10),
                                                 rpc("GetNameReading", 100, 0),
                                                 rpc("GetQuestionSign", 100, 50)])), "ok",
     [("error_rate", "WARNING", "nps.oracle.OracleService/GetQuestionSign"),
      ("error_rate", "WARNING", GET)]),
    ("error-rate-all-rpcs-when-none-qualifies-alone",
     answer(snapshot(rows=[rpc(f"M{i}", 10, 5) for i in range(4)])), "ok",
     [("error_rate", "WARNING", None)]),
    # latency: strictly above the threshold, and only with enough requests
    ("p95-just-above", answer(snapshot(rows=[rpc("GetReading", 100, p95_ms=10_000.5)])), "ok",
     [("latency", "WARNING", GET)]),
    ("p95-exactly-at", answer(snapshot(rows=[rpc("GetReading", 100, p95_ms=10_000.0)])), "ok",
     []),
    ("p95-one-short-of-min", answer(snapshot(rows=[rpc("GetReading", 19, p95_ms=60_000)])),
     "ok", []),
    ("p95-unknown", answer(snapshot(rows=[rpc("GetReading", 100, p95_ms=None)])), "ok", []),
    ("both-warnings-on-one-rpc", answer(snapshot(rows=[rpc("GetNameReading", 50, 25,
                                                           p95_ms=12_000)])), "ok",
     [("error_rate", "WARNING", NAME), ("latency", "WARNING", NAME)]),
    ("degraded-and-slow", answer(snapshot("degraded", ready=True,
                                          rows=[rpc("GetReading", 100, p95_ms=30_000)])),
     "failing", [("degraded", "CRITICAL", None), ("latency", "WARNING", GET)]),
    ("hostile-rows-are-ignored", answer(snapshot(rows=[
        {"service": "x", "method": "y", "count": "many", "errors": 1},
        {"count": -5, "errors": 1}, "not a row",
        {"service": "s", "method": "m", "count": True, "errors": False}])), "ok", []),
]


@pytest.mark.parametrize(("case", "fetched", "status", "expected"), CASES,
                         ids=[c[0] for c in CASES])
def test_rules_table(case: str, fetched: Any, status: str, expected: list[Any]) -> None:
    """Each rule fires exactly on its side of the threshold, window and minimum requests."""
    verdict = judge(fetched, TH)
    assert (verdict.status, kinds(verdict)) == (status, expected)


WINDOW_CASES = [
    # the window setting picks which window's numbers are judged
    ("5m", {"1m": [rpc("GetReading", 100, 50)], "5m": [rpc("GetReading", 1000, 10)],
            "1h": [rpc("GetReading", 1000, 500)]}, []),
    ("1m", {"1m": [rpc("GetReading", 100, 50)], "5m": [rpc("GetReading", 1000, 10)],
            "1h": []}, [("error_rate", "WARNING", GET)]),
    ("1h", {"1m": [], "5m": [], "1h": [rpc("GetReading", 100, p95_ms=11_000)]},
     [("latency", "WARNING", GET)]),
    ("5m", {"1m": [rpc("GetReading", 100, 50)]}, []),  # window missing: nothing to judge
]


@pytest.mark.parametrize(("window", "windows", "expected"), WINDOW_CASES)
def test_rules_read_the_configured_window(window: str, windows: dict[str, Any],
                                          expected: list[Any]) -> None:
    """Error-rate and latency findings come from the configured window only."""
    th = Thresholds(window=window)
    assert kinds(judge(answer(snapshot(windows=windows)), th)) == expected


@pytest.mark.parametrize(("threshold", "min_requests", "fires"), [
    (10.0, 20, False), (9.9, 20, True), (10.0, 21, False), (1.0, 200, False)])
def test_thresholds_are_configurable(threshold: float, min_requests: int, fires: bool) -> None:
    """The error-rate threshold and the minimum requests come from the settings."""
    th = Thresholds(error_rate_percent=threshold, min_requests=min_requests)
    found = judge(answer(snapshot(rows=[rpc("GetReading", 20, 2)])), th).findings
    assert bool(found) is fires


def test_degraded_names_the_failing_checks_and_the_reasons() -> None:
    """The degraded finding carries the checks, the health reason and readiness."""
    body = snapshot("degraded", ready=False, checks={"ephemeris": "timeout <5s> & retry"},
                    reason="process 7 reports degraded (ephemeris: timeout)")
    (finding,) = judge(answer(body), TH).findings
    facts = dict(finding.facts)
    assert "ephemeris: timeout <5s> & retry" in facts["Checks"]
    assert facts["Health"].startswith("degraded (process 7")
    assert facts["Ready"].startswith("no")
    assert finding.title == "oracle-a is degraded"
    assert "ephemeris" in finding.summary


def test_error_rate_finding_states_value_against_threshold() -> None:
    """The message facts hold the rate, the counts, the window, the threshold and the codes."""
    rows = [rpc("GetReading", 200, 25, codes={"OK": 175, "Unavailable": 20, "Internal": 5})]
    (finding,) = judge(answer(snapshot(rows=rows)), TH).findings
    facts = dict(finding.facts)
    assert facts["Error rate"] == "12.5% (25 of 200 requests over 5m); threshold 5%"
    assert facts["Codes"] == "Unavailable 20, Internal 5"
    assert finding.title == "error rate 12.5% on GetReading (oracle-a)"


def test_unreachable_url_target_says_what_was_asked() -> None:
    """An unreachable fixed URL names the URL and the error."""
    (finding,) = judge(answer(target=url_target(), error="no answer within 2 s"), TH).findings
    assert dict(finding.facts)["Asked"] == "http://127.0.0.1:9/api/v1/snapshot"
    assert finding.summary == "sidecar unreachable: no answer within 2 s"


@pytest.mark.parametrize(("pods", "status"), [
    ([], "failing"),
    ([pod_target(phase="Pending")], "failing"),
    ([pod_target(terminating=True)], "failing"),
    ([pod_target(phase="Pending"), pod_target("oracle-b")], "ok"),
])
def test_selector_with_no_running_pod_is_critical_unreachable(pods: list[Any], status: str
                                                               ) -> None:
    """No pod (or no running one) behind the selector is CRITICAL unreachable."""
    verdict = no_running_pod("app=oracle", "oracle", pods)
    assert verdict.status == status
    assert verdict.target == selector_target("app=oracle")
    if status == "failing":
        assert [f.kind for f in verdict.findings] == ["unreachable"]


def test_evaluate_collects_verdicts_by_target() -> None:
    """evaluate() keys verdicts by target name and adds the selector's own verdict."""
    ev = evaluate([answer(snapshot()), answer(snapshot("down", ready=False),
                                              target=pod_target("oracle-b"))], TH,
                  selector="app=oracle", namespace="oracle",
                  pods=[pod_target(), pod_target("oracle-b")])
    assert {k: v.status for k, v in ev.verdicts.items()} == {
        "oracle-a": "ok", "oracle-b": "failing", "pods:app=oracle": "ok"}
    assert [f.key for f in ev.findings] == ["degraded|oracle-b|-"]
