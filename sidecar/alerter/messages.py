"""The text of each notice, as Telegram HTML a person can act on at 3 a.m.

Level and title first (the line a phone shows in its notification), then where (pod and
namespace, or the sidecar URL), the measured value against its threshold, the time in UTC and
the dashboard hint. Every dynamic value is escaped (``&``, ``<``, ``>``), and the whole text is
kept within Telegram's 4096 characters: longer text is cut at a safe place (never inside a tag
or an entity), open tags are closed, and a marker says so. Several alerts of one level in one
run share one message (:func:`render_group`, packed by :mod:`sidecar.alerter.grouping`).

Example (degraded)::

    🔴 <b>CRITICAL: oracle-7d9f-abc is degraded</b>
    <b>Pod:</b> <code>oracle-7d9f-abc</code> in namespace <code>oracle</code>
    <b>Health:</b> degraded (process 7 reports degraded (ephemeris: timeout))
    <b>Checks:</b> ephemeris: timeout
    <b>Ready:</b> no
    <b>Time:</b> 2026-11-28 03:12:09 UTC
    <b>Dashboard:</b> <code>kubectl port-forward -n oracle svc/oracle-dashboard 9000</code>
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

from sidecar.alerter.decisions import Notice

__all__ = ["LIMIT", "duration", "escape", "fit", "probe_message", "render", "render_group",
           "utc"]

LIMIT = 4096  # Telegram's limit for a message text
MARKER = "\n… (truncated)"
_ICONS = {"CRITICAL": "🔴", "WARNING": "🟠", "INFO": "✅"}
_TAG = re.compile(r"<(/?)([a-z]+)[^>]*>")


def escape(text: object) -> str:
    """Text safe inside Telegram HTML: ``&``, ``<`` and ``>`` as entities."""
    return html.escape(str(text), quote=False)


def utc(moment: float) -> str:
    """``2026-11-28 03:12:09 UTC``."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float) -> str:
    """``45 s``, ``12 min 30 s``, ``2 h 5 min``, ``3 d 4 h``."""
    total = max(round(seconds), 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


def _line(label: str, value: str, code: bool = False) -> str:
    shown = f"<code>{escape(value)}</code>" if code else escape(value)
    return f"<b>{escape(label)}:</b> {shown}"


def _where(notice: Notice) -> str:
    if notice.is_pod:
        return (f"<b>Pod:</b> <code>{escape(notice.target)}</code>"
                + (f" in namespace <code>{escape(notice.namespace)}</code>"
                   if notice.namespace else ""))
    if notice.target.startswith("pods:"):
        return (f"<b>Pods:</b> <code>{escape(notice.target.removeprefix('pods:'))}</code>"
                + (f" in namespace <code>{escape(notice.namespace)}</code>"
                   if notice.namespace else ""))
    return f"<b>Sidecar:</b> <code>{escape(notice.target)}</code>"


def render(notice: Notice, now: float, hint: str | None = None) -> str:
    """The HTML text of ``notice`` at ``now``, within :data:`LIMIT`."""
    lines: list[str] = []
    icon = _ICONS[notice.level]
    if notice.finding is not None:
        title = notice.finding.title
        if notice.reminder and notice.opened is not None:
            title += f" (still, for {duration(now - notice.opened)})"
        lines.append(f"{icon} <b>{escape(notice.level)}: {escape(title)}</b>")
        lines.append(_where(notice))
        lines += [_line(label, value) for label, value in notice.finding.facts]
        if notice.opened is not None and now - notice.opened >= 1 and not notice.reminder:
            lines.append(_line("Since", f"{utc(notice.opened)} ({duration(now - notice.opened)})"))
    else:
        lasted = duration(now - notice.opened) if notice.opened is not None else "?"
        if notice.target.startswith("pods:"):
            title = f"Oracle pods running again after {lasted}"
        elif notice.gone:
            title = f"{notice.target} is gone (replaced or scaled down) after {lasted}"
        else:
            title = f"{notice.target} recovered after {lasted}"
        lines.append(f"{icon} <b>INFO: {escape(title)}</b>")
        lines.append(_where(notice))
        if notice.opened is not None:
            lines.append(_line("Incident", f"{lasted}, since {utc(notice.opened)}"))
        lines += [_line("Was", summary) for summary in notice.was]
    lines.append(_line("Time", utc(now)))
    if hint:
        lines.append(_line("Dashboard", hint, code=True))
    return fit("\n".join(lines))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _group_title(notices: list[Notice]) -> str:
    """``oracle-a: P95 above 10 s on 8 RPCs``; ``3 pods: degraded, sidecar does not answer``."""
    targets = list(dict.fromkeys(n.target for n in notices))
    if notices[0].finding is None:
        gone = any(n.gone for n in notices)
        return f"{_targets(notices, targets)} {'recovered or gone' if gone else 'recovered'}"
    causes: dict[str, list[Notice]] = {}
    for notice in notices:
        assert notice.finding is not None
        causes.setdefault(notice.finding.cause_text, []).append(notice)
    parts = []
    for cause, members in causes.items():
        rpcs = [n for n in members if n.finding is not None and n.finding.rpc is not None]
        parts.append(f"{cause} on {_plural(len(rpcs), 'RPC')}" if rpcs else cause)
    what = ", ".join(parts)
    if len(targets) == 1:
        return f"{what} ({targets[0]})"
    return f"{_targets(notices, targets)}: {what}"


def _targets(notices: list[Notice], targets: list[str]) -> str:
    if len(targets) == 1:
        return targets[0]
    word = "pod" if all(n.is_pod for n in notices) else "target"
    return _plural(len(targets), word)


def render_group(notices: list[Notice], now: float, hint: str | None = None) -> str:
    """One message for several notices of one level (see :mod:`sidecar.alerter.grouping`).

    A single notice renders as :func:`render` does. Several: the title names the targets and
    the causes, then for each target where it is and one line per alert (the RPC and its
    figure), or for a recovery how long the incident lasted and what it was.
    """
    if len(notices) == 1:
        return render(notices[0], now, hint)
    level = notices[0].level
    lines = [f"{_ICONS[level]} <b>{escape(level)}: {escape(_group_title(notices))}</b>"]
    by_target: dict[str, list[Notice]] = {}
    for notice in notices:
        by_target.setdefault(notice.target, []).append(notice)
    for members in by_target.values():
        lines.append(_where(members[0]))
        for notice in members:
            if notice.finding is None:
                lasted = duration(now - notice.opened) if notice.opened is not None else "?"
                since = f", since {utc(notice.opened)}" if notice.opened is not None else ""
                word = "gone (replaced or scaled down)" if notice.gone else "recovered"
                lines.append(escape(f"• {word} after {lasted}{since}"))
                lines += [escape(f"  was: {summary}") for summary in notice.was]
                continue
            still = ""
            if notice.reminder and notice.opened is not None:
                still = f" (still, for {duration(now - notice.opened)})"
            lines.append(escape(f"• {notice.finding.item_text}{still}"))
    lines.append(_line("Time", utc(now)))
    if hint:
        lines.append(_line("Dashboard", hint, code=True))
    return fit("\n".join(lines))


def probe_message(now: float, where: str, hint: str | None = None) -> str:
    """The ``--test`` message."""
    lines = ["✅ <b>INFO: test message from the Oracle alerter</b>",
             escape(f"Alerts for {where} will arrive in this chat."),
             _line("Time", utc(now))]
    if hint:
        lines.append(_line("Dashboard", hint, code=True))
    return fit("\n".join(lines))


def utf16_len(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def fit(text: str, limit: int = LIMIT) -> str:
    """``text`` if it fits in ``limit``; else cut at a safe place, tags closed, with a marker.

    Counting the HTML source is conservative: Telegram counts the text after parsing, which is
    never longer.
    """
    if utf16_len(text) <= limit:
        return text
    reserve = utf16_len(MARKER) + 64  # room for the marker and closing tags
    budget, used, cut = limit - reserve, 0, 0
    for i, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > budget:
            cut = i
            break
    head = text[:cut]
    # Never end inside a tag (<b ...) or an entity (&amp).
    lt, gt = head.rfind("<"), head.rfind(">")
    if lt > gt:
        head = head[:lt]
    amp, semi = head.rfind("&"), head.rfind(";")
    if amp > semi:
        head = head[:amp]
    open_tags: list[str] = []
    for closing, name in _TAG.findall(head):
        if closing and open_tags and open_tags[-1] == name:
            open_tags.pop()
        elif not closing:
            open_tags.append(name)
    return head + "".join(f"</{name}>" for name in reversed(open_tags)) + escape(MARKER)
