"""Whole alerter runs in this process: a real sidecar fed by a real reporter, the real Kubernetes
client against the fake API, the real Telegram client against the fake Bot API."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sidecar.alerter.rules import Thresholds
from sidecar.alerter.run import evaluate_once
from sidecar.alerter.state import STATE_KEY, Claim, State, dumps, parse
from sidecar.kube import Kube
from sidecar.reporter.core import Reporter
from sidecar.targets import Discovery
from tests.alerter.conftest import SERVICE, settings_for
from tests.conftest import SidecarProcess, http_get, wait_for
from tests.fakes.kube_api import FakeKubeAPI, pod
from tests.fakes.telegram_api import FakeTelegramAPI

NS = "oracle"
SELECTOR = "app.kubernetes.io/component=oracle"
STATE_CM = "oracle-alerter-state"


@pytest.fixture
def oracle(sidecar: SidecarProcess) -> Iterator[Reporter]:
    """A reporter pushing to the sidecar every 0.2 s, as the Oracle's would; healthy at first."""
    rep = Reporter(SERVICE, "1.0", ["GetReading"], socket_path=sidecar.socket,
                   interval=0.2).start()
    wait_for(lambda: http_get(sidecar.url + "/ready")[0] == 200, 10, message="ready")
    yield rep
    rep.close()


def health_is(sidecar: SidecarProcess, status: str) -> None:
    wait_for(lambda: json.loads(http_get(sidecar.url + "/health")[1])["status"] == status, 10,
             message=f"health {status}")


def decisions(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "decision", None) == name]


def kube_settings(telegram: FakeTelegramAPI, sidecar: SidecarProcess, **changes: Any) -> Any:
    return settings_for(telegram, discovery=Discovery(namespace=NS, selector=SELECTOR,
                                                      port=sidecar.port),
                        state_config_map=STATE_CM, **changes)


def cm_state(fake_kube: FakeKubeAPI) -> State:
    return parse(fake_kube.config_maps[(NS, STATE_CM)]["data"][STATE_KEY])


# -- fixed URL and a state file ----------------------------------------------------------------

async def test_healthy_target_sends_nothing_and_records_the_run(
        oracle: Reporter, sidecar: SidecarProcess, telegram: FakeTelegramAPI,
        tmp_path: Path) -> None:
    """Healthy and ready: no message, exit 0, and a state file with no alert."""
    state = tmp_path / "state.json"
    settings = settings_for(telegram, discovery=Discovery(urls=(sidecar.url,)),
                            state_file=str(state))
    assert await evaluate_once(settings) == 0
    assert telegram.messages == []
    assert parse(state.read_text()).alerts == {}


async def test_error_rate_and_latency_from_real_pushes(
        oracle: Reporter, sidecar: SidecarProcess, telegram: FakeTelegramAPI,
        tmp_path: Path) -> None:
    """Real RPC outcomes pushed to a real sidecar raise both WARNINGs, per RPC, in one message."""
    series = oracle.series("GetReading")
    slow = oracle.series("GetDailyInsight")
    assert series is not None and slow is not None
    for i in range(30):
        oracle.observe(series, 0.01, "Unavailable" if i < 6 else "OK")
        oracle.observe(slow, 12.0)
    wait_for(lambda: json.loads(http_get(sidecar.url + "/api/v1/snapshot")[1])["windows"]["1m"]
             ["totals"]["count"] >= 60, 10, message="the pushes")
    settings = settings_for(telegram, discovery=Discovery(urls=(sidecar.url,)),
                            state_file=str(tmp_path / "s.json"),
                            thresholds=Thresholds(window="1m", min_requests=20))
    assert await evaluate_once(settings) == 0
    (text,) = telegram.texts()  # one WARNING message for both
    lines = text.split("\n")
    assert lines[0] == (f"🟠 WARNING: error rate above 5% on 1 RPC, P95 above 10 s on 1 RPC "
                        f"({sidecar.url})")
    assert f"• {SERVICE}/GetDailyInsight: P95 12 s over 1m (30 requests)" in lines
    assert "6 of 30 requests over 1m" in "".join(telegram.texts())


async def test_failed_delivery_is_not_recorded_and_the_next_run_retries(
        oracle: Reporter, sidecar: SidecarProcess, telegram: FakeTelegramAPI,
        tmp_path: Path) -> None:
    """ok:false: exit 1, the alert is open but not sent; the next run delivers it."""
    oracle.set_health("degraded", {"db": "timeout"})
    health_is(sidecar, "degraded")
    state = tmp_path / "state.json"
    settings = settings_for(telegram, discovery=Discovery(urls=(sidecar.url,)),
                            state_file=str(state))
    telegram.script = ["ok_false"]
    assert await evaluate_once(settings) == 1
    (stored,) = parse(state.read_text()).alerts.values()
    assert stored.open and stored.last_sent is None and stored.cooldown_until is None
    assert parse(state.read_text()).claims == {}
    assert await evaluate_once(settings) == 0
    assert len(telegram.messages) == 1
    assert parse(state.read_text()).alerts[stored.key].last_sent is not None


async def test_a_run_ends_within_its_deadline(sidecar: SidecarProcess,
                                              telegram: FakeTelegramAPI, tmp_path: Path) -> None:
    """Telegram hanging: the run gives up within its deadline, exit 1, alert not recorded."""
    telegram.script = ["timeout"] * 20
    settings = settings_for(telegram, discovery=Discovery(urls=(sidecar.url,)),
                            state_file=str(tmp_path / "s.json"), deadline=2.0,
                            attempt_timeout=0.5)
    # No Oracle has reported to this young sidecar: "starting", not judged yet.
    assert await evaluate_once(settings) == 0 and telegram.attempts == []
    settings = replace(settings, thresholds=Thresholds(startup_grace=0.001))
    started = time.monotonic()
    assert await evaluate_once(settings) == 1
    assert time.monotonic() - started < 2.5
    assert len(telegram.attempts) >= 2
    (stored,) = parse((tmp_path / "s.json").read_text()).alerts.values()
    assert stored.last_sent is None


async def test_dry_run_prints_and_changes_nothing(oracle: Reporter, sidecar: SidecarProcess,
                                                  telegram: FakeTelegramAPI,
                                                  tmp_path: Path) -> None:
    """--dry-run prints the due message and neither sends nor writes state."""
    oracle.set_health("down", {"shutdown": "stopping"})
    health_is(sidecar, "down")
    out = io.StringIO()
    state = tmp_path / "state.json"
    settings = settings_for(telegram, discovery=Discovery(urls=(sidecar.url,)),
                            state_file=str(state), dry_run=True)
    assert await evaluate_once(settings, out=out) == 0
    assert "🔴 <b>CRITICAL: " in out.getvalue() and "is down" in out.getvalue()
    assert telegram.attempts == [] and not state.exists()


async def test_without_a_token_alerts_are_logged_and_remembered(
        oracle: Reporter, sidecar: SidecarProcess, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """No Telegram credentials: the message is logged, counted as delivered, cooled down."""
    oracle.set_health("degraded", {"db": "timeout"})
    health_is(sidecar, "degraded")
    settings = settings_for(None, discovery=Discovery(urls=(sidecar.url,)),
                            state_file=str(tmp_path / "s.json"))
    with caplog.at_level(logging.INFO):
        assert await evaluate_once(settings) == 0
        assert await evaluate_once(settings) == 0
    (logged,) = decisions(caplog, "logged")
    assert "CRITICAL" in logged.text  # type: ignore[attr-defined]
    assert len(decisions(caplog, "suppressed")) == 1


# -- Kubernetes: pod discovery and the state ConfigMap ------------------------------------------

async def test_pod_discovery_and_config_map_state(
        oracle: Reporter, sidecar: SidecarProcess, telegram: FakeTelegramAPI,
        fake_kube: FakeKubeAPI) -> None:
    """A degraded pod found by its labels: one CRITICAL naming pod and namespace; state kept."""
    fake_kube.pods = [pod("oracle-7d9f-abc", "127.0.0.1", namespace=NS)]
    fake_kube.put_config_map(NS, STATE_CM, {})  # as the chart creates it
    oracle.set_health("degraded", {"ephemeris": "timeout <5 s> & retrying"})
    health_is(sidecar, "degraded")
    kube = Kube(fake_kube.client())
    settings = kube_settings(telegram, sidecar)
    assert await evaluate_once(settings, kube=kube) == 0
    (message,) = telegram.messages
    lines = message["plain"].split("\n")
    assert lines[0] == "🔴 CRITICAL: oracle-7d9f-abc is degraded"
    assert lines[1] == "Pod: oracle-7d9f-abc in namespace oracle"
    assert "Checks: ephemeris: timeout <5 s> & retrying" in lines
    assert lines[-1].startswith("Dashboard: kubectl port-forward")
    state = cm_state(fake_kube)
    assert list(state.alerts) == ["degraded|oracle-7d9f-abc|-"] and state.claims == {}
    assert await evaluate_once(settings, kube=kube) == 0  # within the cooldown
    assert len(telegram.messages) == 1


async def test_no_pod_matching_the_selector_is_critical(telegram: FakeTelegramAPI,
                                                        fake_kube: FakeKubeAPI,
                                                        sidecar: SidecarProcess) -> None:
    """An empty selector match is CRITICAL unreachable; a pod appearing recovers it."""
    kube = Kube(fake_kube.client())
    settings = kube_settings(telegram, sidecar, thresholds=Thresholds(startup_grace=3600))
    assert await evaluate_once(settings, kube=kube) == 0
    (message,) = telegram.texts()
    assert message.startswith("🔴 CRITICAL: no Oracle pod running in oracle")
    assert f"Pods: {SELECTOR} in namespace oracle" in message
    fake_kube.pods = [pod("oracle-a", "127.0.0.1", namespace=NS)]
    assert await evaluate_once(settings, kube=kube) == 0
    assert telegram.texts()[1].startswith("✅ INFO: Oracle pods running again after")


async def test_terminating_pods_do_not_page(telegram: FakeTelegramAPI, fake_kube: FakeKubeAPI,
                                            sidecar: SidecarProcess) -> None:
    """A pod being deleted (rollout) is skipped; a running replacement keeps the selector ok."""
    leaving = pod("oracle-old", "127.0.0.2", namespace=NS)
    leaving["metadata"]["deletionTimestamp"] = "2026-11-28T08:00:00Z"
    fake_kube.pods = [leaving, pod("oracle-new", "127.0.0.1", namespace=NS)]
    settings = kube_settings(telegram, sidecar, thresholds=Thresholds(startup_grace=3600))
    assert await evaluate_once(settings, kube=Kube(fake_kube.client())) == 0
    assert telegram.attempts == []


async def test_missing_rbac_fails_the_run_clearly(telegram: FakeTelegramAPI,
                                                  fake_kube: FakeKubeAPI,
                                                  sidecar: SidecarProcess,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """403 on pods: exit 1, an error naming the Role, nothing sent."""
    fake_kube.forbid.add("pods")
    with caplog.at_level(logging.ERROR):
        code = await evaluate_once(kube_settings(telegram, sidecar),
                                   kube=Kube(fake_kube.client()))
    assert code == 1 and telegram.attempts == []
    assert "Role" in caplog.text


async def test_unusable_state_config_map_sends_nothing(
        oracle: Reporter, sidecar: SidecarProcess, telegram: FakeTelegramAPI,
        fake_kube: FakeKubeAPI, caplog: pytest.LogCaptureFixture) -> None:
    """403 on the state: exit 1 and no message (it would repeat every run without memory)."""
    fake_kube.pods = [pod("oracle-a", "127.0.0.1", namespace=NS)]
    oracle.set_health("degraded", {"db": "timeout"})
    health_is(sidecar, "degraded")
    fake_kube.forbid.add("configmaps")
    with caplog.at_level(logging.ERROR):
        code = await evaluate_once(kube_settings(telegram, sidecar),
                                   kube=Kube(fake_kube.client()))
    assert code == 1 and telegram.attempts == []
    assert "nothing is sent" in caplog.text


async def test_corrupt_state_config_map_is_a_fresh_start(
        oracle: Reporter, sidecar: SidecarProcess, telegram: FakeTelegramAPI,
        fake_kube: FakeKubeAPI, caplog: pytest.LogCaptureFixture) -> None:
    """Garbage under state.json: a warning, a fresh state, the alert sent, the state fixed."""
    fake_kube.pods = [pod("oracle-a", "127.0.0.1", namespace=NS)]
    fake_kube.put_config_map(NS, STATE_CM, {STATE_KEY: "{not json"})
    oracle.set_health("degraded", {"db": "timeout"})
    health_is(sidecar, "degraded")
    with caplog.at_level(logging.WARNING):
        assert await evaluate_once(kube_settings(telegram, sidecar),
                                   kube=Kube(fake_kube.client())) == 0
    assert "fresh alert state" in caplog.text
    assert len(telegram.messages) == 1 and cm_state(fake_kube).alerts


# -- two runs at once -------------------------------------------------------------------------

@pytest.mark.parametrize("chart_made_it", [True, False], ids=["replace", "create"])
async def test_two_racing_runs_send_the_alert_once(
        oracle: Reporter, sidecar: SidecarProcess, telegram: FakeTelegramAPI,
        fake_kube: FakeKubeAPI, caplog: pytest.LogCaptureFixture, chart_made_it: bool) -> None:
    """Both runs read the same version; the loser's 409 (replace or create) shows the claim."""
    fake_kube.pods = [pod("oracle-a", "127.0.0.1", namespace=NS)]
    if chart_made_it:
        fake_kube.put_config_map(NS, STATE_CM, {})
    oracle.set_health("degraded", {"db": "timeout"})
    health_is(sidecar, "degraded")
    fake_kube.delay = 0.3  # every API call is slow: both reads happen before either write
    settings = kube_settings(telegram, sidecar)
    with caplog.at_level(logging.INFO):
        codes = await asyncio.gather(evaluate_once(settings, kube=Kube(fake_kube.client())),
                                     evaluate_once(settings, kube=Kube(fake_kube.client())))
    assert list(codes) == [0, 0]
    assert len(telegram.messages) == 1
    cm_path = f"/api/v1/namespaces/{NS}/configmaps/{STATE_CM}"
    calls = [m for m, p in fake_kube.requests if p == cm_path]
    assert calls[:2] == ["GET", "GET"], calls  # they really raced
    assert len(decisions(caplog, "due")) == 1
    # The loser sees the winner's claim, or (if the winner was quicker) its recorded delivery.
    assert len(decisions(caplog, "in_flight")) + len(decisions(caplog, "suppressed")) == 1
    assert "reading it again" in caplog.text
    state = cm_state(fake_kube)
    assert state.claims == {} and state.alerts["degraded|oracle-a|-"].last_sent is not None


async def test_conflict_on_the_claim_write_is_retried(
        oracle: Reporter, sidecar: SidecarProcess, telegram: FakeTelegramAPI,
        fake_kube: FakeKubeAPI) -> None:
    """A 409 from a concurrent writer: read again, decide again, send once."""
    fake_kube.pods = [pod("oracle-a", "127.0.0.1", namespace=NS)]
    fake_kube.put_config_map(NS, STATE_CM, {})
    oracle.set_health("degraded", {"db": "timeout"})
    health_is(sidecar, "degraded")
    fake_kube.conflicts = 2
    assert await evaluate_once(kube_settings(telegram, sidecar),
                               kube=Kube(fake_kube.client())) == 0
    assert len(telegram.messages) == 1
    assert cm_state(fake_kube).claims == {}


async def test_alert_claimed_by_another_run_is_not_sent(
        oracle: Reporter, sidecar: SidecarProcess, telegram: FakeTelegramAPI,
        fake_kube: FakeKubeAPI, caplog: pytest.LogCaptureFixture) -> None:
    """A concurrent writer's live claim on the alert: this run leaves it to that run."""
    fake_kube.pods = [pod("oracle-a", "127.0.0.1", namespace=NS)]
    key = "degraded|oracle-a|-"
    claimed = State(time.time(), claims={key: Claim("other-run", time.time() + 60, True,
                                                    None, None)})
    fake_kube.put_config_map(NS, STATE_CM, {STATE_KEY: dumps(claimed)})
    oracle.set_health("degraded", {"db": "timeout"})
    health_is(sidecar, "degraded")
    with caplog.at_level(logging.INFO):
        assert await evaluate_once(kube_settings(telegram, sidecar),
                                   kube=Kube(fake_kube.client())) == 0
    assert telegram.attempts == []
    assert len(decisions(caplog, "in_flight")) == 1
    assert cm_state(fake_kube).claims[key].run == "other-run"


async def test_a_zero_cooldown_sends_what_holds_on_every_run(
        oracle: Reporter, sidecar: SidecarProcess, telegram: FakeTelegramAPI,
        tmp_path: Path) -> None:
    """ALERT_COOLDOWN=0: no cooldown; a CRITICAL that holds is sent again by the next run."""
    oracle.set_health("degraded", {"db": "timeout"})
    health_is(sidecar, "degraded")
    settings = settings_for(telegram, discovery=Discovery(urls=(sidecar.url,)),
                            state_file=str(tmp_path / "s.json"), cooldown=0.0)
    assert await evaluate_once(settings) == 0
    assert await evaluate_once(settings) == 0
    assert len(telegram.messages) == 2
    assert "(still, for" in telegram.texts()[1]
