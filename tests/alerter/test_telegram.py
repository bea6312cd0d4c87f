"""The Bot API client against the fake API: retries, 429 retry_after, deadline, token hygiene."""

from __future__ import annotations

import asyncio
import random
import time

import aiohttp
import pytest

from sidecar.alerter.telegram import Telegram, TokenError, check_token, redactor
from tests.conftest import free_port
from tests.fakes.telegram_api import FakeTelegramAPI


def client(session: aiohttp.ClientSession, api: FakeTelegramAPI, url: str | None = None,
           token: str | None = None) -> Telegram:
    return Telegram(session, url or api.url, token or api.token, api.chat_id,
                    attempt_timeout=0.5, backoff=0.05, max_backoff=0.2, rng=random.Random(1))


SCRIPTS = [
    # (script, delivered, attempts, error contains)
    ([], True, 1, None),
    (["429:1"], True, 2, None),
    (["500", "500"], True, 3, None),
    (["502-html"], True, 2, None),
    (["timeout"], True, 2, None),
    (["ok_false"], False, 1, "chat not found"),
    (["ok_false_200"], False, 1, "chat not found"),
    (["401"], False, 1, "HTTP 401 (Unauthorized)"),
]


@pytest.mark.parametrize(("script", "delivered", "attempts", "error"), SCRIPTS,
                         ids=["-".join(s[0]) or "ok" for s in SCRIPTS])
async def test_send_table(telegram: FakeTelegramAPI, script: list[str], delivered: bool,
                          attempts: int, error: str | None) -> None:
    """Transient failures are retried; refusals are final at once; the token never shows."""
    telegram.script = list(script)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:
        result = await client(session, telegram).send("<b>hello</b> &amp; bye",
                                                      loop.time() + 8)
    assert (result.ok, result.attempts) == (delivered, attempts)
    assert len(telegram.messages) == (1 if delivered else 0)
    if error:
        assert error in (result.error or "")
    assert telegram.token not in repr(result)


async def test_retry_after_is_honoured(telegram: FakeTelegramAPI) -> None:
    """After a 429 with retry_after=1, the next attempt comes a second later, not sooner."""
    telegram.script = ["429:1"]
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:
        result = await client(session, telegram).send("x", loop.time() + 8)
    first, second = telegram.attempts
    assert result.ok and second.at - first.at >= 0.95


async def test_retry_after_past_the_deadline_gives_up_at_once(telegram: FakeTelegramAPI
                                                              ) -> None:
    """A 429 asking to wait beyond the deadline fails now instead of sleeping past it."""
    telegram.script = ["429:30"]
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        result = await client(session, telegram).send("x", loop.time() + 3)
    assert not result.ok and "past this run's deadline" in (result.error or "")
    assert time.monotonic() - started < 1.0


async def test_persistent_failures_stop_before_the_deadline(telegram: FakeTelegramAPI) -> None:
    """5xx and timeouts are retried with backoff, but never past the deadline."""
    telegram.script = ["500", "timeout"] * 20
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        result = await client(session, telegram).send("x", loop.time() + 1.5)
    elapsed = time.monotonic() - started
    assert not result.ok and result.attempts >= 2
    assert elapsed < 1.6
    assert "gave up after" in (result.error or "")


@pytest.mark.parametrize("where", ["closed-port", "bad-url"])
async def test_network_errors_never_carry_the_token(telegram: FakeTelegramAPI, where: str
                                                    ) -> None:
    """aiohttp's exceptions include the URL (and so the token); the result's error does not."""
    url = f"http://127.0.0.1:{free_port()}" if where == "closed-port" else "http://host:99999"
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:
        result = await client(session, telegram, url=url).send("x", loop.time() + 0.6)
    assert not result.ok and result.error
    assert ("network error" if where == "closed-port" else "bad Bot API URL") in result.error
    assert telegram.token not in result.error
    assert telegram.token.split(":")[1] not in result.error


async def test_wrong_token_is_refused_and_not_echoed(telegram: FakeTelegramAPI) -> None:
    """A token the API does not know is a final 401; neither token is in the error."""
    wrong = "999:WrongTokenValue"
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:
        result = await client(session, telegram, token=wrong).send("x", loop.time() + 3)
    assert not result.ok and result.attempts == 1
    assert wrong not in (result.error or "") and "401" in (result.error or "")


def test_token_checks_never_echo_the_token() -> None:
    """A malformed token is refused with a reason that does not contain it."""
    assert check_token("  123:abc_DEF-9\n") == "123:abc_DEF-9"
    for bad in ("", "123:abc/../x", "123 456", "12:ab?c=1"):
        with pytest.raises(TokenError) as info:
            check_token(bad)
        assert not bad.strip() or bad.strip() not in str(info.value)


def test_redactor_replaces_plain_and_quoted_forms() -> None:
    """The token is replaced whether it appears as is or URL-quoted."""
    redact = redactor("123:abc")
    assert redact("url /bot123:abc/send and /bot123%3Aabc/") == "url /bot<token>/send and " \
                                                               "/bot<token>/"
    assert repr(Telegram.__new__(Telegram)) == "Telegram(<token hidden>)"
