"""A Telegram Bot API client for one thing: ``sendMessage`` within a deadline, token kept secret.

- Retries network errors, timeouts and 5xx with exponential backoff (with jitter); honours a
  429's ``parameters.retry_after`` (or ``Retry-After``); gives up before the deadline instead of
  sleeping past it; other refusals (400 chat not found, 401 bad token, 403 bot blocked) are
  final at once.
- The token is part of the URL path (``/bot<TOKEN>/sendMessage``) and aiohttp puts URLs in its
  exceptions. :meth:`Telegram.send` never raises: it returns a :class:`Delivery` whose ``error``
  is built from exception *types* and redacted text, so the token cannot reach a log line, an
  exception message or the state.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

__all__ = ["Delivery", "Telegram", "TokenError", "check_token", "redactor"]

_MAX_ANSWER = 64 * 1024
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9:_\-.]+$")


class TokenError(ValueError):
    """The configured bot token is not usable (its text is never in the message)."""


def check_token(token: str) -> str:
    """The token, stripped; TokenError when it cannot be a bot token (say why, never show it)."""
    token = token.strip()
    if not token:
        raise TokenError("the bot token is empty")
    if not _TOKEN_SHAPE.match(token):
        raise TokenError("the bot token has characters a bot token does not have "
                         "(expected digits, a colon, letters, - and _)")
    return token


def redactor(*secrets: str) -> Any:
    """A function that replaces every secret (and its URL-quoted form) in a text by ``<token>``."""
    forms = sorted({f for s in secrets if s for f in (s, quote(s, safe=""), quote(s))},
                   key=len, reverse=True)

    def redact(text: str) -> str:
        for form in forms:
            text = text.replace(form, "<token>")
        return text

    return redact


@dataclass(frozen=True, slots=True)
class Delivery:
    """How one message went. ``error`` is safe to log."""

    ok: bool
    attempts: int
    error: str | None = None
    message_id: int | None = None


class Telegram:
    """Sends messages to one chat through the Bot API at ``api_url``."""

    def __init__(self, session: aiohttp.ClientSession, api_url: str, token: str, chat_id: str,
                 *, attempt_timeout: float = 10.0, backoff: float = 0.5, max_backoff: float = 8.0,
                 max_attempts: int = 8, rng: random.Random | None = None) -> None:
        self._session = session
        self._url = f"{api_url.rstrip('/')}/bot{token}/sendMessage"
        self._chat_id = chat_id
        self.redact = redactor(token)
        self.attempt_timeout = attempt_timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_attempts = max_attempts
        self._rng = rng or random.Random()

    def __repr__(self) -> str:
        return "Telegram(<token hidden>)"

    async def send(self, text: str, deadline: float) -> Delivery:
        """Send ``text`` (HTML) before ``deadline`` (event-loop time); never raises."""
        loop = asyncio.get_running_loop()
        payload = {"chat_id": self._chat_id, "text": text, "parse_mode": "HTML",
                   "disable_web_page_preview": True}
        problem = "no attempt made"
        attempt = 0
        while attempt < self.max_attempts:
            remaining = deadline - loop.time()
            if remaining <= 0.05:
                break
            attempt += 1
            wait: float | None = None
            try:
                status, headers, body = await self._post(payload, min(self.attempt_timeout,
                                                                      remaining))
            except TimeoutError:
                problem = (f"no answer within {min(self.attempt_timeout, remaining):.3g} s")
            except aiohttp.InvalidURL as err:  # a bad TELEGRAM_API_URL: retrying cannot help
                return Delivery(False, attempt, f"bad Bot API URL: {self._describe(err)}")
            except (aiohttp.ClientError, OSError, ValueError) as err:
                problem = f"network error: {self._describe(err)}"
            else:
                if status == 200 and isinstance(body, dict) and body.get("ok") is True:
                    result = body.get("result")
                    message_id = result.get("message_id") if isinstance(result, dict) else None
                    return Delivery(True, attempt, None,
                                    message_id if isinstance(message_id, int) else None)
                code, description, retry_after = _explain(status, headers, body)
                problem = f"Telegram answered HTTP {status}" + (
                    f" ({self.redact(description)})" if description else "")
                if code == 429 or status == 429:
                    wait = retry_after if retry_after is not None else 1.0
                    if loop.time() + wait >= deadline:
                        return Delivery(False, attempt, f"{problem}: asked to wait {wait:g} s, "
                                                        f"past this run's deadline")
                elif not (status >= 500 or code >= 500):
                    return Delivery(False, attempt, problem)  # final: retrying cannot help
            if wait is None:
                wait = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                wait *= self._rng.uniform(0.5, 1.0)
            if attempt >= self.max_attempts or loop.time() + wait >= deadline:
                break
            await asyncio.sleep(wait)
        return Delivery(False, attempt, f"gave up after {attempt} attempt(s): {problem}")

    async def _post(self, payload: dict[str, Any], timeout: float
                    ) -> tuple[int, Any, Any]:
        async with asyncio.timeout(timeout):
            async with self._session.post(self._url, json=payload,
                                          allow_redirects=False) as response:
                raw = await response.content.read(_MAX_ANSWER)
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                return response.status, response.headers, body

    def _describe(self, err: BaseException) -> str:
        """The type and redacted text of an exception (aiohttp's texts include the URL)."""
        text = self.redact(str(err))[:200]
        return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _explain(status: int, headers: Any, body: Any) -> tuple[int, str, float | None]:
    """(error_code, description, retry_after) of a refusal, as far as the answer says."""
    code, description, retry_after = status, "", None
    if isinstance(body, dict):
        if isinstance(body.get("error_code"), int):
            code = body["error_code"]
        description = str(body.get("description") or "")[:200]
        parameters = body.get("parameters")
        if isinstance(parameters, dict):
            retry_after = _seconds(parameters.get("retry_after"))
    if retry_after is None:
        retry_after = _seconds(headers.get("Retry-After"))
    return code, description, retry_after


def _seconds(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if 0 <= seconds < 86400 else None
