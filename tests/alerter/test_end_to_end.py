"""End to end with real processes: demo Oracle + sidecar + ``oracle-sidecar alert`` runs (one
process per run, as the CronJob starts them) + the fake Telegram Bot API."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.alerter.state import parse
from tests.conftest import SidecarProcess, http_get, wait_for
from tests.demo.helpers import Proc, http, start_oracle
from tests.fakes.telegram_api import FakeTelegramAPI

HINT = "kubectl port-forward --namespace oracle svc/oracle-dashboard 9000:9000"


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Any]:
    """Starts ``oracle-sidecar`` children; every one still running is killed (by PID) after."""
    made: list[Proc] = []

    def start(name: str, args: list[str], code: str | None = None) -> Proc:
        proc = Proc(args, tmp_path / f"{name}.log", code=code)
        made.append(proc)
        return proc

    yield start
    for proc in made:
        proc.kill()


def test_alerter_end_to_end(procs: Any, sidecar: SidecarProcess, telegram: FakeTelegramAPI,
                            tmp_path: Path) -> None:
    """Healthy: none; degraded: CRITICAL; again: none; healthy: INFO; sidecar gone: CRITICAL."""
    oracle, _, control = start_oracle(procs, socket_path=sidecar.socket)
    wait_for(lambda: http_get(sidecar.url + "/ready")[0] == 200, 10, "/ready 200")
    state = tmp_path / "alert-state.json"
    env = {**os.environ, "TELEGRAM_API_URL": telegram.url, "NPS_BOT_TOKEN": telegram.token,
           "NPS_CHAT_ID": telegram.chat_id, "ALERT_DASHBOARD_HINT": HINT,
           "ALERT_STATE_FILE": str(state), "ORACLE_HTTP_URL": sidecar.url,
           "ALERT_COOLDOWN": "300", "ALERT_DEADLINE": "15", "LOG_LEVEL": "INFO"}
    outputs: list[str] = []

    def alert() -> tuple[int, list[dict[str, Any]]]:
        """One alerter run, as the CronJob starts it; (exit code, its JSON log lines)."""
        done = subprocess.run([sys.executable, "-m", "sidecar.cli", "alert"], env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=30)
        outputs.append(done.stdout + done.stderr)
        lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        return done.returncode, lines

    def decided(lines: list[dict[str, Any]]) -> list[str]:
        return [line["decision"] for line in lines if "decision" in line]

    # 1. healthy -> no message
    code, lines = alert()
    assert (code, telegram.messages) == (0, []), outputs[-1]

    # 2. degraded -> one CRITICAL naming the failing check
    assert http("POST", control + "/knobs", {"health": "degraded"})[0] == 200
    wait_for(lambda: http_get(sidecar.url + "/ready")[0] == 503, 10, "/ready 503")
    code, lines = alert()
    assert code == 0, outputs[-1]
    (critical,) = telegram.texts()
    first_line = critical.split("\n")[0]
    assert first_line == f"🔴 CRITICAL: {sidecar.url} is degraded"
    assert "ephemeris" in critical and f"Dashboard: {HINT}" in critical
    assert decided(lines) == ["due", "sent"]

    # 3. again, within the cooldown -> nothing
    code, lines = alert()
    assert code == 0 and len(telegram.messages) == 1
    assert decided(lines) == ["suppressed"]

    # 4. healthy again -> one INFO with the incident's length
    assert http("POST", control + "/knobs", {"health": "healthy"})[0] == 200
    wait_for(lambda: http_get(sidecar.url + "/ready")[0] == 200, 10, "/ready 200 again")
    code, lines = alert()
    assert code == 0, outputs[-1]
    info = telegram.texts()[1]
    assert re.match(rf"✅ INFO: {re.escape(sidecar.url)} recovered after \d+ s\n", info), info
    assert re.search(r"Incident: \d+ s, since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", info)
    assert decided(lines) == ["recovered", "sent"]

    # 5. sidecar stopped -> CRITICAL unreachable
    sidecar.kill()
    code, lines = alert()
    assert code == 0, outputs[-1]
    assert len(telegram.messages) == 3
    assert telegram.texts()[2].startswith(f"🔴 CRITICAL: sidecar of {sidecar.url} does not "
                                          f"answer")

    stored = parse(state.read_text())
    assert {k: a.open for k, a in stored.alerts.items()} == {
        f"degraded|{sidecar.url}|-": False, f"unreachable|{sidecar.url}|-": True}
    assert oracle.stop() == 0
    for text in [*outputs, state.read_text()]:
        assert telegram.token not in text
