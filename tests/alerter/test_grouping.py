"""One message per severity per run: a fault on every RPC of one pod, or of three pods, is one
Telegram message naming each RPC with its figure; cooldowns stay per alert; recoveries group."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.alerter.decisions import plan, settle
from sidecar.alerter.grouping import messages
from sidecar.alerter.messages import LIMIT, utf16_len
from sidecar.alerter.rules import Finding, Thresholds
from sidecar.alerter.run import evaluate_once
from sidecar.alerter.state import parse
from sidecar.demo import METHODS, full_method
from sidecar.kube import Kube
from sidecar.reporter.core import Reporter
from sidecar.targets import Discovery
from tests.alerter.conftest import SERVICE, settings_for
from tests.alerter.test_decisions import COOLDOWN, T, alert, ev, failing, ok, state_of
from tests.conftest import SidecarProcess, free_port, http_get, wait_for
from tests.fakes.kube_api import FakeKubeAPI, pod
from tests.fakes.telegram_api import FakeTelegramAPI

NS = "oracle"
PODS = ("oracle-a", "oracle-b", "oracle-c")


def slow_everywhere(rep: Reporter, seconds: float = 12.0, calls: int = 25) -> None:
    """``calls`` calls of ``seconds`` on each of the eight Oracle methods."""
    for method in METHODS:
        series = rep.series(full_method(method))
        assert series is not None
        for _ in range(calls):
            rep.observe(series, seconds)


def counted(url: str, total: int) -> bool:
    status, body, _ = http_get(url + "/api/v1/snapshot")
    return status == 200 and json.loads(body)["windows"]["1m"]["totals"]["count"] >= total


@pytest.fixture
def three_pods(tmp_path: Path) -> Iterator[list[tuple[SidecarProcess, Reporter, str]]]:
    """Three real sidecars on 127.0.0.1-3 (one port, as pods have), each fed by a reporter."""
    port = free_port()
    made: list[tuple[SidecarProcess, Reporter, str]] = []
    try:
        for i, _ in enumerate(PODS, start=1):
            ip = f"127.0.0.{i}"
            sc = SidecarProcess(str(tmp_path / f"run{i}" / "metrics.sock"), port,
                                extra=["--host", ip], log_path=tmp_path / f"sidecar{i}.log")
            sc.start(wait=False)
            url = f"http://{ip}:{port}"
            wait_for(lambda u=url: http_get(u + "/livez")[0] == 200, 15, message=f"{url}")
            rep = Reporter(SERVICE, "1.0", [full_method(m) for m in METHODS],
                           socket_path=sc.socket, interval=0.2).start()
            made.append((sc, rep, url))
        yield made
    finally:
        for sc, rep, _ in made:
            rep.close()
            if sc.proc is not None and sc.proc.poll() is None:
                sc.proc.kill()
                sc.proc.wait(10)


async def test_a_fault_on_all_eight_rpcs_of_a_pod_is_one_message(
        sidecar: SidecarProcess, telegram: FakeTelegramAPI, tmp_path: Path) -> None:
    """P95 over 10 s on all 8 RPCs of one sidecar: one WARNING naming the 8 with their P95."""
    rep = Reporter(SERVICE, "1.0", [full_method(m) for m in METHODS], socket_path=sidecar.socket,
                   interval=0.2).start()
    try:
        slow_everywhere(rep)
        wait_for(lambda: counted(sidecar.url, 8 * 25), 10, message="the pushes")
        settings = settings_for(telegram, discovery=Discovery(urls=(sidecar.url,)),
                                state_file=str(tmp_path / "state.json"),
                                thresholds=Thresholds(window="1m", min_requests=20))
        assert await evaluate_once(settings) == 0
    finally:
        rep.close()
    (text,) = telegram.texts()
    lines = text.split("\n")
    assert lines[0] == f"🟠 WARNING: P95 above 10 s on 8 RPCs ({sidecar.url})"
    for method in METHODS:
        assert f"• {SERVICE}/{method}: P95 12 s over 1m (25 requests)" in lines
    state = parse((tmp_path / "state.json").read_text())
    assert len(state.alerts) == 8 and state.claims == {}
    assert {a.sent_via for a in state.alerts.values()} == {"telegram"}


async def test_the_same_fault_on_three_pods_in_one_run_is_one_message(
        three_pods: list[tuple[SidecarProcess, Reporter, str]], telegram: FakeTelegramAPI,
        fake_kube: FakeKubeAPI) -> None:
    """Three pods, 8 slow RPCs each, one run: one WARNING with 24 RPC lines under their pods."""
    fake_kube.pods = [pod(name, f"127.0.0.{i}", namespace=NS)
                      for i, name in enumerate(PODS, start=1)]
    fake_kube.put_config_map(NS, "oracle-alerter-state", {})
    for _, rep, _ in three_pods:
        slow_everywhere(rep)
    for _, _, url in three_pods:
        wait_for(lambda u=url: counted(u, 8 * 25), 10, message=f"the pushes to {url}")
    port = three_pods[0][0].port
    settings = settings_for(
        telegram, discovery=Discovery(namespace=NS, port=port),
        state_config_map="oracle-alerter-state",
        thresholds=Thresholds(window="1m", min_requests=20))
    assert await evaluate_once(settings, kube=Kube(fake_kube.client())) == 0
    (text,) = telegram.texts()
    lines = text.split("\n")
    assert lines[0] == "🟠 WARNING: 3 pods: P95 above 10 s on 24 RPCs"
    assert [line for line in lines if line.startswith("Pod: ")] == [
        f"Pod: {name} in namespace {NS}" for name in PODS]
    assert sum(1 for line in lines if line.startswith("• ") and "P95 12 s" in line) == 24
    assert utf16_len(text) <= LIMIT
    # Within the cooldown the next run sends nothing.
    assert await evaluate_once(settings, kube=Kube(fake_kube.client())) == 0
    assert len(telegram.messages) == 1


def latency(target: str, method: str) -> Finding:
    rpc = f"{SERVICE}/{method}"
    return Finding("latency", "WARNING", target, rpc, title=f"P95 on {method}",
                   summary=f"P95 12 s on {rpc}", namespace=NS, cause="P95 above 10 s",
                   item=f"{rpc}: P95 12 s over 5m (40 requests)")


def test_an_alert_in_its_cooldown_joins_a_due_message_and_restarts_its_cooldown() -> None:
    """GetReading sent at T; GetNameReading new at T+60: one message with both, both re-armed."""
    sent = alert("latency", rpc=f"{SERVICE}/GetReading")
    now = T + 60
    result = plan(state_of(sent), ev(failing(latency("oracle-a", "GetReading"),
                                             latency("oracle-a", "GetNameReading"))),
                  now, COOLDOWN, "r", now + 60)
    assert sorted(d.action for d in result.decisions) == ["due", "grouped"]
    (message,) = messages(result.notices, now)
    assert message.text.split("\n")[0] == "🟠 <b>WARNING: P95 above 10 s on 2 RPCs (oracle-a)</b>"
    assert f"• {SERVICE}/GetReading: P95 12 s over 5m (40 requests) (still, for 1 min)" \
        in message.text
    assert {a.cooldown_until for a in result.state.alerts.values()} == {now + COOLDOWN}
    # A failed delivery puts the one that joined back to its own cooldown.
    undone = settle(result.state, "r", [(k, False) for k in message.keys])
    assert undone.alerts[sent.key].cooldown_until == T + COOLDOWN
    # Nothing due: an alert within its cooldown alone sends nothing.
    quiet = plan(state_of(sent), ev(failing(latency("oracle-a", "GetReading"))), now, COOLDOWN,
                 "r", now + 60)
    assert quiet.notices == () and [d.action for d in quiet.decisions] == ["suppressed"]


def test_recoveries_of_three_pods_are_one_message() -> None:
    """Three pods healthy again in one run: one INFO listing each with its incident."""
    prior = [alert(target=name, opened=T - 600) for name in PODS]
    result = plan(state_of(*prior), ev(*(ok(name) for name in PODS)), T + 60, COOLDOWN, "r",
                  T + 120)
    assert [n.level for n in result.notices] == ["INFO"] * 3
    (message,) = messages(result.notices, T + 60)
    lines = message.text.split("\n")
    assert lines[0] == "✅ <b>INFO: 3 pods recovered</b>"
    assert lines.count("• recovered after 11 min, since 2027-01-15 07:50:00 UTC") == 3
    assert sorted(message.keys) == sorted(a.key for a in prior)


def test_a_message_past_telegrams_limit_is_split_between_pods() -> None:
    """60 pods with 8 slow RPCs each pass 4096 characters: split between pods, nothing cut."""
    names = [f"oracle-{i:02d}" for i in range(60)]
    result = plan(state_of(), ev(*(failing(*(latency(n, m) for m in METHODS), target=n)
                                   for n in names)), T, COOLDOWN, "r", T + 60)
    parts = messages(result.notices, T)
    assert 1 < len(parts) <= 12
    assert all(utf16_len(p.text) <= LIMIT and "truncated" not in p.text for p in parts)
    assert sorted(k for p in parts for k in p.keys) == sorted(n.keys[0] for n in result.notices)
    assert sum(len(p.targets) for p in parts) == 60  # no pod split across two messages
