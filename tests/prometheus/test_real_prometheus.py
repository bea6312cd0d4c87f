"""A real Prometheus server scraping a real sidecar fed by a real grpcio server.

One test, one timeline (about 40 s; the first scrape alone takes several seconds):

1. the sidecar and the reporter (health "degraded") start, then Prometheus, scraping every
   second with prometheus/oracle-rules.yaml loaded; the first scrape already has the eight RPCs
   at zero;
2. phase A: known calls on every RPC, errors spread thin, three calls of 10.5 s in the
   background; the reporter then stops pushing for a while (pushes stale);
3. the sidecar is killed with SIGKILL between scrapes (Prometheus records up == 0), phase B runs
   while it is gone, and it is started again on the same port and socket;
4. phase C: an error burst on GetReading and a malformed datagram.

Then Prometheus's numbers are compared with the calls the client saw and with the sidecar's
own /api/v1/snapshot, and every PromQL expression of the rule file and of the Grafana dashboard
is evaluated against this Prometheus at the moments the timeline produced.
"""

from __future__ import annotations

import json
import math
import re
import socket
from bisect import bisect_left
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import yaml

from sidecar import protocol
from sidecar.reporter.core import Reporter
from tests.conftest import http_json, wait_for
from tests.prometheus.conftest import (
    DASHBOARD,
    JOB,
    METHODS,
    RULES,
    SERVICE,
    PrometheusServer,
    promtool,
)

SLOW_SECONDS = 10.5  # above the 10 s P95 threshold, in the (10, 20] bucket
SEL = f'job="{JOB}"'


def plan_a() -> list[tuple[str, float, str]]:
    """Phase A: every RPC under 20 calls (GetTimingAlignment reaches 20 with the slow ones),
    6 errors in 83 calls: over 5 % for all RPCs together, but no RPC judged alone."""
    counts = {"GetReading": 15, "GetNameReading": 10, "GetQuestionSign": 10,
              "GetDailyInsight": 10, "SuggestRange": 8, "AnalyzeSession": 8,
              "GetTimingAlignment": 17, "HealthCheck": 5}
    plan: list[tuple[str, float, str]] = []
    for method, n in counts.items():
        for i in range(n):
            code = "OK"
            if method == "GetReading" and i % 3 == 0:
                code = "Internal"
            if method == "GetQuestionSign" and i == 4:
                code = "NotFound"
            plan.append((method, ((len(plan) * 37) % 23) * 0.01, code))
    return plan


PLAN_B = [("GetDailyInsight", 0.003, "OK")] * 10 + [("AnalyzeSession", 0.002, "Unavailable")] * 2
PLAN_C = [("GetReading", ((i * 7) % 13) * 0.01, "Internal" if i % 5 == 0 else "OK")
          for i in range(20)]


def bucket_index(seconds: float) -> int:
    """The index of the histogram bucket ``seconds`` falls in (0: up to 5 ms)."""
    return bisect_left(protocol.DEFAULT_BUCKETS, seconds - 1e-9)


def dashboard_queries() -> tuple[list[tuple[str, str]], list[str]]:
    """(panel title, expr) of every dashboard target, and every template-variable query."""
    dashboard = json.loads(DASHBOARD.read_text())
    targets = [(panel["title"], target["expr"]) for panel in dashboard["panels"]
               for target in panel.get("targets", [])]
    variables = [v["query"]["query"] for v in dashboard["templating"]["list"]
                 if v["type"] == "query"]
    return targets, variables


def substitute(expr: str, values: dict[str, str]) -> str:
    """``expr`` with Grafana's $name / ${name} variables replaced; an unknown one fails."""
    def one(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        assert name in values, f"unknown dashboard variable ${name} in {expr}"
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, expr)


def test_real_prometheus_agrees_with_the_traffic_through_a_sidecar_kill(
        sidecar_factory: Any, oracle_server: Any, prometheus: Any) -> None:
    """Exact counts, increase() across a kill -9, p95 within a bucket, every query answers."""
    sc = sidecar_factory()
    rep = Reporter(SERVICE, "1.0", [f"/{SERVICE}/{m}" for m in METHODS],
                   socket_path=sc.socket, interval=0.25)
    rep.set_health("degraded", {"model": "loading"})
    rep.start()
    pool = ThreadPoolExecutor(16)
    try:
        oracle = oracle_server(rep)
        seen: Counter[tuple[str, str]] = Counter()

        def run(plan: list[tuple[str, float, str]]) -> None:
            for (method, _, _), code in zip(plan, pool.map(lambda p: oracle.call(*p), plan),
                                            strict=True):
                seen[(method, code)] += 1

        prom: PrometheusServer = prometheus([f"127.0.0.1:{sc.port}"], [RULES])
        moments: dict[str, float] = {"before": prom.started}

        def last_scrape() -> float:
            """The time of the newest scrape of the sidecar (of a sample, so no extrapolation)."""
            value = prom.scalar(f"max(timestamp(up{{{SEL}}}))")
            assert value is not None
            return value

        # 1. The first scrape: eight RPCs x 17 codes, all at zero, health degraded.
        wait_for(lambda: prom.scalar(f"count(grpc_server_handled_total{{{SEL}}})") == 136, 30,
                 interval=0.2, message="the first scrape with the RPC series")
        first_up = prom.query(f"up{{{SEL}}}[5m]")[0]["values"][0]
        series = prom.query(f"grpc_server_handled_total{{{SEL}}}[5m]")
        assert len(series) == len(METHODS) * len(protocol.CODES)
        assert {(s["values"][0][0], s["values"][0][1]) for s in series} == {(first_up[0], "0")}
        moments["first"] = float(first_up[0])
        rep.set_health("healthy")

        # 2. Phase A, the slow calls, then pushes stop for longer than the stale limit.
        slow_pool = ThreadPoolExecutor(3)
        slow = [slow_pool.submit(oracle.call, "GetTimingAlignment", SLOW_SECONDS)
                for _ in range(3)]
        run(plan_a())
        wait_for(lambda: prom.scalar(f"sum(grpc_server_handled_total{{{SEL}}})") == 83, 10,
                 interval=0.2, message="phase A in Prometheus")
        moments["phase_a"] = last_scrape()
        rep._stop.set()  # the Oracle stops pushing (hangs, say) without saying goodbye
        assert rep._flusher is not None
        rep._flusher.join(5)
        wait_for(lambda: (prom.scalar(f"oracle_sidecar_last_push_age_seconds{{{SEL}}}") or 0)
                 > 5 and prom.scalar(f'oracle_sidecar_health_status{{{SEL},status="down"}}'),
                 15, interval=0.2, message="a push age over 5 s, and so down, in Prometheus")
        moments["stale"] = last_scrape()
        rep.start()

        # 3. kill -9 between scrapes, phase B while it is gone, the same sidecar again.
        age = f"oracle_sidecar_last_push_age_seconds{{{SEL}}}"
        wait_for(lambda: (prom.scalar(age) or 9) < 1, 10, interval=0.2, message="pushes again")
        assert sc.kill() == -9
        wait_for(lambda: prom.scalar(f"up{{{SEL}}}") == 0, 10, interval=0.2,
                 message="Prometheus to record the failed scrape")
        moments["down"] = last_scrape()
        run(PLAN_B)
        for future in slow:
            seen[("GetTimingAlignment", future.result(30))] += 1
        slow_pool.shutdown()
        sc.start()
        before_c = sum(seen.values())
        wait_for(lambda: prom.scalar(f"sum(grpc_server_handled_total{{{SEL}}})") == before_c,
                 20, interval=0.2, message="the restarted sidecar's totals in Prometheus")
        moments["restarted"] = last_scrape()

        # 4. Phase C and a malformed datagram.
        run(PLAN_C)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as raw:
            raw.sendto(b"{not json", sc.socket)

        def totals() -> dict[tuple[str, ...], int]:
            return {k: int(v) for k, v in prom.values(
                f"sum by (grpc_method, grpc_code) (grpc_server_handled_total{{{SEL}}}) > 0",
                "grpc_method", "grpc_code").items()}

        wait_for(lambda: totals() == dict(seen), 10, interval=0.2,
                 message=f"Prometheus's totals to equal the client's {dict(seen)}")
        wait_for(lambda: prom.scalar(f'oracle_sidecar_messages_rejected_total{{{SEL},'
                                     f'reason="bad_json"}}') == 1, 10, interval=0.2,
                 message="the rejected datagram in Prometheus")
        end = moments["end"] = last_scrape()
        snapshot = http_json(sc.url + "/api/v1/snapshot")
        live_metrics = sc.metrics()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        rep.close()

    whole = f"{math.ceil(end - prom.started) + 5}s"  # reaches back before the first scrape
    check_counts(prom, seen, end, whole)
    check_percentiles(prom, snapshot, end, whole, moments["restarted"])
    check_rule_expressions(prom, moments)
    check_dashboard_expressions(prom, end, whole, sc.port)
    check_server_side_rules(prom)
    lint = promtool("check", "metrics", stdin=live_metrics)
    assert (lint.returncode, lint.stdout + lint.stderr) == (0, "")
    assert sum(seen.values()) == 83 + 3 + 12 + 20
    assert seen[("GetReading", "Internal")] == 5 + 4


def check_counts(prom: PrometheusServer, seen: Counter[tuple[str, str]], end: float,
                 whole: str) -> None:
    """sum by (method, code) and increase() over the whole run equal the client's calls."""
    expected = {(m, c): float(seen.get((m, c), 0)) for m in METHODS for c in protocol.CODES}
    now = prom.values(f"sum by (grpc_method, grpc_code) (grpc_server_handled_total{{{SEL}}})",
                      "grpc_method", "grpc_code", at=end)
    assert now == expected
    increase = prom.values(f"sum by (grpc_method, grpc_code) "
                           f"(increase(grpc_server_handled_total{{{SEL}}}[{whole}]))",
                           "grpc_method", "grpc_code", at=end)
    assert increase == expected  # exactly: no reset artefact and no extrapolation
    for family in ("grpc_server_handled_total", "grpc_server_started_total",
                   "grpc_server_handling_seconds_bucket", "grpc_server_handling_seconds_count"):
        assert prom.scalar(f"sum(resets({family}{{{SEL}}}[{whole}]))", at=end) == 0, family
    started = prom.values(f"sum by (grpc_method) (increase(grpc_server_started_total"
                          f"{{{SEL}}}[{whole}]))", "grpc_method", at=end)
    calls = Counter(m for (m, _), n in seen.items() for _ in range(n))
    assert started == {(m,): float(calls[m]) for m in METHODS}
    # The scrapes around the kill failed: Prometheus saw the gap it bridged.
    assert prom.scalar(f"min_over_time(up{{{SEL}}}[{whole}])", at=end) == 0


def check_percentiles(prom: PrometheusServer, snapshot: dict[str, Any], end: float, whole: str,
                      restarted: float) -> None:
    """histogram_quantile(0.95) and the snapshot's p95 fall in the same bucket, per RPC and in all.

    The issue asks for "within one bucket"; the same bucket holds by construction: the snapshot
    interpolates as histogram_quantile does and then caps at the largest duration seen, which
    lies in the same bucket as the 95th-percentile call or above it.
    """
    figures = []

    def compare(window: str, rows: dict[str, dict[str, Any]], promql_range: str) -> None:
        quantiles = prom.values(
            f"histogram_quantile(0.95, sum by (grpc_method, le) "
            f"(increase(grpc_server_handling_seconds_bucket{{{SEL}}}[{promql_range}])))",
            "grpc_method", at=end)
        counts = prom.values(f"sum by (grpc_method) (increase("
                             f"grpc_server_handling_seconds_count{{{SEL}}}[{promql_range}]))",
                             "grpc_method", at=end)
        for method, row in rows.items():
            if not row["count"]:
                continue
            assert counts[(method,)] == row["count"], (window, method)
            ours, theirs = row["p95_ms"] / 1000, quantiles[(method,)]
            figures.append((window, method, row["count"], ours, theirs))
            assert bucket_index(ours) == bucket_index(theirs), (window, method, ours, theirs)

    everything = snapshot["windows"]["all"]
    compare("all", {r["method"]: r for r in everything["rpcs"]}, whole)
    total = prom.scalar(f"histogram_quantile(0.95, sum by (le) (increase("
                        f"grpc_server_handling_seconds_bucket{{{SEL}}}[{whole}])))", at=end)
    assert total is not None
    ours = everything["totals"]["p95_ms"] / 1000
    figures.append(("all", "(all RPCs)", everything["totals"]["count"], ours, total))
    assert bucket_index(ours) == bucket_index(total)
    # The last minute, which for the restarted sidecar began with its first push: phase C.
    minute = {r["method"]: r for r in snapshot["windows"]["1m"]["rpcs"]}
    assert minute["GetReading"]["count"] == len(PLAN_C)
    since_restart = f"{round((end - restarted) * 1000)}ms"
    compare("1m", {"GetReading": minute["GetReading"]}, since_restart)
    slowest = next(f for f in figures if f[:2] == ("all", "GetTimingAlignment"))
    assert slowest[3] > 10 and slowest[4] > 10  # the slow calls put its P95 over 10 s
    for window, method, count, snap, promql in figures:
        print(f"p95 {window:>3} {method:<20} n={count:<3} snapshot {snap * 1000:9.1f} ms   "
              f"PromQL {promql * 1000:9.1f} ms")


# Where on the timeline each alert's condition holds (the rules have `for: 1m`; the test is
# shorter, so it is the expressions that are evaluated here, at those moments).
HOLDS_AT = {
    "OracleSidecarAbsent": "before",  # before the first scrape
    "OracleDegraded": "first",  # the reporter said degraded
    "OraclePushesStale": "stale",
    "OracleSidecarDown": "down",
    "OracleErrorRateHighAllRPCs": "phase_a",  # 6 of 83 calls, no RPC with 20
    "OracleErrorRateHigh": "end",  # GetReading: 9 of 35
    "OracleLatencyP95High": "end",  # GetTimingAlignment: 3 of 20 calls took 10.5 s
}
QUIET_AT_END = {"OracleSidecarAbsent", "OracleDegraded", "OraclePushesStale",
                "OracleSidecarDown", "OracleErrorRateHighAllRPCs"}


def check_rule_expressions(prom: PrometheusServer, moments: dict[str, float]) -> None:
    """Every rule expression parses at every moment and returns data where its condition holds."""
    rules = {r["alert"]: r for r in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]}
    assert set(rules) == set(HOLDS_AT)
    for name, rule in rules.items():
        answers = {moment: prom.query(rule["expr"], at) for moment, at in moments.items()}
        assert answers[HOLDS_AT[name]], f"{name} returned nothing at {HOLDS_AT[name]}"
        if name in QUIET_AT_END:
            assert answers["end"] == [], f"{name} still holds at the end: {answers['end']}"
        labels = [r["metric"] for r in answers[HOLDS_AT[name]]]
        if name == "OracleDegraded":
            assert [m.get("status") for m in labels] == ["degraded"]
            assert [r["metric"].get("status") for r in answers["stale"]] == ["down"]
        if name == "OracleErrorRateHigh":
            assert [m["grpc_method"] for m in labels] == ["GetReading"]
        if name == "OracleLatencyP95High":
            assert [m["grpc_method"] for m in labels] == ["GetTimingAlignment"]
        if name == "OracleErrorRateHighAllRPCs":
            assert ["grpc_method" in m for m in labels] == [False]


def check_dashboard_expressions(prom: PrometheusServer, end: float, whole: str,
                                port: int) -> None:
    """Every dashboard query, with the variables on All and on one value, returns numbers."""
    targets, variables = dashboard_queries()
    assert len(targets) >= 15
    settings = {
        "all": {"job": ".+", "instance": ".+", "method": ".+", "excluded": "",
                "__rate_interval": whole},
        "one": {"job": JOB, "instance": f"127.0.0.1:{port}", "method": "GetReading",
                "excluded": "NotFound|Canceled", "__rate_interval": whole},
    }
    for values in settings.values():
        for title, expr in targets:
            query = substitute(expr, values)
            result = prom.query(query, end)
            finite = [r for r in result if math.isfinite(float(r["value"][1]))]
            assert finite, f"{title}: {query} returned no number: {result}"
        for variable in variables:
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable)
            assert match, variable
            selector, label = substitute(match[1], values), match[2]
            found = prom.values(f"count by ({label}) ({selector})", label, at=end)
            assert found and all(key[0] for key in found), f"{variable}: {found}"


def check_server_side_rules(prom: PrometheusServer) -> None:
    """Prometheus itself loaded and evaluates the rule file without an error."""
    groups = prom.api("rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == len(HOLDS_AT)
    for rule in rules:
        assert (rule["name"], rule["health"], rule.get("lastError", "")) == (
            rule["name"], "ok", "")
    active = {(a["labels"]["alertname"], a["labels"].get("grpc_method"))
              for a in prom.api("alerts")["alerts"]}
    # The two conditions that hold at the end are at least pending in Prometheus itself.
    wait_for(lambda: {("OracleErrorRateHigh", "GetReading"),
                      ("OracleLatencyP95High", "GetTimingAlignment")} <= {
        (a["labels"]["alertname"], a["labels"].get("grpc_method"))
        for a in prom.api("alerts")["alerts"]}, 5, interval=0.2,
        message=f"the alerts in Prometheus (had {active})")
