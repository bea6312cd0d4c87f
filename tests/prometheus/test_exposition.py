"""The sidecar's /metrics as Prometheus tools see it: promtool-clean, every RPC from the start."""

from __future__ import annotations

import socket
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om

from sidecar import protocol
from sidecar.reporter.core import Reporter
from tests.conftest import SidecarProcess, free_port, http_get, parse_metrics, wait_for
from tests.demo.helpers import Proc
from tests.prometheus.conftest import METHODS, SERVICE, promtool

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def lint(text: str) -> str:
    """promtool check metrics on an exposition: its findings ('' when there are none)."""
    result = promtool("check", "metrics", stdin=text)
    findings = (result.stdout + result.stderr).strip()
    assert (result.returncode == 0) == (findings == ""), result
    return findings


def test_promtool_check_metrics_does_report_findings() -> None:
    """The lint used below is not blind: a counter without _total and a missing HELP are found."""
    findings = lint("# TYPE requests counter\nrequests 1\n")
    assert "counter metrics should have \"_total\" suffix" in findings
    assert "no help text" in findings


def handled_samples(text: str, service: str) -> dict[tuple[str, str], float]:
    """grpc_server_handled_total of ``service`` as {(method, code): value}."""
    return {(dict(labels)["grpc_method"], dict(labels)["grpc_code"]): value
            for (name, labels), value in parse_metrics(text).items()
            if name == "grpc_server_handled_total" and ("grpc_service", service) in labels}


def test_demo_oracle_methods_are_exported_at_zero_before_any_call(sidecar: SidecarProcess,
                                                                  tmp_path: Path) -> None:
    """The demo Oracle's eight RPCs x 17 codes are on /metrics at 0 before any traffic."""
    port, control = free_port(), free_port()
    oracle = Proc(["demo-oracle", "--host", "127.0.0.1", "--port", str(port),
                   "--control-port", str(control), "--socket", sidecar.socket],
                  tmp_path / "oracle.log")
    try:
        wait_for(lambda: len(handled_samples(sidecar.metrics(), SERVICE)) == 8 * 17, 20,
                 message="the demo Oracle's methods on /metrics")
        text = sidecar.metrics()
    finally:
        oracle.kill()
    samples = parse_metrics(text)
    handled = handled_samples(text, SERVICE)
    assert set(handled) == {(m, c) for m in METHODS for c in protocol.CODES}
    assert set(handled.values()) == {0.0}
    for family in ("grpc_server_started_total", "grpc_server_handling_seconds_count"):
        methods = {dict(labels)["grpc_method"]: value for (name, labels), value in samples.items()
                   if name == family}
        assert methods == dict.fromkeys(METHODS, 0.0), family
    buckets = {dict(labels)["le"] for (name, labels), _ in samples.items()
               if name == "grpc_server_handling_seconds_bucket"}
    assert {"10", "20", "60", "+Inf"} <= buckets  # the P95 > 10 s rule needs these
    assert {"0.005", "1", "2.5", "5"} <= buckets  # Go's spelling, so le="1" selects it
    for family in ("grpc_server_msg_received_total", "grpc_server_msg_sent_total"):
        methods = {dict(labels)["grpc_method"]: value for (name, labels), value in samples.items()
                   if name == family}
        assert methods == dict.fromkeys(METHODS, 0.0), family
    assert lint(text) == ""


def test_promtool_finds_nothing_on_a_live_exposition_after_traffic(
        sidecar: SidecarProcess, oracle_server: Any) -> None:
    """After calls with every outcome, a rejected datagram and a health change: zero findings."""
    rep = Reporter(SERVICE, "1.0", [f"/{SERVICE}/{m}" for m in METHODS],
                   socket_path=sidecar.socket, interval=0.2).start()
    try:
        oracle = oracle_server(rep)
        plan = [(m, 0.001 * (i % 7), ("OK", "Internal", "NotFound")[i % 3])
                for i, m in enumerate(METHODS * 4)]
        with ThreadPoolExecutor(8) as pool:
            seen = Counter(zip((m for m, _, _ in plan),
                               pool.map(lambda p: oracle.call(*p), plan), strict=True))
        with rep.track("Batch/nightly"):
            pass
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as raw:
            raw.sendto(b"\xff not json", sidecar.socket)
        rep.set_health("degraded", {"model": "stale"})
        wait_for(lambda: all(handled_samples(sidecar.metrics(), SERVICE).get(k) == n
                             for k, n in seen.items()), 10, message="the calls on /metrics")
        text = sidecar.metrics()
    finally:
        rep.close()
    assert 'oracle_sidecar_messages_rejected_total{reason="bad_json"} 1\n' in text
    assert 'oracle_sidecar_health_status{status="degraded"} 1\n' in text
    assert lint(text) == ""


HOSTILE_METHODS = [
    'Get"Quoted"Reading',
    "Back\\slash\\",
    "Ünïcødé→名前☃",
    "<img src=x onerror=alert(1)>",
    "}{ # HELP fake 1",
    "a=\"b\",grpc_code=\"OK",
    "\\n not a newline \\\\",
]
HOSTILE_SERVICE = 'evil."svc"\\x'


def test_hostile_method_names_keep_the_exposition_promtool_clean(
        sidecar: SidecarProcess) -> None:
    """Quotes, backslashes, unicode and markup in names: escaped, promtool-clean, round-trip."""
    names = [f"/{SERVICE}/{m}" for m in HOSTILE_METHODS] + [f"/{HOSTILE_SERVICE}/Ok"]
    rep = Reporter(SERVICE, "1.0", names, socket_path=sidecar.socket, interval=0.2).start()
    try:
        for name in names:
            with rep.track(name):
                pass
        try:
            with rep.track(names[0]):
                raise KeyError("<b>")
        except KeyError:
            pass

        def exported() -> dict[tuple[str, str], float]:
            return {(service, method): value for service in (SERVICE, HOSTILE_SERVICE)
                    for (method, code), value in handled_samples(sidecar.metrics(),
                                                                 service).items()
                    if code == "OK" and value}

        wait_for(lambda: len(exported()) == len(names), 10, message="every hostile name")
        text = sidecar.metrics()
        status, om, headers = http_get(sidecar.url + "/metrics", {"Accept": OPENMETRICS})
    finally:
        rep.close()
    assert exported() == {**{(SERVICE, m): 1.0 for m in HOSTILE_METHODS},
                          (HOSTILE_SERVICE, "Ok"): 1.0}
    assert handled_samples(text, SERVICE)[(HOSTILE_METHODS[0], "Unknown")] == 1.0
    assert "\n<img" not in text and '\\"Quoted\\"' in text
    assert lint(text) == ""
    # The OpenMetrics rendering parses too, to the same label values.
    assert status == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
    om_methods = {s.labels["grpc_method"] for family in parse_om(om)  # type: ignore[no-untyped-call]
                  for s in family.samples
                  if family.name == "grpc_server_handled" and s.labels["grpc_service"] == SERVICE}
    assert om_methods == set(HOSTILE_METHODS)
