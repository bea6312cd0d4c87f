"""``oracle-sidecar alert`` from the command line: flags and env, --test, --loop, token hygiene."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.alerter.run import configure, guard_logs, settings_from_args
from sidecar.cli import main
from sidecar.logs import JsonLogFormatter
from tests.conftest import free_port, wait_for
from tests.fakes.telegram_api import FakeTelegramAPI

ENV_NAMES = ("ORACLE_HTTP_URL", "ORACLE_NAMESPACE", "ORACLE_POD_SELECTOR", "ORACLE_HTTP_PORT",
             "ALERT_STATE_CONFIGMAP", "ALERT_STATE_FILE", "ALERT_CHECK_INTERVAL",
             "ALERT_COOLDOWN", "ALERT_ERROR_RATE_PERCENT", "ALERT_P95_SECONDS", "ALERT_WINDOW",
             "ALERT_MIN_REQUESTS", "ALERT_DEADLINE", "ALERT_STARTUP_GRACE", "NPS_BOT_TOKEN",
             "NPS_BOT_TOKEN_FILE", "NPS_CHAT_ID", "TELEGRAM_API_URL", "ALERT_DASHBOARD_HINT",
             "LOG_LEVEL", "ALERT_LOOP", "ALERT_TEST", "ALERT_DRY_RUN")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No alerter env var leaks in from the machine; the root logger is restored after."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


def telegram_env(api: FakeTelegramAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_API_URL", api.url)
    monkeypatch.setenv("NPS_BOT_TOKEN", api.token)
    monkeypatch.setenv("NPS_CHAT_ID", api.chat_id)


def parse(argv: list[str]) -> Any:
    import argparse

    parser = argparse.ArgumentParser()
    configure(parser)
    return parser.parse_args(argv)


def test_env_twins_reach_the_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every setting the chart passes by env arrives in Settings, with the agreed names."""
    token_file = tmp_path / "bot-token"
    token_file.write_text("123:abcDEF_ghi\n")
    env = {"ORACLE_HTTP_URL": "http://a:9090, http://b:9090", "ORACLE_NAMESPACE": "ns",
           "ORACLE_POD_SELECTOR": "app=x", "ORACLE_HTTP_PORT": "9191",
           "ALERT_STATE_CONFIGMAP": "cm", "ALERT_CHECK_INTERVAL": "7", "ALERT_COOLDOWN": "60",
           "ALERT_ERROR_RATE_PERCENT": "2.5", "ALERT_P95_SECONDS": "3", "ALERT_WINDOW": "1h",
           "ALERT_MIN_REQUESTS": "5", "ALERT_DEADLINE": "20", "NPS_BOT_TOKEN_FILE":
           str(token_file), "NPS_CHAT_ID": "-100", "TELEGRAM_API_URL": "http://tg.local/",
           "ALERT_DASHBOARD_HINT": "kubectl port-forward svc/d 9000"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = settings_from_args(parse([]))
    assert s.discovery.urls == ("http://a:9090", "http://b:9090")
    assert (s.discovery.namespace, s.discovery.selector, s.discovery.port) == ("ns", "app=x",
                                                                                9191)
    assert (s.state_config_map, s.interval, s.cooldown, s.deadline) == ("cm", 7, 60, 20)
    th = s.thresholds
    assert (th.error_rate_percent, th.p95_seconds, th.window, th.min_requests) == (2.5, 3, "1h",
                                                                                   5)
    assert (s.token, s.chat_id, s.telegram_api_url) == ("123:abcDEF_ghi", "-100",
                                                        "http://tg.local")
    assert s.hint == "kubectl port-forward svc/d 9000"
    assert "abcDEF" not in repr(s)
    s = settings_from_args(parse(["--target", "http://c:1", "--cooldown", "5"]))
    assert s.discovery.urls == ("http://c:1",) and s.cooldown == 5


@pytest.mark.parametrize(("env", "code", "says"), [
    ({"NPS_BOT_TOKEN": "123:abc"}, 2, "NPS_CHAT_ID"),
    ({"NPS_BOT_TOKEN": "123:abc/../../x", "NPS_CHAT_ID": "1"}, 2, "characters"),
    ({"NPS_BOT_TOKEN_FILE": "/nonexistent/token", "NPS_CHAT_ID": "1"}, 2,
     "cannot read the bot token file /nonexistent/token"),
    ({}, 1, "no Telegram bot token"),
])
def test_bad_or_missing_credentials(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str], env: dict[str, str],
                                    code: int, says: str) -> None:
    """Configuration errors exit 2 (1 for --test without credentials), naming what is wrong."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["alert", "--test", "--target", "http://127.0.0.1:9"]) == code
    out = capsys.readouterr().out
    assert says in out
    assert "abc/../../x" not in out


@pytest.mark.parametrize(("flag", "value"), [("--cooldown", "-1"), ("--window", "2m"),
                                             ("--min-requests", "-1"),
                                             ("--telegram-api-url", "ftp://x")])
def test_bad_values_stop_before_anything_starts(flag: str, value: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A bad flag value is refused by argparse with exit 2."""
    with pytest.raises(SystemExit) as info:
        main(["alert", flag, value])
    assert info.value.code == 2 and flag in capsys.readouterr().err


def test_test_message_is_delivered(monkeypatch: pytest.MonkeyPatch,
                                   telegram: FakeTelegramAPI) -> None:
    """--test sends one message and exits 0; a refusal exits 1."""
    telegram_env(telegram, monkeypatch)
    assert main(["alert", "--test", "--target", "http://127.0.0.1:9"]) == 0
    (text,) = telegram.texts()
    assert text.startswith("✅ INFO: test message from the Oracle alerter")
    telegram.script = ["ok_false"]
    assert main(["alert", "--test", "--target", "http://127.0.0.1:9"]) == 1


def test_token_from_a_file(monkeypatch: pytest.MonkeyPatch, telegram: FakeTelegramAPI,
                           tmp_path: Path) -> None:
    """NPS_BOT_TOKEN_FILE (the chart's Secret mount) is read and stripped; it wins over env."""
    path = tmp_path / "bot-token"
    path.write_text(telegram.token + "\n")
    monkeypatch.setenv("NPS_BOT_TOKEN_FILE", str(path))
    monkeypatch.setenv("NPS_BOT_TOKEN", "111:not-this-one")
    monkeypatch.setenv("NPS_CHAT_ID", telegram.chat_id)
    monkeypatch.setenv("TELEGRAM_API_URL", telegram.url)
    assert main(["alert", "--test", "--target", "http://127.0.0.1:9"]) == 0


def test_the_token_is_never_logged(monkeypatch: pytest.MonkeyPatch, telegram: FakeTelegramAPI,
                                   capsys: pytest.CaptureFixture[str],
                                   caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    """Every failure path at DEBUG, then every log line, exception and the state: no token."""
    telegram_env(telegram, monkeypatch)
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    state = tmp_path / "state.json"
    target = f"http://127.0.0.1:{free_port()}"  # nothing listens: CRITICAL unreachable
    argv = ["alert", "--target", target, "--state-file", str(state), "--deadline", "3"]
    codes = []
    with caplog.at_level(logging.DEBUG):
        for script in (["500", "timeout", "502-html", "500"], ["ok_false"], ["401"],
                       ["429:60"]):
            telegram.script = list(script)
            codes.append(main(argv))
        monkeypatch.setenv("TELEGRAM_API_URL", "http://host:99999")  # InvalidURL: has the URL
        codes.append(main(argv))
        monkeypatch.setenv("TELEGRAM_API_URL", f"http://127.0.0.1:{free_port()}")
        codes.append(main(argv))
        monkeypatch.setenv("TELEGRAM_API_URL", telegram.url)
        monkeypatch.setenv("NPS_BOT_TOKEN", "123:" + telegram.token.split(":")[1][::-1])
        codes.append(main(argv))  # a wrong token: 401 from the API
        monkeypatch.setenv("NPS_BOT_TOKEN", telegram.token)
        codes.append(main([*argv[:-2], "--test"]))  # and one that works
        # An exception whose text has the token, logged with its traceback.
        guard_logs(telegram.token)
        try:
            raise RuntimeError(f"POST {telegram.url}/bot{telegram.token}/sendMessage failed")
        except RuntimeError:
            logging.getLogger("sidecar.alerter").exception("unexpected failure")
    assert codes == [1, 1, 1, 1, 1, 1, 1, 0]
    captured = capsys.readouterr()
    formatter = JsonLogFormatter("alerter")
    rendered = [formatter.format(r) for r in caplog.records]
    everything = "\n".join([captured.out, captured.err, *rendered, state.read_text()])
    secret = telegram.token.split(":")[1]
    assert telegram.token not in everything and secret not in everything
    # ... and the scan looked at real failures, tracebacks included.
    assert "alert delivery failed" in captured.out
    assert "InvalidUrlClientError: http://host:99999/bot<token>/sendMessage" in everything
    assert "<token>" in everything
    traced = [json.loads(line) for line in captured.out.splitlines()
              if "unexpected failure" in line]
    assert traced and "Traceback" in traced[0]["exception"]


def test_loop_repeats_until_sigterm(telegram: FakeTelegramAPI, tmp_path: Path) -> None:
    """--loop evaluates every interval, keeps the cooldown, and exits 0 on SIGTERM."""
    log_path = tmp_path / "alerter.log"
    env = {**os.environ, "TELEGRAM_API_URL": telegram.url, "NPS_BOT_TOKEN": telegram.token,
           "NPS_CHAT_ID": telegram.chat_id, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar.cli", "alert", "--loop", "--interval", "0.3",
             "--target", f"http://127.0.0.1:{free_port()}", "--deadline", "5"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(lambda: log_path.read_text().count('"run finished"') >= 3, 20,
                 message="three evaluations")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert len(telegram.messages) == 1  # the in-memory cooldown held
    assert '"alert suppressed by cooldown"' in log_path.read_text()
    assert telegram.token not in log_path.read_text()


@pytest.fixture
def silent_listener() -> Iterator[tuple[str, list[socket.socket]]]:
    """A 127.0.0.1 port that accepts connections and never answers; (URL, accepted sockets)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stopping = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stopping.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", accepted
    stopping.set()
    thread.join(5)
    for conn in accepted:
        conn.close()
    server.close()


@pytest.mark.parametrize("mode", ["refused", "no-answer"])
def test_test_message_with_telegram_unreachable_answers_within_10_s(
        mode: str, silent_listener: tuple[str, list[socket.socket]]) -> None:
    """--test, Telegram refused or silent: exit 1 within 10 s, two attempts at most, a plain
    line on stderr besides the JSON log."""
    url = f"http://127.0.0.1:{free_port()}" if mode == "refused" else silent_listener[0]
    env = {**os.environ, "TELEGRAM_API_URL": url, "NPS_BOT_TOKEN": "123:abc",
           "NPS_CHAT_ID": "-100", "ORACLE_HTTP_URL": "http://127.0.0.1:9"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "sidecar.cli", "alert", "--test"], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert took < 10, f"--test took {took:.1f} s"
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("alert --test: NOT sent")]
    assert "TELEGRAM_API_URL" in line and url in line
    (failed,) = [json.loads(x) for x in done.stdout.splitlines() if '"decision"' in x]
    assert failed["decision"] == "failed" and failed["attempts"] <= 2
    if mode == "no-answer":
        assert 1 <= len(silent_listener[1]) <= 2


DURATIONS = [
    # (command, env var or None, flag, value, attribute, seconds)
    ("alert", "ALERT_CHECK_INTERVAL", None, "5m", "interval", 300.0),
    ("alert", "ALERT_COOLDOWN", None, "0", "cooldown", 0.0),
    ("alert", None, "--cooldown", "1h30m", "cooldown", 5400.0),
    ("alert", "ALERT_DEADLINE", None, "40s", "deadline", 40.0),
    ("alert", None, "--p95-seconds", "500ms", "p95_seconds", 0.5),
    ("serve", None, "--stale-after", "5s", "stale_after", 5.0),
    ("serve", "ORACLE_DRAIN_SECONDS", None, "250ms", "drain_seconds", 0.25),
    ("dashboard", None, "--refresh", "10s", "refresh", 10.0),
    ("demo", None, "--phase-seconds", "1m", "phase_seconds", 60.0),
    ("load", None, "--duration", "1m30s", "duration", 90.0),
    ("demo-oracle", "ORACLE_GRACE_SECONDS", None, "2s", "grace_seconds", 2.0),
]


@pytest.mark.parametrize(("command", "env", "flag", "value", "attribute", "seconds"), DURATIONS,
                         ids=[f"{d[0]}-{d[1] or d[2]}={d[3]}" for d in DURATIONS])
def test_durations_are_taken_wherever_a_duration_is_asked(
        monkeypatch: pytest.MonkeyPatch, command: str, env: str | None, flag: str | None,
        value: str, attribute: str, seconds: float) -> None:
    """5m, 40s, 500ms, 1h30m (or a bare number of seconds) in a flag or its variable; a zero
    cooldown is allowed."""
    from sidecar.cli import _parser_for

    if env:
        monkeypatch.setenv(env, value)
    argv = [command, *([flag, value] if flag else [])]
    args = _parser_for(argv).parse_args(argv)
    assert getattr(args, attribute) == seconds


def test_a_bad_duration_says_what_a_duration_looks_like(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """ALERT_CHECK_INTERVAL=5x is refused before anything starts, with examples."""
    monkeypatch.setenv("ALERT_CHECK_INTERVAL", "5x")
    with pytest.raises(SystemExit) as info:
        main(["alert"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "ALERT_CHECK_INTERVAL" in err
    assert "is not a duration (e.g. 30, 30s, 250ms, 5m, 1h30m)" in err
