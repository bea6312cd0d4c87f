"""One Telegram message per severity per run, however many pods and RPCs share the fault.

:func:`sidecar.alerter.decisions.plan` decides per alert (the cooldown is per alert key);
:func:`messages` then puts every due notice of one level into one message: all CRITICALs of the
run in one, all WARNINGs in one, all recoveries in one, most severe first. A latency fault on
the eight RPCs of three pods is one WARNING naming the 24 RPCs with their P95, not 24 messages.

Only when a message would pass Telegram's 4096 characters is it split, between targets (and
within a target only when one target alone is too long), so nothing is cut off. A message's
``keys`` are every alert it carries: its delivery (or failure) is recorded for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.alerter.decisions import Notice
from sidecar.alerter.messages import MARKER, render_group

__all__ = ["Message", "messages"]

_ORDER = ("CRITICAL", "WARNING", "INFO")


@dataclass(frozen=True, slots=True)
class Message:
    """One Telegram message: its level, the notices it carries and its HTML text."""

    level: str
    notices: tuple[Notice, ...]
    text: str

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(key for notice in self.notices for key in notice.keys)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(notice.kind for notice in self.notices))

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(notice.target for notice in self.notices))


def messages(notices: tuple[Notice, ...] | list[Notice], now: float,
             hint: str | None = None) -> list[Message]:
    """The messages for ``notices``: one per level (split only past Telegram's limit)."""
    out: list[Message] = []
    for level in _ORDER:
        members = sorted((n for n in notices if n.level == level),
                         key=lambda n: (n.target, n.keys))
        if members:
            out += _packed(level, members, now, hint)
    return out


def _packed(level: str, members: list[Notice], now: float, hint: str | None) -> list[Message]:
    """Greedy: as many whole targets per message as fit; a target too long alone is split."""
    out: list[Message] = []
    blocks: dict[str, list[Notice]] = {}
    for notice in members:
        blocks.setdefault(notice.target, []).append(notice)
    current: list[Notice] = []
    for block in blocks.values():
        if current and _fits(current + block, now, hint):
            current += block
            continue
        if current:
            out.append(_message(level, current, now, hint))
        current = []
        for notice in block:  # a target alone: whole if it fits, else as many alerts as fit
            if current and not _fits([*current, notice], now, hint):
                out.append(_message(level, current, now, hint))
                current = []
            current.append(notice)
    if current:
        out.append(_message(level, current, now, hint))
    return out


def _fits(notices: list[Notice], now: float, hint: str | None) -> bool:
    return len(notices) == 1 or not render_group(notices, now, hint).endswith(MARKER)


def _message(level: str, notices: list[Notice], now: float, hint: str | None) -> Message:
    return Message(level, tuple(notices), render_group(notices, now, hint))
