"""Command-line options with environment-variable twins, validated the same way.

Every flag of every subcommand is declared with :func:`add`, which names its env twin. A value
from the environment goes through the same parser as the flag, and a bad one stops the program
with a message that names the variable (or the flag) and the value, before anything starts.
Every duration takes a unit (:func:`duration`: ``30s``, ``5m``, ``1h30m``, ``250ms``) or a bare
number of seconds.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
from typing import Any

Parser = Callable[[str], Any]


def add(
    parser: argparse.ArgumentParser,
    flag: str,
    *,
    env: str | None,
    type: Parser = str,
    default: Any = None,
    help: str,
    repeat: bool = False,
    choices: list[str] | None = None,
) -> None:
    """Declare ``flag`` with env twin ``env``; the env value, when set, replaces ``default``."""
    parse = _explained(_with_choices(type, choices) if choices else type)
    declared = default
    if env is not None:
        raw = os.environ.get(env)
        if raw is not None and raw.strip() != "":
            try:
                default = [parse(v.strip()) for v in raw.split(",") if v.strip()] if repeat \
                    else parse(raw.strip())
            except (ValueError, argparse.ArgumentTypeError) as err:
                parser.exit(2, f"{parser.prog}: error: environment variable {env}={raw!r}: {err}\n")
    shown = f" [env {env}]" if env else ""
    if default not in (None, [], "") and not repeat:
        shown += f" (default: {default})"
    action = parser.add_argument(
        flag,
        type=parse,
        default=default,
        action=_Replace if repeat else "store",
        help=help + shown,
        metavar=flag.lstrip("-").upper().replace("-", "_"),
    )
    _describe(action, env, declared, help)


class _Replace(argparse.Action):
    """Like ``append``, but the first use on the command line replaces the env default."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        seen = f"_{self.dest}_seen"
        items = getattr(namespace, self.dest) if getattr(namespace, seen, False) else []
        setattr(namespace, self.dest, [*items, values])
        setattr(namespace, seen, True)


def flag(parser: argparse.ArgumentParser, name: str, *, env: str | None, help: str) -> None:
    """Declare a boolean switch ``name`` whose env twin accepts 1/0, true/false, yes/no."""
    default = False
    if env is not None and os.environ.get(env, "").strip():
        try:
            default = boolean(os.environ[env])
        except ValueError as err:
            parser.exit(2, f"{parser.prog}: error: environment variable {env}: {err}\n")
    shown = f" [env {env}]" if env else ""
    action = parser.add_argument(name, action="store_true", default=default, help=help + shown)
    _describe(action, env, False, help)


def _describe(action: argparse.Action, env: str | None, default: Any, text: str) -> None:
    """Keep what docs/configuration.md is generated from (see scripts/config_doc.py)."""
    action.env = env  # type: ignore[attr-defined]
    action.declared_default = default  # type: ignore[attr-defined]
    action.text = text  # type: ignore[attr-defined]


def _explained(type: Parser) -> Parser:
    """argparse shows the text of ArgumentTypeError only; make every ValueError one."""
    def parse(text: str) -> Any:
        try:
            return type(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = getattr(type, "__name__", "value")
    return parse


def _with_choices(type: Parser, choices: list[str]) -> Parser:
    def parse(text: str) -> Any:
        value = type(text)
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    parse.__name__ = type.__name__
    return parse


# Value parsers. Each raises ValueError with a sentence a person can act on.

def boolean(text: str) -> bool:
    """1/0, true/false, yes/no, on/off (any case)."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not a boolean (use true or false)")


def port(text: str) -> int:
    """A TCP port, 1 to 65535 (0 asks the system for a free one)."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a port number (0-65535)") from None
    if not 0 <= value <= 65535:
        raise ValueError(f"{value} is not a port number (0-65535)")
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{text!r} must be a finite number")
    return value


def positive_float(text: str) -> float:
    """A number of seconds (or a threshold) above zero."""
    value = _finite(text)
    if value <= 0:
        raise ValueError(f"{text!r} must be a finite number above zero")
    return value


def non_negative_float(text: str) -> float:
    """A number of seconds (or a rate), zero or more."""
    value = _finite(text)
    if value < 0:
        raise ValueError(f"{text!r} must be a finite number, zero or more")
    return value


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)")


def _seconds(text: str) -> float:
    raw = text.strip().lower().replace(" ", "")
    try:
        value = float(raw)
    except ValueError:
        parts = _PART.findall(raw)
        if not parts or "".join(n + u for n, u in parts) != raw:
            raise ValueError(f"{text!r} is not a duration (e.g. 30, 30s, 250ms, 5m, 1h30m)"
                             ) from None
        value = sum(float(n) * _UNITS[u] for n, u in parts)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{text!r} must be a finite duration")
    return value


def duration(text: str) -> float:
    """Seconds from ``30``, ``30s``, ``250ms``, ``5m``, ``1h``, ``1h30m``, ``2d``; zero or more.

    A bare number is seconds, as every duration flag used to take.
    """
    value = _seconds(text)
    if value < 0:
        raise ValueError(f"{text!r} must be a duration of zero or more")
    return value


def positive_duration(text: str) -> float:
    """A duration above zero (see :func:`duration`)."""
    value = _seconds(text)
    if value <= 0:
        raise ValueError(f"{text!r} must be a duration above zero (e.g. 30s, 5m)")
    return value


def non_negative_duration(text: str) -> float:
    """A duration, zero allowed (see :func:`duration`)."""
    return duration(text)


def positive_int(text: str) -> int:
    """A whole number above zero."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise ValueError(f"{value} must be above zero")
    return value


def non_negative_int(text: str) -> int:
    """A whole number, zero or more."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise ValueError(f"{value} must be zero or more")
    return value


def host_port(text: str) -> str:
    """HOST:PORT, as gRPC targets are written."""
    host, sep, number = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not HOST:PORT")
    port(number)
    return text


def http_url(text: str) -> str:
    """An http:// or https:// URL, without a trailing slash."""
    if not text.startswith(("http://", "https://")) or len(text) <= len("https://"):
        raise ValueError(f"{text!r} is not an http:// or https:// URL")
    return text.rstrip("/")


def log_level(text: str) -> str:
    """A logging level name."""
    value = text.strip().upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError(f"{text!r} is not a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL)")
    return value
