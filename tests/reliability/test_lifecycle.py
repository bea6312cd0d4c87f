"""Oracle and sidecar restarts with real processes: readiness follows the living process, a
departure is reported as one, and a restarted sidecar continues every counter exactly.

Real ``oracle-sidecar serve`` processes, real grpcio worker processes with the reporter, real
client calls, ``oracle-sidecar alert`` runs against the fake Telegram Bot API. Every wait is for
a condition; the only timed parts are the faults themselves (an Oracle container restarted 2 s
after its crash) and one bounded observation of /ready.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.persist import state_path
from tests.conftest import SidecarProcess, http_get, http_json, parse_metrics, wait_for
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.reliability.conftest import Monotonic, Traffic, exported


class OkTraffic(Traffic):
    """Calls that all succeed, so that the alerter's error-rate rule has nothing to say."""

    MIX = ("Ok",)


@pytest.fixture
def telegram() -> Iterator[FakeTelegramAPI]:
    api = FakeTelegramAPI().start()
    yield api
    api.stop()


def alert(sc: SidecarProcess, telegram: FakeTelegramAPI, state: Path) -> tuple[int, str]:
    """One `oracle-sidecar alert` run against ``sc``, as the CronJob starts it."""
    env = {**os.environ, "TELEGRAM_API_URL": telegram.url, "NPS_BOT_TOKEN": telegram.token,
           "NPS_CHAT_ID": telegram.chat_id, "ALERT_STATE_FILE": str(state),
           "ORACLE_HTTP_URL": sc.url, "ALERT_DEADLINE": "20", "LOG_LEVEL": "INFO"}
    done = subprocess.run([sys.executable, "-m", "sidecar.cli", "alert"], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout + done.stderr


def calls(traffic: Traffic, n: int) -> Counter[tuple[str, str]]:
    """Run ``traffic`` until the clients have seen ``n`` more answers; stop it; the totals."""
    start = sum(traffic.totals().values())
    wait_for(lambda: sum(traffic.totals().values()) >= start + n, 30,
             message=f"{n} more calls")
    traffic.stop()
    return traffic.totals()


def counted(sc: SidecarProcess, truth: Counter[tuple[str, str]]) -> None:
    wait_for(lambda: exported(sc.metrics()) == truth, 15,
             message=f"the sidecar to export exactly {dict(truth)}")


def saved(sc: SidecarProcess) -> dict[str, Any]:
    return dict(json.loads(Path(state_path(sc.socket)).read_text()))


def test_oracle_kill_9_restarted_2_s_later_is_ready_at_its_first_push_and_stays_ready(
        sidecar_factory: Any, workers: Any, telegram: FakeTelegramAPI, tmp_path: Path,
        figures: Any) -> None:
    """kill -9, restart 2 s later: ready with the first push, 200 past expiry, exact, no alert.

    The stale and expiry limits are shortened so that the observation covers the moments the
    dead process would once have turned /ready to 503 (stale) and back (expired).
    """
    sc = sidecar_factory("--stale-after", "2", "--expire-after", "6")
    first = workers(sc.socket, interval=0.5)
    with OkTraffic([first.target]) as traffic:
        wait_for(lambda: http_get(sc.url + "/ready")[0] == 200, 10, message="/ready 200")
        before = calls(traffic, 100)
    counted(sc, before)  # everything the first process served was pushed before the crash

    first.kill()  # SIGKILL: no final push
    time.sleep(2.0)  # the container restarts after 2 s (the fault, not a wait)
    second = workers(sc.socket, interval=0.5)  # it has pushed once when it says hello

    def seen() -> dict[str, Any] | None:
        doc = http_json(sc.url + "/health")
        return doc if second.source in {s["id"] for s in doc["sources"]} else None

    t_seen = time.monotonic()
    health = wait_for(seen, 10, message="the sidecar to hear from the new process")
    ready_after = 0.0
    if not health["ready"]:  # the push that made it known also made the pod ready, or soon
        wait_for(lambda: http_get(sc.url + "/ready")[0] == 200, 5, message="/ready 200")
        ready_after = time.monotonic() - t_seen
    assert ready_after <= 1.0, ready_after
    assert [s["id"] for s in http_json(sc.url + "/health")["sources"]] == [second.source]

    # /ready stays 200 past the moment the dead process would have been stale (2 s) and
    # expired (6 s): observed for 9 s.
    answers: Counter[int] = Counter()
    deadline = time.monotonic() + 9.0
    while time.monotonic() < deadline:
        answers[http_get(sc.url + "/ready")[0]] += 1
        time.sleep(0.2)
    assert set(answers) == {200}, answers

    with OkTraffic([second.target]) as traffic:
        after = calls(traffic, 100)
    counted(sc, before + after)
    code, output = alert(sc, telegram, tmp_path / "alert-state.json")
    assert code == 0, output
    assert telegram.messages == [], telegram.texts()
    figures(ready_after_first_push_s=round(ready_after, 3), ready_probes=answers[200],
            rpcs=sum((before + after).values()))


def test_oracle_sigterm_and_gone_is_unready_at_once_says_it_exited_and_is_alerted(
        sidecar_factory: Any, workers: Any, telegram: FakeTelegramAPI, tmp_path: Path) -> None:
    """SIGTERM, no restart: /ready 503 within 1 s saying it exited; CRITICAL in the first minute.

    The sidecar is younger than the alerter's startup grace (60 s), which must not hide an
    Oracle that reported and left.
    """
    sc = sidecar_factory()
    oracle = workers(sc.socket, interval=0.5)
    wait_for(lambda: http_get(sc.url + "/ready")[0] == 200, 10, message="/ready 200")
    assert oracle.stop() == 0  # final push sent before it exits
    t_exit = time.monotonic()
    _, body, _ = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(
        http_get(sc.url + "/ready")), 5, message="/ready 503")
    unready_after = time.monotonic() - t_exit
    assert unready_after <= 1.0, unready_after
    reason = json.loads(body)["reason"]
    assert f"process {oracle.pid}" in reason and "exited" in reason, reason
    assert "has not come back" in reason
    health = http_json(sc.url + "/health")
    assert health["status"] == "down" and "exited" in health["reason"]
    assert health["uptime_seconds"] < 60
    snapshot = http_json(sc.url + "/api/v1/snapshot")
    assert "exited" in snapshot["health"]["reason"]

    code, output = alert(sc, telegram, tmp_path / "alert-state.json")
    assert code == 0, output
    (message,) = telegram.texts()
    assert message.startswith("🔴 CRITICAL") and "exited" in message, message


def test_sidecar_kill_9_with_two_running_and_one_exited_process_continues_every_counter(
        sidecar_factory: Any, workers: Any, figures: Any) -> None:
    """kill -9 of the sidecar: after the restart each counter is what it was plus the new calls.

    One process exited earlier (its counts only in the retired totals), two are running. A
    scraper once a second sees no decrease and no partial sum on any scrape.
    """
    sc = sidecar_factory()
    early = workers(sc.socket)
    with Traffic([early.target]) as traffic:
        exited = calls(traffic, 100)
    counted(sc, exited)
    assert early.stop() == 0
    procs = [workers(sc.socket), workers(sc.socket)]
    ids = {p.source for p in procs}
    with Traffic([p.target for p in procs]) as traffic:
        running = calls(traffic, 200)
    counted(sc, exited + running)
    # The state file knows all three before the crash (it is written when a source comes
    # or goes).
    wait_for(lambda: {s["id"] for s in saved(sc)["sources"]} == ids
             and early.source in {s["id"] for s in saved(sc)["retired_sources"]}, 10,
             message="the state file to list the running and the exited process")
    before = {k: v for k, v in parse_metrics(sc.metrics()).items()
              if k[0].startswith("grpc_server_")}

    with Monotonic(lambda: sc.url, every=1.0) as mono:
        wait_for(lambda: mono.scrapes >= 1, 10, message="a first scrape")
        assert sc.kill() == -signal.SIGKILL
        sc.start()
        # Nothing was called meanwhile: the restarted sidecar exports exactly the same.
        wait_for(lambda: exported(sc.metrics()) == exited + running, 15,
                 message="the restarted sidecar to export the earlier totals")
        same = {k: v for k, v in parse_metrics(sc.metrics()).items()
                if k[0].startswith("grpc_server_")}
        assert same == before
        with Traffic([p.target for p in procs]) as traffic:
            new = calls(traffic, 200)
        counted(sc, exited + running + new)
        wait_for(lambda: mono.scrapes >= 3, 10, message="scrapes after the restart")
    assert mono.decreases == [], mono.decreases[:5]
    after = {k: v for k, v in parse_metrics(sc.metrics()).items()
             if k[0].startswith("grpc_server_")}
    for key, value in before.items():
        assert after[key] >= value, key
    handled_before = sum(v for (n, _), v in before.items() if n == "grpc_server_handled_total")
    handled_after = sum(v for (n, _), v in after.items() if n == "grpc_server_handled_total")
    assert handled_after == handled_before + sum(new.values())
    figures(scrapes=mono.scrapes, counter_decreases=len(mono.decreases),
            rpcs=sum((exited + running + new).values()))
