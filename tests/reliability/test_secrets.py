"""Secrets and permissions across the running system.

The alerter is the only process that holds the Telegram token. Here the whole system runs (a
sidecar fed by a gRPC process, the alerter against a local stand-in for the Bot API that fails
in every way it can, the dashboard showing the alerter's state) and everything it wrote or
answered is scanned for the token. The chart's side (token only in the Secret, pods non-root
with a read-only root filesystem) is pinned by tests/test_chart.py.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SidecarProcess, free_port, http_get, wait_for
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.reliability.conftest import ROOT, Traffic

TOKEN = "987654321:AAHrealLooking-Token_for_the_scan0123456"


@pytest.fixture
def telegram() -> Iterator[FakeTelegramAPI]:
    api = FakeTelegramAPI(token=TOKEN).start()
    yield api
    api.stop()


def alert(tmp_path: Path, log: Path, *args: str, env: dict[str, str],
          timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    with open(log, "ab") as out:
        return subprocess.run([sys.executable, "-m", "sidecar.cli", "alert", *args],
                              cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, env={**os.environ, **env},
                              timeout=timeout, check=False)


def test_the_bot_token_appears_nowhere_the_running_system_writes_or_answers(
        sidecar: SidecarProcess, workers: Any, telegram: FakeTelegramAPI, tmp_path: Path,
        figures: Any) -> None:
    """Every Telegram failure, at DEBUG, then every log, answer, state file and command line."""
    worker = workers(sidecar.socket)
    dead = f"http://127.0.0.1:{free_port()}"  # an unreachable pod: a CRITICAL alert is due
    state = tmp_path / "alerts.json"
    log = tmp_path / "alerter.log"
    env = {"NPS_BOT_TOKEN": TOKEN, "NPS_CHAT_ID": telegram.chat_id, "LOG_LEVEL": "DEBUG",
           "TELEGRAM_API_URL": telegram.url, "PYTHONUNBUFFERED": "1"}
    base = ["--target", sidecar.url, "--target", dead, "--state-file", str(state),
            "--deadline", "4", "--cooldown", "0"]  # no cooldown: every run sends again
    codes = []
    with Traffic([worker.target]):
        wait_for(lambda: http_get(sidecar.url + "/ready")[0] == 200, 10, message="ready")
        for script in (["500", "timeout", "502-html"], ["ok_false"], ["401"], ["429:60"],
                       ["ok_false_200"], []):
            telegram.script = list(script)
            telegram.hang_seconds = 2.0
            codes.append(alert(tmp_path, log, *base, env=env).returncode)
        for url in (f"http://127.0.0.1:{free_port()}", "http://host:99999"):
            codes.append(alert(tmp_path, log, *base, env={**env, "TELEGRAM_API_URL": url})
                         .returncode)
        token_file = tmp_path / "bot-token"
        token_file.write_text(TOKEN + "\n")
        token_file.chmod(0o400)
        codes.append(alert(tmp_path, log, "--test", *base[:4],
                           env={**env, "NPS_BOT_TOKEN": "", "NPS_BOT_TOKEN_FILE": str(token_file)})
                     .returncode)
        codes.append(alert(tmp_path, log, *base[:4], "--state-file", "/proc/1/no/state.json",
                           env=env).returncode)  # a state that cannot be written

        # The alerter in --loop, visible in the process table while it runs.
        runs = log.read_text().count('"run finished"')
        with open(log, "ab") as out:
            loop = subprocess.Popen(
                [sys.executable, "-m", "sidecar.cli", "alert", "--loop", "--interval", "0.5",
                 *base], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env={**os.environ, **env})
        try:
            wait_for(lambda: log.read_text().count('"run finished"') >= runs + 2, 20,
                     message="the looping alerter to run twice")
            cmdline = Path(f"/proc/{loop.pid}/cmdline").read_bytes().decode(errors="replace")
            loop.send_signal(signal.SIGTERM)
            codes.append(loop.wait(20))
        finally:
            if loop.poll() is None:
                loop.kill()
                loop.wait(10)

        dash_port = free_port()
        dash_log = tmp_path / "dashboard.log"
        with open(dash_log, "ab") as out:
            dashboard = subprocess.Popen(
                [sys.executable, "-m", "sidecar.cli", "dashboard", "--host", "127.0.0.1",
                 "--port", str(dash_port), "--target", sidecar.url, "--target", dead,
                 "--alert-state-file", str(state)],
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "LOG_LEVEL": "DEBUG"})
        try:
            dash = f"http://127.0.0.1:{dash_port}"
            wait_for(lambda: http_get(dash + "/livez")[0] == 200, 15, message="the dashboard")
            answers = [http_get(dash + p)[1] for p in ("/api/status", "/api/history", "/")]
        finally:
            dashboard.kill()
            dashboard.wait(10)
    answers += [http_get(sidecar.url + p)[1] for p in ("/metrics", "/health",
                                                       "/api/v1/snapshot")]
    captured = {
        "alerter log": log.read_text(), "dashboard log": dash_log.read_text(),
        "sidecar log": sidecar.log(), "worker log": worker.log_path.read_text(),
        "state file": state.read_text(), "alerter command line": cmdline,
        **{f"answer {i}": a for i, a in enumerate(answers)},
    }
    secret_half = TOKEN.split(":")[1]
    leaks = [name for name, text in captured.items() if TOKEN in text or secret_half in text]
    assert leaks == []
    # The scan looked at real failures, not at silence.
    assert len(telegram.messages) >= 2 and codes.count(0) >= 3 and codes.count(1) >= 5, codes
    assert codes[-1] == 0  # the looping alerter stopped cleanly on SIGTERM
    assert "<token>" in captured["alerter log"]  # redacted where it would have been
    assert '"alerts"' in captured["answer 0"] or "unreachable" in captured["answer 0"]
    figures(alerter_runs=len(codes), exit_codes=codes, delivered=len(telegram.messages),
            failure_modes=11, scanned={k: len(v) for k, v in captured.items()}, leaks=0)


def test_socket_is_0660_even_under_a_permissive_umask(tmp_path: Path, sidecar_factory: Any
                                                      ) -> None:
    """umask 000 in the sidecar's environment still gives a 0660 socket, also when re-made."""
    sc = sidecar_factory(start=False)
    sc.extra = []
    assert sc.log_path is not None
    old = os.umask(0)
    try:
        sc.start()
    finally:
        os.umask(old)
    mode = os.stat(sc.socket).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660
    os.unlink(sc.socket)
    wait_for(lambda: os.path.exists(sc.socket), 5, message="the socket to be made again")
    assert stat.S_IMODE(os.stat(sc.socket).st_mode) == 0o660
