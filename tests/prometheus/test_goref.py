"""Side by side with go-grpc-prometheus, the reference the public gRPC dashboards are written for.

A Go gRPC server instrumented with go-grpc-prometheus (tests/prometheus/goref/main.go, built here
from Debian's Go packages) and a grpcio server with this project's reporter and a real sidecar
serve the same service, compat.v1.Echo, with one method of each kind. They receive the same
calls: OK, several error codes, an uncaught exception (Unknown), latencies across the buckets,
messages counted per stream. One real Prometheus scrapes each, every second. Then:

1. every ``grpc_server_*`` series of Go's exists in ours with the same labels (``le`` spelling
   included) and the same value (``_sum`` within the timing tolerance below); ours adds only the
   buckets 20, 30 and 60 s, and otherwise only ``oracle_sidecar_*`` families;
2. 30 PromQL expressions from public dashboards, mixins and alert collections (each names its
   source) give the same label sets and values for both, and none is empty.

Exactness. Each Prometheus is queried at the time of its own target's last scrape, after the
traffic, over windows that begin before the traffic (every counter's first sample in the window
is 0). Prometheus's rate()/increase() extrapolation is then zero at both ends (it stops at the
counter's zero point and at the last sample), so rate() is the increase divided by the window,
exactly, for both servers: the values may differ only by float rounding (relative 1e-9). The one
exception is time: both servers time the same sleeps, but each adds its own overhead, so
``_sum`` and expressions built on it are compared within TIME_SLACK seconds per call. The sleeps
sit at least 9 ms above a bucket bound (only the 0-sleep unary calls have 5 ms, the 0.005 bucket)
so that both servers put each call in the same bucket.
"""

from __future__ import annotations

import json
import math
import os
import re
import select
import shutil
import subprocess
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import pytest

from sidecar.reporter.core import Reporter
from tests.conftest import wait_for
from tests.prometheus.conftest import JOB, PrometheusServer
from tests.prometheus.echo import (
    CALLS,
    KINDS,
    SERVICE,
    drive,
    echo_descriptor,
    expected_messages,
    python_server,
)

GOREF = Path(__file__).resolve().parent / "goref" / "main.go"
EXTRA_BUCKETS = {"20", "30", "60"}  # ours past Go's default 10 s (the P95 > 10 s alert)
TIME_SLACK = 0.02  # seconds per call that the two runtimes' own overheads may differ by
GOPATH = "/usr/share/gocode"  # Debian's golang-*-dev packages install here


# -- the Go reference ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def goref_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go reference server, built once per session (GOPATH mode, Debian's packages)."""
    go = shutil.which("go")
    if go is None:
        pytest.fail("go is missing: install golang-go and the Go gRPC packages "
                    "(bash scripts/setup.sh --test)")
    out = tmp_path_factory.mktemp("goref") / "goref"
    cache = tmp_path_factory.getbasetemp().parent / "goref-gocache"  # kept across sessions
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": GOPATH, "GOCACHE": str(cache),
           "GOFLAGS": "", "CGO_ENABLED": "0"}
    built = subprocess.run([go, "build", "-o", str(out), GOREF.name], cwd=GOREF.parent, env=env,
                           capture_output=True, text=True, timeout=900, check=False)
    assert built.returncode == 0, (
        f"go build of {GOREF} failed (are golang-google-grpc-dev, "
        f"golang-github-grpc-ecosystem-go-grpc-prometheus-dev and "
        f"golang-github-prometheus-client-golang-dev installed?):\n{built.stderr}")
    return out


@pytest.fixture
def goref(goref_binary: Path) -> Iterator[dict[str, int]]:
    """A running Go reference: {"grpc": port, "metrics": port}; stopped by PID after."""
    proc = subprocess.Popen([str(goref_binary)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready and proc.stdout is not None, "the Go reference printed no ports in 30 s"
        ports: dict[str, int] = json.loads(proc.stdout.readline())
        yield ports
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


# -- what Prometheus holds ----------------------------------------------------------------------

Series = dict[frozenset[tuple[str, str]], float]


def scraped(prom: PrometheusServer, at: float, names: str) -> Series:
    """Every series whose name matches ``names`` at ``at``, without job/instance."""
    return {frozenset((k, v) for k, v in r["metric"].items() if k not in ("job", "instance")):
            float(r["value"][1]) for r in prom.query(f'{{__name__=~"{names}"}}', at)}


def last_scrape(prom: PrometheusServer) -> float:
    value = prom.scalar(f'max(timestamp(up{{job="{JOB}"}}))')
    assert value is not None
    return value


# -- public expressions -------------------------------------------------------------------------

# Verbatim, except that the matchers naming the source's own deployment (job="foo",
# job=~".*etcd.*", namespace="$namespace") are pointed at this test's scrape job, and Grafana's
# $interval / $__rate_interval are 5m. USES_SUM marks expressions that read _sum (time slack).
R = "[5m]"
GR = "github.com/grpc-ecosystem/go-grpc-prometheus README.md"
THANOS = "github.com/thanos-io/thanos mixin/lib/thanos-grafana-builder/grpc.libsonnet"
# (the etcd watch-streams panel selects grpc_service="etcdserverpb.Watch": here, our service)
THANOS_ALERTS = "github.com/srerun/prometheus-alerts content/runbooks/thanos-*/ (Thanos alerts)"
ETCD = "github.com/etcd-io/etcd contrib/mixin/alerts/alerts.libsonnet"
ETCD_DASH = "github.com/etcd-io/etcd contrib/mixin/dashboards/targets.libsonnet"
ETCD_RB = "kubesphere/alert-runbooks content/runbooks/etcd/etcdHighNumberOfFailedGRPCRequests.md"
OCP = "stratus-ss/ocp-prometheus-runbooks etcdGRPCRequestsSlow.md"
PRAEFECT = "gitlab.com/gitlab-com/runbooks metrics-catalog/services/praefect.jsonnet"
PYRRA = "pyrra-dev/pyrra examples (parca-grpc-queryrange-errors ServiceLevelObjective)"
SAPCC = "sapcc/helm-charts common/thanos/templates/alerts/_thanos-query.alerts.tpl"
SLO = "metalmatze/slo-libsonnet examples/grpc-request-errors-dashboard.jsonnet"
J = f'job="{JOB}"'
S = f'{{{J}}}'
SEL = f'namespace=~".*",job=~"{JOB}",grpc_type="unary"'  # thanos dashboards' selector
THANOS_ERR = "Unknown|ResourceExhausted|Internal|Unavailable|DataLoss"
ETCD_ERR = ("Unknown|FailedPrecondition|ResourceExhausted|Internal|Unavailable|DataLoss|"
            "DeadlineExceeded")
PUBLIC: list[tuple[str, str]] = [
    (GR, f"sum(rate(grpc_server_started_total{S}[1m])) by (grpc_service)"),
    (GR, f'sum(rate(grpc_server_handled_total{{{J},grpc_type="unary",grpc_code!="OK"}}[1m])) '
         f"by (grpc_service)"),
    (GR, f'sum(rate(grpc_server_handled_total{{{J},grpc_type="unary",grpc_code!="OK"}}[1m])) '
         f'by (grpc_service) / sum(rate(grpc_server_started_total{{{J},grpc_type="unary"}}[1m])) '
         f"by (grpc_service) * 100.0"),
    (GR, f'sum(rate(grpc_server_msg_sent_total{{{J},grpc_type="server_stream"}}[10m])) '
         f'by (grpc_service) / sum(rate(grpc_server_started_total{{{J},'
         f'grpc_type="server_stream"}}[10m])) by (grpc_service)'),
    (GR, f'histogram_quantile(0.99, sum(rate(grpc_server_handling_seconds_bucket{{{J},'
         f'grpc_type="unary"}}[5m])) by (grpc_service,le))'),
    (GR, f'sum(rate(grpc_server_handling_seconds_bucket{{{J},grpc_type="unary",le="0.25"}}[5m])) '
         f'by (grpc_service) / sum(rate(grpc_server_handling_seconds_count{{{J},'
         f'grpc_type="unary"}}[5m])) by (grpc_service)'),
    (THANOS, f"sum(rate(grpc_server_handled_total{{{SEL}}}{R})) by (job, grpc_method, grpc_code)"),
    (THANOS, f'sum(rate(grpc_server_handled_total{{grpc_code=~"{THANOS_ERR}",{SEL}}}{R})) '
             f"/ sum(rate(grpc_server_started_total{{{SEL}}}{R}))"),
    (THANOS, f"histogram_quantile(0.99, sum(rate(grpc_server_handling_seconds_bucket{{{SEL}}}"
             f"{R})) by (job, grpc_method, le)) * 1"),
    (THANOS, f"histogram_quantile(0.50, sum(rate(grpc_server_handling_seconds_bucket{{{SEL}}}"
             f"{R})) by (job, grpc_method, le)) * 1"),
    (THANOS + " USES_SUM",
     f"sum(rate(grpc_server_handling_seconds_sum{{{SEL}}}{R})) by (job) * 1 / "
     f"sum(rate(grpc_server_handling_seconds_count{{{SEL}}}{R})) by (job)"),
    (THANOS, f'sum(rate(grpc_server_handled_total{{namespace=~".*",job=~"{JOB}",'
             f'grpc_type="server_stream"}}{R})) by (job, grpc_method, grpc_code)'),
    (THANOS_ALERTS, f'(sum by (job) (rate(grpc_server_handled_total{{grpc_code=~"Unknown|'
                    f'ResourceExhausted|Internal|Unavailable|DataLoss|DeadlineExceeded", '
                    f'job=~"{JOB}"}}[5m]))/  sum by (job) (rate(grpc_server_started_total'
                    f'{{job=~"{JOB}"}}[5m])) * 100 > 5)'),
    (THANOS_ALERTS, f'(sum by (job, instance) (rate(grpc_server_handled_total{{grpc_code=~'
                    f'"Unknown|ResourceExhausted|Internal|Unavailable|DataLoss|DeadlineExceeded",'
                    f' job=~"{JOB}"}}[5m]))/  sum by (job, instance) (rate('
                    f'grpc_server_started_total{{job=~"{JOB}"}}[5m])) * 100 > 5)'),
    (SAPCC, f'rate(grpc_server_handled_total{{grpc_code=~"Unknown|ResourceExhausted|Internal|'
            f'Unavailable",{J}}}[5m]) > 0'),
    (ETCD, f'100 * sum(rate(grpc_server_handled_total{{{J}, grpc_code=~"{ETCD_ERR}"}}[5m])) '
           f"without (grpc_type, grpc_code) / sum(rate(grpc_server_handled_total{S}[5m])) "
           f"without (grpc_type, grpc_code) > 1"),
    (ETCD, f'histogram_quantile(0.99, sum(rate(grpc_server_handling_seconds_bucket{{{J}, '
           f'grpc_method!="Defragment", grpc_type="unary"}}[5m])) without(grpc_type))'),
    (ETCD_DASH, f'sum(grpc_server_started_total{{{J},grpc_service="{SERVICE}",'
           f'grpc_type="bidi_stream"}}) - sum(grpc_server_handled_total{{{J},'
           f'grpc_service="{SERVICE}",grpc_type="bidi_stream"}})'),
    (ETCD_DASH, f'sum(rate(grpc_server_started_total{{{J},grpc_type="unary"}}[5m]))'),
    (ETCD_DASH, f'sum(rate(grpc_server_handled_total{{{J},grpc_type="unary",grpc_code=~"{ETCD_ERR}"'
           f"}}[5m]))"),
    (ETCD_RB, f'100 * sum without(grpc_type, grpc_code) (rate(grpc_server_handled_total{{'
              f'grpc_code=~"{ETCD_ERR}",{J}}}[5m])) / sum without(grpc_type, grpc_code) '
              f"(rate(grpc_server_handled_total{S}[5m])) > 5"),
    (OCP, f'100 * sum(rate(grpc_server_handled_total{{{J}, grpc_code!="OK"}}[5m])) '
          f"BY (job, instance, grpc_service, grpc_method)"),
    (PRAEFECT, f'sum(rate(grpc_server_handling_seconds_bucket{{{J}, grpc_type="unary", '
               f'le="0.5"}}[5m])) / sum(rate(grpc_server_handling_seconds_bucket{{{J}, '
               f'grpc_type="unary", le="+Inf"}}[5m]))'),
    (PRAEFECT, f'sum(rate(grpc_server_handling_seconds_bucket{{{J}, grpc_type="unary", '
               f'le="1"}}[5m])) / sum(rate(grpc_server_handling_seconds_bucket{{{J}, '
               f'grpc_type="unary", le="+Inf"}}[5m]))'),
    (PRAEFECT, f"sum(rate(grpc_server_handled_total{S}[5m]))"),
    (PRAEFECT, f'sum(rate(grpc_server_handled_total{{{J}, grpc_code!~'
               f'"^(OK|NotFound|Unauthenticated|AlreadyExists|FailedPrecondition)$"}}[5m]))'),
    (PYRRA, f'sum(rate(grpc_server_handled_total{{grpc_service="{SERVICE}",grpc_method="Unary",'
            f'grpc_code=~"Aborted|Unavailable|Internal|Unknown|Unimplemented|DataLoss"}}[5m])) / '
            f'sum(rate(grpc_server_handled_total{{grpc_service="{SERVICE}",'
            f'grpc_method="Unary"}}[5m]))'),
    (SLO, f'sum(rate(grpc_server_handled_total{{grpc_type="unary",{J},grpc_code!="OK"}}[5m])) '
          f'/ sum(rate(grpc_server_handled_total{{grpc_type="unary",{J}}}[5m])) * 100'),
    (GR + " (messages per stream, both directions)",
     f"sum by (grpc_type) (increase(grpc_server_msg_received_total{S}[5m]))"),
    (GR + " (messages per stream, both directions)",
     f"sum by (grpc_method) (rate(grpc_server_msg_sent_total{S}[5m]))"),
]


def close(a: float, b: float, slack: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= slack + 1e-9 * max(abs(a), abs(b))


def test_ours_equals_go_grpc_prometheus_series_by_series_and_in_public_queries(
        goref: dict[str, int], sidecar_factory: Any, prometheus: Any) -> None:
    """Same calls to Go's reference and ours: equal grpc_server_* series, equal public queries."""
    sc = sidecar_factory()
    rep = Reporter(SERVICE, "1.0", socket_path=sc.socket, interval=0.25,
                   services=[echo_descriptor()]).start()
    server, port = python_server(rep)
    try:
        prom_go = prometheus([f"127.0.0.1:{goref['metrics']}"])
        prom_ours = prometheus([f"127.0.0.1:{sc.port}"])
        started = f'count(grpc_server_started_total{{{J}}})'
        for prom in (prom_go, prom_ours):  # every method at zero before any call
            wait_for(lambda p=prom: p.scalar(started) == len(KINDS), 30, interval=0.2,
                     message="the four methods at zero in Prometheus")
        before = max(last_scrape(prom_go), last_scrape(prom_ours))
        with futures.ThreadPoolExecutor(2) as pool:
            seen_go, seen_ours = pool.map(drive, (goref["grpc"], port))
        assert seen_ours == seen_go, "the two servers answered the same calls differently"
        assert {code for _, code in seen_go} >= {"OK", "NotFound", "InvalidArgument",
                                                 "Unavailable", "Unknown", "Internal"}
        handled = f'sum(grpc_server_handled_total{{{J}}})'
        for prom in (prom_go, prom_ours):
            wait_for(lambda p=prom: p.scalar(handled) == len(CALLS), 20, interval=0.2,
                     message="every call in Prometheus")
        at_go, at_ours = last_scrape(prom_go), last_scrape(prom_ours)
        assert max(at_go, at_ours) - before < 50, "the traffic must fit in the 1m windows"
        go = scraped(prom_go, at_go, "grpc_server_.*")
        ours = scraped(prom_ours, at_ours, "grpc_server_.*")
        names_go = {r["metric"]["__name__"] for r in prom_go.query('{__name__=~".+"}', at_go)}
        names_ours = {r["metric"]["__name__"] for r in prom_ours.query('{__name__=~".+"}',
                                                                        at_ours)}
    finally:
        server.stop(None)
        rep.close()

    # 1. Series by series.
    calls = len(CALLS)
    # started, handled x 17 codes, msg x 2, 12 buckets, sum, count; for each of 4 methods
    assert len(go) == 4 * (1 + 17 + 2 + 12 + 2)
    missing = sorted(str(dict(sorted(k))) for k in go.keys() - ours.keys())
    assert not missing, f"Go's series missing from ours: {missing[:5]}"
    for key, value in go.items():
        slack = TIME_SLACK * calls if dict(key)["__name__"].endswith("_sum") else 0.0
        assert close(ours[key], value, slack), (dict(key), ours[key], value)
    extra = [dict(k) for k in ours.keys() - go.keys()]
    assert extra and all(e["__name__"] == "grpc_server_handling_seconds_bucket"
                         and e["le"] in EXTRA_BUCKETS for e in extra), extra
    for e in extra:  # the extra buckets hold what Go's +Inf holds (nothing here is over 10 s)
        inf = frozenset({**e, "le": "+Inf"}.items())
        assert ours[frozenset(e.items())] == ours[inf]
    assert {n for n in names_ours - names_go if not n.startswith("oracle_sidecar_")} == set()
    kinds = {dict(k)["grpc_method"]: dict(k)["grpc_type"] for k in ours}
    assert kinds == KINDS
    messages = {(dict(k)["grpc_method"], dict(k)["__name__"]): v for k, v in go.items()
                if dict(k)["__name__"].startswith("grpc_server_msg_")}
    assert {m: (messages[(m, "grpc_server_msg_received_total")],
                messages[(m, "grpc_server_msg_sent_total")]) for m in KINDS} == expected_messages(
        CALLS)  # go-grpc-prometheus counts as tests/prometheus/echo.py says it does

    # 2. Public expressions.
    assert len(PUBLIC) >= 25
    for source, expr in PUBLIC:
        slack = TIME_SLACK if "USES_SUM" in source else 0.0
        want = {frozenset((k, v) for k, v in r["metric"].items() if k != "instance"):
                float(r["value"][1]) for r in prom_go.query(expr, at_go)}
        got = {frozenset((k, v) for k, v in r["metric"].items() if k != "instance"):
               float(r["value"][1]) for r in prom_ours.query(expr, at_ours)}
        assert want, f"{source}: empty for Go, so it proves nothing: {expr}"
        assert got.keys() == want.keys(), (source, expr, sorted(str(sorted(k)) for k in got),
                                           sorted(str(sorted(k)) for k in want))
        for key, value in want.items():
            assert close(got[key], value, slack), (source, expr, dict(key), got[key], value)
    assert len({re.sub(r" \(.*| USES_SUM", "", s) for s, _ in PUBLIC}) >= 9
