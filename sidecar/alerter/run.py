"""``oracle-sidecar alert``: one evaluation of the alert rules per run, as a CronJob wants.

One run: find the targets (Oracle pods through the Kubernetes API, or fixed URLs), GET every
sidecar's ``/api/v1/snapshot`` at once, judge them (:mod:`sidecar.alerter.rules`), decide what is
due against the state and the cooldown and claim it in the state (:mod:`~.decisions`), deliver
to Telegram, one message per severity (:mod:`~.grouping`, :mod:`~.telegram`), record what was
delivered. ``--loop`` repeats every
``--interval`` seconds; ``--test`` sends one test message; ``--dry-run`` prints the messages and
changes nothing.

Exit code 0 when every target was evaluated and every due message was delivered (or, with no
Telegram credentials, logged); 1 otherwise (so a failed Job shows in ``kubectl get jobs``);
2 for a configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeVar

import aiohttp

from sidecar import options
from sidecar.alerter.decisions import Decision, Notice, plan, settle
from sidecar.alerter.grouping import messages
from sidecar.alerter.messages import probe_message
from sidecar.alerter.rules import (
    SNAPSHOT_PATH,
    WINDOWS,
    Evaluation,
    Thresholds,
    evaluate,
    judged,
)
from sidecar.alerter.state import (
    ConfigMapStore,
    FileStore,
    MemoryStore,
    State,
    StateConflict,
    Store,
)
from sidecar.alerter.telegram import Delivery, Telegram, TokenError, check_token, redactor
from sidecar.logs import setup_logging
from sidecar.targets import Discovery, Fetched, Target, discover, fetch_json

__all__ = ["Settings", "configure", "evaluate_once", "run", "send_test", "settings_from_args"]

log = logging.getLogger("sidecar.alerter")

DEFAULT_SELECTOR = Discovery().selector
CLAIM_MARGIN = 30.0  # seconds a claim outlives its run's deadline
STATE_ATTEMPTS = 5  # compare-and-swap attempts before a run gives up on the state
_T = TypeVar("_T")


class ConfigError(ValueError):
    """A setting is missing or unusable; the run stops with exit code 2."""


@dataclass(frozen=True)
class Settings:
    """Everything one alerter run is started with; tests build it directly."""

    discovery: Discovery = field(default_factory=Discovery)
    thresholds: Thresholds = field(default_factory=Thresholds)
    cooldown: float = 300.0
    state_file: str | None = None
    state_config_map: str | None = None
    deadline: float = 40.0
    interval: float = 30.0
    telegram_api_url: str = "https://api.telegram.org"
    token: str | None = field(default=None, repr=False)
    chat_id: str | None = None
    hint: str | None = None
    dry_run: bool = False
    fetch_timeout: float = 5.0
    attempt_timeout: float = 10.0
    backoff: float = 0.5

    @property
    def uses_kube(self) -> bool:
        """Pods are discovered, or the state lives in a ConfigMap."""
        return not self.discovery.urls or (self.state_config_map is not None
                                           and self.state_file is None)


# -- command line ------------------------------------------------------------------------------

def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the alerter's flags, each with its env twin (the chart sets the env)."""
    add = options.add
    add(parser, "--target", env="ORACLE_HTTP_URL", type=options.http_url, repeat=True,
        help="sidecar URL to watch instead of discovering pods (repeat; env: comma-separated)")
    add(parser, "--namespace", env="ORACLE_NAMESPACE",
        help="namespace of the Oracle pods and the state ConfigMap (default: this pod's)")
    add(parser, "--selector", env="ORACLE_POD_SELECTOR", default=DEFAULT_SELECTOR,
        help="label selector of the Oracle pods")
    add(parser, "--port", env="ORACLE_HTTP_PORT", type=options.port, default=9090,
        help="the sidecar's HTTP port on each pod")
    add(parser, "--state-configmap", env="ALERT_STATE_CONFIGMAP",
        help="ConfigMap that keeps the alert state between runs")
    add(parser, "--state-file", env="ALERT_STATE_FILE",
        help="JSON file that keeps the alert state (outside Kubernetes; wins over the ConfigMap)")
    add(parser, "--interval", env="ALERT_CHECK_INTERVAL", type=options.positive_duration,
        default=30.0, help="time between evaluations with --loop (30, 30s, 5m)")
    add(parser, "--cooldown", env="ALERT_COOLDOWN", type=options.non_negative_duration,
        default=300.0, help="time before the same alert (kind, target, RPC) is sent again "
        "(300, 5m; 0: no cooldown, every run sends what holds)")
    add(parser, "--error-rate-percent", env="ALERT_ERROR_RATE_PERCENT",
        type=options.positive_float, default=5.0,
        help="WARNING when an RPC's errors exceed this percentage of its requests in the window")
    add(parser, "--p95-seconds", env="ALERT_P95_SECONDS", type=options.positive_duration,
        default=10.0, help="WARNING when an RPC's P95 latency in the window exceeds this")
    add(parser, "--window", env="ALERT_WINDOW", default="5m", choices=list(WINDOWS),
        help="window the error-rate and latency rules look at")
    add(parser, "--min-requests", env="ALERT_MIN_REQUESTS", type=options.positive_int,
        default=20, help="fewest requests in the window for the error-rate and latency rules")
    add(parser, "--startup-grace", env="ALERT_STARTUP_GRACE", type=options.positive_duration,
        default=60.0, help="seconds a new sidecar may wait for the Oracle's first report "
        "before that counts as degraded")
    add(parser, "--deadline", env="ALERT_DEADLINE", type=options.positive_duration, default=40.0,
        help="seconds one run may take, Telegram retries included (below the Job's deadline)")
    add(parser, "--bot-token-file", env="NPS_BOT_TOKEN_FILE",
        help="file holding the Telegram bot token (a mounted Secret); else env NPS_BOT_TOKEN. "
        "There is no flag for the token itself: command lines are visible to every process")
    add(parser, "--chat-id", env="NPS_CHAT_ID", help="Telegram chat to send to")
    add(parser, "--telegram-api-url", env="TELEGRAM_API_URL", type=options.http_url,
        default="https://api.telegram.org", help="Telegram Bot API base URL")
    add(parser, "--dashboard-hint", env="ALERT_DASHBOARD_HINT",
        help="the last line of every message, e.g. the dashboard's kubectl port-forward command")
    add(parser, "--log-level", env="LOG_LEVEL", type=options.log_level, default="INFO",
        help="log level")
    options.flag(parser, "--loop", env="ALERT_LOOP",
                 help="evaluate every --interval seconds until stopped (outside Kubernetes)")
    options.flag(parser, "--test", env="ALERT_TEST",
                 help="send one test message and exit 0 (delivered) or 1")
    options.flag(parser, "--dry-run", env="ALERT_DRY_RUN",
                 help="print the messages that are due instead of sending them; change no state")


def _token(args: argparse.Namespace) -> str | None:
    """The bot token from --bot-token-file / NPS_BOT_TOKEN_FILE, else NPS_BOT_TOKEN, else None."""
    if args.bot_token_file:
        try:
            with open(args.bot_token_file) as f:
                raw = f.read()
        except OSError as err:
            raise ConfigError(f"cannot read the bot token file {args.bot_token_file}: "
                              f"{err.strerror}") from None
        where = f"the bot token file {args.bot_token_file}"
    else:
        raw = os.environ.get("NPS_BOT_TOKEN", "")
        where = "NPS_BOT_TOKEN"
        if not raw.strip():
            return None
    try:
        return check_token(raw)
    except TokenError as err:
        raise ConfigError(f"{where}: {err}") from None


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Build :class:`Settings` from parsed flags; ConfigError names what is wrong."""
    token = _token(args)
    chat_id = (args.chat_id or "").strip() or None
    if token and not chat_id:
        raise ConfigError("a bot token is set but no chat: set NPS_CHAT_ID (--chat-id)")
    if args.state_file and args.state_configmap:
        log.info("both a state file and a state ConfigMap are set; using the file",
                 extra={"state_file": args.state_file})
    return Settings(
        discovery=Discovery(urls=tuple(args.target or ()), namespace=args.namespace or None,
                            selector=args.selector, port=args.port),
        thresholds=Thresholds(args.error_rate_percent, args.p95_seconds, args.window,
                              args.min_requests, args.startup_grace),
        cooldown=args.cooldown,
        state_file=args.state_file or None,
        state_config_map=args.state_configmap or None,
        deadline=args.deadline,
        interval=args.interval,
        telegram_api_url=args.telegram_api_url,
        token=token,
        chat_id=chat_id,
        hint=(args.dashboard_hint or "").strip() or None,
        dry_run=args.dry_run,
    )


class _Redact(logging.Filter):
    """Replaces the token in every record a handler writes, exception text included."""

    def __init__(self, redact: Callable[[str], str]) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.redact(record.getMessage()), None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, None
            record.__dict__["exception"] = self.redact(text)
        for key, value in list(record.__dict__.items()):
            if isinstance(value, str):
                record.__dict__[key] = self.redact(value)
        return True


def guard_logs(token: str | None) -> None:
    """Defence in depth: every handler of the root logger redacts ``token``."""
    if not token:
        return
    redact = redactor(token)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _Redact) for f in handler.filters):
            handler.addFilter(_Redact(redact))


def run(args: argparse.Namespace) -> int:
    """The ``alert`` subcommand."""
    setup_logging("alerter", level=args.log_level)
    try:
        settings = settings_from_args(args)
    except ConfigError as err:
        log.error("bad setting: %s", err)
        return 2
    guard_logs(settings.token)
    try:
        if args.test:
            return asyncio.run(send_test(settings))
        if args.loop:
            return asyncio.run(_loop(settings))
        return asyncio.run(evaluate_once(settings))
    except KeyboardInterrupt:
        return 130
    except Exception:
        # Through the log handlers (which redact the token), not Python's bare traceback.
        log.exception("the alerter failed unexpectedly")
        return 1


# -- one evaluation ----------------------------------------------------------------------------

def _run_id() -> str:
    """Names a run in claims and logs: the host (the Job's pod), the pid, a random part."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"


def _namespace(settings: Settings) -> str:
    from sidecar.kube import current_namespace

    return settings.discovery.namespace or current_namespace() or "default"


def _store(settings: Settings, kube: Any) -> Store:
    if settings.state_file:
        return FileStore(settings.state_file)
    if settings.state_config_map:
        return ConfigMapStore(kube, _namespace(settings), settings.state_config_map)
    return MemoryStore()


async def _transact(store: Store, change: Callable[[State], tuple[_T, State]]) -> _T:
    """Read the state, change it, write it back if nobody wrote in between; else again."""
    for attempt in range(1, STATE_ATTEMPTS + 1):
        loaded = await asyncio.to_thread(store.load)
        result, new = change(loaded.state)
        try:
            await asyncio.to_thread(store.save, new, loaded.version)
            return result
        except StateConflict:
            log.info("the alert state changed since this run read it; reading it again",
                     extra={"state": store.where, "attempt": attempt})
    raise StateConflict(f"{store.where} changed {STATE_ATTEMPTS} times under this run")


_WORDS = {
    "due": "alert due",
    "grouped": "alert within its cooldown joins this run's message of its severity",
    "suppressed": "alert suppressed by cooldown",
    "in_flight": "alert left to another run that is delivering it",
    "closed": "alert closed",
    "recovered": "alert recovered",
    "claim_expired": "alert claim of a dead run rolled back",
}


def _log_decision(d: Decision, run_id: str, dry_run: bool) -> None:
    level = logging.WARNING if d.action == "claim_expired" else logging.INFO
    log.log(level, _WORDS.get(d.action, d.action), extra={
        "decision": d.action, "alert_key": d.key, "alert_kind": d.kind, "severity": d.severity,
        "target": d.target, "reason": d.reason, "cooldown_until": d.cooldown_until,
        "run": run_id, "dry_run": dry_run})


async def _answers(session: aiohttp.ClientSession, targets: list[Target], timeout: float
                   ) -> list[Fetched]:
    async def ask(target: Target) -> Fetched:
        if not judged(target):
            return Fetched(target, None, None, "not asked: the pod is not running", 0.0)
        return await fetch_json(session, target, SNAPSHOT_PATH, timeout=timeout)

    return list(await asyncio.gather(*(ask(t) for t in targets)))


async def evaluate_once(settings: Settings, *, kube: Any = None, store: Store | None = None,
                        clock: Callable[[], float] = time.time, out: TextIO | None = None) -> int:
    """One evaluation, start to end; returns the exit code. ``kube``: a ``sidecar.kube.Kube``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.deadline
    run_id = _run_id()
    try:
        async with asyncio.timeout(settings.deadline + 5):
            return await _evaluate(settings, kube, store, clock, out, run_id, deadline)
    except TimeoutError:
        log.error("the run overran its deadline and was stopped; claimed alerts are retried "
                  "by a later run", extra={"run": run_id, "deadline": settings.deadline})
        return 1


def _api_errors(settings: Settings) -> tuple[type[Exception], ...]:
    """What reading targets or the state can raise; the Kubernetes client only when used."""
    if not settings.uses_kube:
        return (OSError, StateConflict)
    from sidecar.kube import KubeError

    return (KubeError, OSError, StateConflict)


async def _evaluate(settings: Settings, kube: Any, store: Store | None,
                    clock: Callable[[], float], out: TextIO | None, run_id: str,
                    deadline: float) -> int:
    api_errors = _api_errors(settings)
    loop = asyncio.get_running_loop()
    how = settings.discovery
    try:
        if kube is None and settings.uses_kube:
            from sidecar.kube import Kube

            kube = await asyncio.to_thread(Kube)
        namespace = _namespace(settings) if not how.urls else None
        if namespace is not None:
            how = Discovery(how.urls, namespace, how.selector, how.port)
        targets = await discover(how, kube)
    except api_errors as err:
        log.error("cannot list the Oracle pods: %s", err, extra={"run": run_id})
        return 1
    if store is None:
        store = _store(settings, kube)
        if isinstance(store, MemoryStore):
            log.warning("no --state-file or --state-configmap: nothing is remembered between "
                        "runs, so every run sends every due alert again")

    timeout = max(min(settings.fetch_timeout, deadline - loop.time() - 1), 0.1)
    async with aiohttp.ClientSession() as session:
        answers = await _answers(session, targets, timeout)
    if how.urls:
        evaluation = evaluate(answers, settings.thresholds)
    else:
        evaluation = evaluate(answers, settings.thresholds, selector=how.selector,
                              namespace=how.namespace, pods=targets)
    _log_verdicts(evaluation, run_id)

    now = clock()
    claim_until = now + max(deadline - loop.time(), 0) + CLAIM_MARGIN
    cooldown = settings.cooldown
    if settings.dry_run:
        try:
            current = (await asyncio.to_thread(store.load)).state
        except api_errors as err:
            log.warning("cannot read the alert state (%s); judging as if it were empty", err)
            current = State()
        result = plan(current, evaluation, now, cooldown, run_id, claim_until)
        for d in result.decisions:
            _log_decision(d, run_id, True)
        _print(result.notices, now, settings.hint, out or sys.stdout)
        return 0

    try:
        result = await _transact(store, lambda s: (
            (p := plan(s, evaluation, now, cooldown, run_id, claim_until)), p.state))
    except api_errors as err:
        # Sending without a record would repeat every alert on every run: fail loudly instead.
        log.error("cannot keep the alert state, so nothing is sent this run: %s", err,
                  extra={"state": store.where, "run": run_id})
        return 1
    for d in result.decisions:
        _log_decision(d, run_id, False)

    outcomes = await _deliver(settings, result.notices, now, deadline, run_id)
    failed = sum(1 for _, ok in outcomes if not ok)
    if outcomes:
        try:
            via = "telegram" if settings.token and settings.chat_id else "log"
            await _transact(store, lambda s: (None, settle(s, run_id, outcomes, via)))
        except api_errors as err:
            log.error("cannot record the deliveries; their claims expire and a later run "
                      "retries them: %s", err, extra={"state": store.where, "run": run_id})
            return 1
    log.info("run finished", extra={
        "run": run_id, "targets": len(evaluation.verdicts), "notices": len(result.notices),
        "failed": failed, "findings": len(evaluation.findings)})
    return 1 if failed else 0


def _log_verdicts(evaluation: Evaluation, run_id: str) -> None:
    for verdict in evaluation.verdicts.values():
        log.info("target evaluated", extra={
            "run": run_id, "target": verdict.target, "status": verdict.status,
            "note": verdict.note, "findings": [f.key for f in verdict.findings]})


def _print(notices: tuple[Notice, ...], now: float, hint: str | None, out: TextIO) -> None:
    if not notices:
        print("(dry run: no message is due)", file=out)
    for message in messages(notices, now, hint):
        print(f"--- would send ({message.level}, {', '.join(message.keys)}):", file=out)
        print(message.text, file=out)
    out.flush()


async def _deliver(settings: Settings, notices: tuple[Notice, ...], now: float, deadline: float,
                   run_id: str) -> list[tuple[str, bool]]:
    """One message per level (most severe first); (alert key, delivered) for every key claimed."""
    outcomes: list[tuple[str, bool]] = []
    if not notices:
        return outcomes
    # Keep time to record the outcome in the state after the last attempt.
    send_deadline = deadline - min(10.0, settings.deadline * 0.25)
    async with aiohttp.ClientSession(trust_env=True) as session:
        telegram = _telegram(settings, session)
        for message in messages(notices, now, settings.hint):
            text = message.text
            extra = {"run": run_id, "alert_keys": list(message.keys), "severity": message.level,
                     "alert_kind": ",".join(message.kinds), "target": ",".join(message.targets)}
            if telegram is None:
                log.warning("alert logged (no Telegram bot token configured)",
                            extra={**extra, "decision": "logged", "text": text})
                delivery = Delivery(True, 0)
            else:
                delivery = await telegram.send(text, send_deadline)
                if delivery.ok:
                    log.info("alert sent", extra={**extra, "decision": "sent",
                                                  "attempts": delivery.attempts,
                                                  "message_id": delivery.message_id})
                else:
                    log.error("alert delivery failed; a later run tries again: %s",
                              delivery.error, extra={**extra, "decision": "failed",
                                                     "attempts": delivery.attempts})
            outcomes += [(key, delivery.ok) for key in message.keys]
    return outcomes


def _telegram(settings: Settings, session: aiohttp.ClientSession) -> Telegram | None:
    if not settings.token or not settings.chat_id:
        return None
    return Telegram(session, settings.telegram_api_url, settings.token, settings.chat_id,
                    attempt_timeout=settings.attempt_timeout, backoff=settings.backoff)


TEST_DEADLINE = 8.0  # seconds ``--test`` may take: a person is waiting for the answer
TEST_ATTEMPT_TIMEOUT = 3.5  # per attempt; two attempts at most


async def send_test(settings: Settings, clock: Callable[[], float] = time.time,
                    err: TextIO | None = None) -> int:
    """``--test``: one test message; 0 when Telegram took it, else 1.

    A person is waiting: two attempts at most, an answer within :data:`TEST_DEADLINE` seconds
    whatever the failure (refused, no answer, unroutable), and a plain line on stderr besides
    the JSON log.
    """
    say = err or sys.stderr
    if not settings.token or not settings.chat_id:
        log.error("no Telegram bot token and chat: set NPS_BOT_TOKEN (or NPS_BOT_TOKEN_FILE) "
                  "and NPS_CHAT_ID")
        print("alert --test: not sent: set NPS_BOT_TOKEN (or NPS_BOT_TOKEN_FILE) and "
              "NPS_CHAT_ID", file=say, flush=True)
        return 1
    how = settings.discovery
    where = ", ".join(how.urls) if how.urls else f"the pods {how.selector}" + (
        f" in namespace {how.namespace}" if how.namespace else "")
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with aiohttp.ClientSession(trust_env=True) as session:
        telegram = Telegram(session, settings.telegram_api_url, settings.token, settings.chat_id,
                            attempt_timeout=min(settings.attempt_timeout, TEST_ATTEMPT_TIMEOUT),
                            backoff=settings.backoff, max_attempts=2)
        delivery = await telegram.send(probe_message(clock(), where, settings.hint),
                                       started + min(settings.deadline, TEST_DEADLINE))
    took = loop.time() - started
    if delivery.ok:
        log.info("test message sent", extra={"decision": "sent", "attempts": delivery.attempts})
        print(f"alert --test: sent to chat {settings.chat_id} in {took:.1f} s; check the chat",
              file=say, flush=True)
        return 0
    log.error("test message failed: %s", delivery.error,
              extra={"decision": "failed", "attempts": delivery.attempts})
    print(f"alert --test: NOT sent ({delivery.attempts} attempt(s) in {took:.1f} s): "
          f"{delivery.error}. Check the network (or HTTPS_PROXY) to "
          f"{settings.telegram_api_url} (TELEGRAM_API_URL), the bot token and NPS_CHAT_ID.",
          file=say, flush=True)
    return 1


async def _loop(settings: Settings) -> int:
    """``--loop``: evaluate every ``interval`` seconds until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    kube = None
    if settings.uses_kube:
        from sidecar.kube import Kube, KubeError

        try:
            kube = await asyncio.to_thread(Kube)
        except KubeError as err:
            log.error("%s", err)
            return 1
    store = _store(settings, kube)
    if isinstance(store, MemoryStore):
        log.warning("no --state-file or --state-configmap: the cooldown lasts only as long as "
                    "this process")
    log.info("evaluating every %g s until stopped", settings.interval,
             extra={"interval": settings.interval})
    while not stop.is_set():
        try:
            await evaluate_once(settings, kube=kube, store=store)
        except Exception:
            log.exception("the evaluation failed unexpectedly; trying again next interval")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.interval)
    log.info("stopped")
    return 0
