"""The P95 > 10 s rule on the fine-histogram figures: it fires exactly when the true p95 does.

Real pieces from the reporter to the rule: a Reporter records exact durations, its pushes go
through the wire format into a Store, the snapshot is the sidecar's own JSON, and the rule
judges it. 10 s is a fine bound, so an estimate never crosses it: a p95 at or under 10 s stays
quiet and one above fires, however close.
"""

from __future__ import annotations

import pytest

from sidecar import protocol
from sidecar.alerter.rules import Thresholds, judge
from sidecar.exposition import Exposition
from sidecar.reporter.core import Reporter
from sidecar.store import Store
from tests.alerter.conftest import SERVICE, answer

TH = Thresholds(p95_seconds=10.0, window="5m", min_requests=20)


def snapshot_for(p95_seconds: float) -> dict[str, object]:
    """The sidecar's snapshot after 100 calls whose exact (nearest-rank) p95 is the given one."""
    rep = Reporter(SERVICE, socket_path="/nonexistent/socket")
    series = rep.series(f"/{SERVICE}/GetReading")
    assert series is not None
    for _ in range(94):
        rep.observe(series, 0.05)
    rep.observe(series, p95_seconds)  # the 95th of 100 values
    for _ in range(5):
        rep.observe(series, 30.0)
    store = Store()
    for datagram in protocol.encode(
            source={"id": rep.source_id, "pid": 1, "started": store.wall()}, seq=1,
            time=store.wall(), buckets=rep.buckets, rows=rep.rows(), health="healthy",
            checks={}, reporter={}):
        assert store.ingest(datagram) is None
    return Exposition(store).snapshot({"status": "healthy", "ready": True, "checks": {}})


@pytest.mark.parametrize(("p95", "fires"), [
    (10.0, False), (9.999, False), (9.9, False), (9.81, False),
    (10.001, True), (10.1, True), (10.19, True),
])
def test_p95_rule_fires_on_the_right_side_of_10_seconds(p95: float, fires: bool) -> None:
    """Exact p95 at or under 10 s: quiet; above 10 s, even by 1 ms: a latency warning."""
    doc = snapshot_for(p95)
    (row,) = doc["windows"]["5m"]["rpcs"]  # type: ignore[index]
    assert abs(row["p95_ms"] - p95 * 1000) <= 0.02 * p95 * 1000
    verdict = judge(answer(doc), TH)
    assert [f.kind for f in verdict.findings] == (["latency"] if fires else [])
    if fires:
        assert "threshold 10 s" in verdict.findings[0].summary
