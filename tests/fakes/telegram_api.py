"""A small local stand-in for the Telegram Bot API: ``sendMessage``, checked as Telegram checks it.

It runs an aiohttp server on an ephemeral 127.0.0.1 port in a thread of its own, so that both an
in-process alerter and an alerter subprocess can send to it (``TELEGRAM_API_URL=fake.url``).

What it checks, like the real API: the token in the path (401), the chat id (400 chat not
found), ``parse_mode`` HTML with only Telegram's tags and entities and no bare ``<``, ``>`` or
``&`` (400 can't parse entities), the text length after parsing (400 message is too long).
Accepted messages are recorded in ``messages``.

Failure injection, one behaviour per request from ``script`` (then "ok")::

    "429:2"      429 Too Many Requests with parameters.retry_after = 2
    "500"        500 with a JSON error;  "502-html": 502 with an HTML page (no JSON)
    "timeout"    no answer for ``hang_seconds`` (the client's timeout fires first)
    "ok_false"   400 {"ok": false, "description": "Bad Request: chat not found"}
    "ok_false_200"  HTTP 200 but {"ok": false, ...}
    "401"        401 Unauthorized
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

ALLOWED_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre",
                "tg-spoiler", "span", "blockquote", "tg-emoji"}
_TAG = re.compile(r"<(/?)([a-z][a-z-]*)(\s[^<>]*)?>")
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#[0-9]+|#x[0-9a-fA-F]+);")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


class EntityError(ValueError):
    """The text is not valid Telegram HTML."""


def parse_html(text: str) -> str:
    """The plain text Telegram would show for ``text`` (parse_mode HTML); EntityError if bad."""
    out: list[str] = []
    stack: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "<":
            match = _TAG.match(text, i)
            if not match:
                raise EntityError(f"can't parse entities: unsupported start tag at byte offset "
                                  f"{i}")
            closing, name = match.group(1), match.group(2)
            if name not in ALLOWED_TAGS:
                raise EntityError(f'can\'t parse entities: unsupported start tag "{name}" at '
                                  f"byte offset {i}")
            if closing:
                if not stack or stack[-1] != name:
                    raise EntityError(f'can\'t parse entities: can\'t find end tag '
                                      f'corresponding to start tag "{name}"')
                stack.pop()
            else:
                stack.append(name)
            i = match.end()
        elif char == "&":
            match = _ENTITY.match(text, i)
            if not match:
                raise EntityError(f"can't parse entities: unsupported entity at byte offset {i}")
            ref = match.group(1)
            if ref in _NAMED:
                out.append(_NAMED[ref])
            else:
                out.append(chr(int(ref[2:], 16) if ref.startswith("#x") else int(ref[1:])))
            i = match.end()
        elif char == ">":
            raise EntityError(f"can't parse entities: unexpected > at byte offset {i}")
        else:
            out.append(char)
            i += 1
    if stack:
        raise EntityError(f'can\'t parse entities: can\'t find end tag corresponding to start '
                          f'tag "{stack[-1]}"')
    return "".join(out)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass
class Attempt:
    """One request as the fake saw it."""

    behaviour: str
    at: float
    chat_id: Any
    text: str | None


class FakeTelegramAPI:
    """Run with ``start()``; ``url`` is then the Bot API base URL for the alerter."""

    def __init__(self, token: str = "123456789:AAFakeToken-for_TESTS-only0123456789",
                 chat_id: str = "-1001234567890") -> None:
        self.token = token
        self.chat_id = chat_id
        self.messages: list[dict[str, Any]] = []
        self.attempts: list[Attempt] = []
        self.script: list[str] = []
        self.hang_seconds = 30.0
        self._next_id = 1
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def texts(self) -> list[str]:
        """The plain texts of the accepted messages, oldest first."""
        with self._lock:
            return [m["plain"] for m in self.messages]

    # -- handler ------------------------------------------------------------------------------

    async def _send(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            behaviour = self.script.pop(0) if self.script else "ok"
        try:
            body = await request.json()
        except ValueError:
            body = {}
        text = body.get("text") if isinstance(body, dict) else None
        chat_id = body.get("chat_id") if isinstance(body, dict) else None
        with self._lock:
            self.attempts.append(Attempt(behaviour, time.monotonic(), chat_id, text))

        def error(status: int, description: str, **more: Any) -> web.Response:
            return web.json_response({"ok": False, "error_code": status,
                                      "description": description, **more}, status=status)

        if behaviour.startswith("429"):
            retry_after = int(behaviour.partition(":")[2] or 1)
            return error(429, f"Too Many Requests: retry after {retry_after}",
                         parameters={"retry_after": retry_after})
        if behaviour == "500":
            return error(500, "Internal Server Error")
        if behaviour == "502-html":
            return web.Response(status=502, text="<html><body>Bad Gateway</body></html>",
                                content_type="text/html")
        if behaviour == "timeout":
            assert self._closing is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.hang_seconds)
            return error(504, "Gateway Timeout")
        if behaviour == "ok_false":
            return error(400, "Bad Request: chat not found")
        if behaviour == "ok_false_200":
            return web.json_response({"ok": False, "error_code": 400,
                                      "description": "Bad Request: chat not found"})
        if behaviour == "401" or request.match_info["token"] != self.token:
            return error(401, "Unauthorized")
        if str(chat_id) != self.chat_id:
            return error(400, "Bad Request: chat not found")
        if not isinstance(text, str) or not text.strip():
            return error(400, "Bad Request: message text is empty")
        plain = text
        if body.get("parse_mode") == "HTML":
            try:
                plain = parse_html(text)
            except EntityError as err:
                return error(400, f"Bad Request: {err}")
        if utf16_len(plain) > 4096:
            return error(400, "Bad Request: message is too long")
        with self._lock:
            message_id = self._next_id
            self._next_id += 1
            self.messages.append({"message_id": message_id, "chat_id": chat_id, "text": text,
                                  "plain": plain, "parse_mode": body.get("parse_mode"),
                                  "at": time.time()})
        return web.json_response({"ok": True, "result": {
            "message_id": message_id, "date": int(time.time()),
            "chat": {"id": int(self.chat_id), "type": "supergroup"}, "text": plain}})

    async def _not_found(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"},
                                 status=404)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> FakeTelegramAPI:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._closing = asyncio.Event()
            app = web.Application()
            app.router.add_post("/bot{token}/sendMessage", self._send)
            app.router.add_route("*", "/{tail:.*}", self._not_found)
            runner = web.AppRunner(app, access_log=None)  # the token is in every path
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://127.0.0.1:{port}"
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            closing = self._closing
            assert closing is not None
            self._loop.call_soon_threadsafe(closing.set)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
