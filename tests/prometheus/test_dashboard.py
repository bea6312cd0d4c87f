"""The Grafana dashboard's shape: data source variable, standard metric names, a tidy grid.

Its queries are evaluated against a real Prometheus in test_real_prometheus.py.
"""

from __future__ import annotations

import json
import re
from itertools import combinations
from typing import Any

from tests.prometheus.conftest import DASHBOARD, REPO

DS = {"type": "prometheus", "uid": "${datasource}"}


def load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def targets(dashboard: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every query of the dashboard."""
    return [(p, t) for p in dashboard["panels"] for t in p.get("targets", [])]


def test_data_source_is_a_template_variable() -> None:
    """A datasource variable of type prometheus, and every panel and query uses it."""
    dashboard = load()
    (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert (variable["name"], variable["query"]) == ("datasource", "prometheus")
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == DS, panel["title"]
    for panel, target in targets(dashboard):
        assert target["datasource"] == DS, panel["title"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == DS, variable["name"]
    assert "__inputs" not in dashboard  # no import-time prompt: the ConfigMap loads it as is
    assert "${DS_" not in DASHBOARD.read_text()


def test_the_panels_the_issue_asks_for_are_there() -> None:
    """Requests/s by method and code, error ratio, p50/p95/p99, health, push age, rejects."""
    exprs = {p["title"]: " ".join(t["expr"] for t in p["targets"])
             for p in load()["panels"] if p["type"] != "row"}
    assert "by(grpc_method,grpc_code)" in exprs["Requests/s by method and code"]
    assert 'grpc_code!~"OK|$excluded"' in exprs["Error ratio by method"]
    for q, name in (("0.5", "P50"), ("0.95", "P95"), ("0.99", "P99")):
        assert exprs[f"{name} latency by method"].startswith(f"histogram_quantile({q},")
        assert "by(grpc_method,le)" in exprs[f"{name} latency by method"]
    assert "oracle_sidecar_health_status" in exprs["Oracle health"]
    assert "oracle_sidecar_last_push_age_seconds" in exprs["Last push age"]
    assert "oracle_sidecar_messages_rejected_total" in exprs[
        "Sidecar rejects and reporter drops"]


def test_queries_use_only_metrics_the_sidecar_exports() -> None:
    """Every metric name in a query is a standard gRPC name or one of docs/metrics.md."""
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", (REPO / "docs" / "metrics.md").read_text(),
                                re.MULTILINE))
    histogram = {"grpc_server_handling_seconds_bucket", "grpc_server_handling_seconds_count"}
    dashboard = load()
    queries = [t["expr"] for _, t in targets(dashboard)] + [
        v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    used = set()
    for query in queries:
        used |= set(re.findall(r"\b((?:grpc_server|oracle_sidecar)_[a-z_]+)\b", query))
    assert used
    assert used <= documented | histogram | {"oracle_sidecar_build_info"}, used - documented


def test_grid_is_tidy_and_ids_are_unique() -> None:
    """Panels fit 24 columns, never overlap, and have unique ids; every query has a refId."""
    panels = load()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    boxes = []
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        boxes.append((grid["x"], grid["y"], grid["x"] + grid["w"], grid["y"] + grid["h"],
                      panel["title"]))
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(set(refs)) == len(refs), panel["title"]
    for a, b in combinations(boxes, 2):
        overlap = a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
        assert not overlap, (a[4], b[4])


def test_dashboard_has_a_stable_uid_and_title() -> None:
    """A fixed uid, so links survive re-imports, and the refresh and time range set."""
    dashboard = load()
    assert dashboard["uid"] == "oracle-sidecar"
    assert dashboard["title"]
    assert dashboard["time"] == {"from": "now-1h", "to": "now"}
    assert {v["name"] for v in dashboard["templating"]["list"]} == {
        "datasource", "job", "instance", "method", "excluded"}
