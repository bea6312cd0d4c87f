"""What the demo Oracle gets wrong on purpose: errors, latency and health, and a scenario.

:class:`Faults` is one immutable setting of every knob. :class:`Knobs` holds the current one for
the gRPC handlers (a plain attribute read per RPC, no lock on the hot path) and changes it from
three places: the start-up flags (the *baseline*), the control endpoint (which patches the
baseline), and a running scenario, which layers its current phase on top of the baseline.

Text forms, used by the flags, the env vars and the control endpoint alike:

- a duration: ``250ms``, ``2s``, ``1.5`` (seconds);
- a delay: ``DURATION`` (fixed), ``LOW..HIGH`` (uniform), either followed by ``@FRACTION`` to
  delay only that share of the calls: ``12s..15s@0.1``;
- a rate: ``0.25`` or ``25%``;
- per method: ``GetReading=0.2``; without ``METHOD=`` the value applies to every method (``*``),
  and a named method wins over ``*``.
"""

from __future__ import annotations

import argparse
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import grpc

from sidecar.demo import METHODS

__all__ = [
    "ALL",
    "HEALTH_STATES",
    "PHASES",
    "Delay",
    "Faults",
    "KnobError",
    "Knobs",
    "argument_type",
    "parse_delay",
    "parse_duration",
    "parse_error_code",
    "parse_method_value",
    "parse_rate",
    "parse_scenario",
]

log = logging.getLogger("nps.oracle.knobs")

ALL = "*"
HEALTH_STATES = ("healthy", "degraded", "down")
# The Oracle's own named checks; a failing one makes the service degraded (or down).
CHECKS = ("ephemeris", "name-tables", "cache")
# Status codes a caller may inject; OK is not an error.
ERROR_CODES = tuple(code.name for code in grpc.StatusCode if code is not grpc.StatusCode.OK)

T = TypeVar("T")


class KnobError(ValueError):
    """A knob value that cannot be used, with a sentence that says why."""


@dataclass(frozen=True)
class Delay:
    """Added latency: ``low``..``high`` seconds (uniform), for ``fraction`` of the calls."""

    low: float
    high: float
    fraction: float = 1.0

    def sample(self, rng: random.Random) -> float:
        """Seconds to wait for one call (0 for the calls outside ``fraction``)."""
        if self.fraction < 1.0 and rng.random() >= self.fraction:
            return 0.0
        return self.low if self.high == self.low else rng.uniform(self.low, self.high)

    def __str__(self) -> str:
        text = _format_duration(self.low)
        if self.high != self.low:
            text += ".." + _format_duration(self.high)
        if self.fraction < 1.0:
            text += f"@{self.fraction:g}"
        return text


def parse_duration(text: str) -> float:
    """``250ms``, ``2s`` or a bare number of seconds; zero or more, at most one hour."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)?\s*", text)
    if not match:
        raise KnobError(f"{text!r} is not a duration (e.g. 250ms, 2s, 1.5)")
    seconds = float(match.group(1)) / (1000.0 if match.group(2) == "ms" else 1.0)
    if seconds > 3600:
        raise KnobError(f"{text!r} is longer than an hour")
    return seconds


def _format_duration(seconds: float) -> str:
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


def parse_rate(text: str) -> float:
    """A share of the calls: ``0.25`` or ``25%``, from 0 to 1."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise KnobError(f"{text!r} is not a rate (e.g. 0.25 or 25%)") from None
    if not 0.0 <= value <= 1.0:
        raise KnobError(f"{text!r} is not between 0 and 1 (0% and 100%)")
    return value


def parse_delay(text: str) -> Delay:
    """``DURATION``, ``LOW..HIGH``, optionally ``@FRACTION``: ``100ms``, ``12s..15s@0.1``."""
    spec, _, share = text.partition("@")
    low_text, dots, high_text = spec.partition("..")
    low = parse_duration(low_text)
    high = parse_duration(high_text) if dots else low
    if high < low:
        raise KnobError(f"{text!r}: the upper bound is below the lower one")
    fraction = parse_rate(share) if share else 1.0
    return Delay(low, high, fraction)


def parse_error_code(text: str) -> str:
    """A gRPC status code name other than OK, e.g. ``INTERNAL`` or ``unavailable``."""
    name = text.strip().upper()
    if name not in ERROR_CODES:
        raise KnobError(f"{text!r} is not a gRPC error code ({', '.join(ERROR_CODES)})")
    return name


def parse_method_value(text: str, parse: Callable[[str], T]) -> tuple[str, T]:
    """``METHOD=VALUE`` or ``VALUE`` (every method); the method must be one of the eight."""
    method, eq, value = text.partition("=")
    if not eq:
        return ALL, parse(text)
    method = method.strip()
    _check_method(method)
    return method, parse(value)


def argument_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    """``parse`` for argparse/options: its KnobError becomes argparse's, keeping the sentence."""
    def wrapped(text: str) -> T:
        try:
            return parse(text)
        except KnobError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    wrapped.__name__ = getattr(parse, "__name__", "value")
    return wrapped


def _check_method(method: str) -> None:
    if method != ALL and method not in METHODS:
        raise KnobError(f"{method!r} is not a method of the Oracle ({', '.join(METHODS)}, or *)")


def parse_scenario(text: str) -> tuple[str, ...]:
    """``off``, ``cycle`` (healthy, errors, slow, degraded) or a comma list of phase names."""
    name = text.strip().lower()
    if name in ("", "off", "none"):
        return ()
    if name == "cycle":
        return tuple(PHASES)
    phases = tuple(p.strip() for p in name.split(",") if p.strip())
    for phase in phases:
        if phase not in PHASES:
            raise KnobError(f"{phase!r} is not a phase (off, cycle, or {', '.join(PHASES)})")
    return phases


@dataclass(frozen=True)
class Faults:
    """One setting of every knob. Maps are keyed by method name or ``*``; treat them as frozen."""

    error_rate: Mapping[str, float] = field(default_factory=dict)
    error_code: str = "INTERNAL"
    latency: Mapping[str, Delay] = field(default_factory=dict)
    health: str = "healthy"
    failing_check: str = "ephemeris"

    def error_rate_for(self, method: str) -> float:
        """The share of ``method``'s calls that fail."""
        return self.error_rate.get(method, self.error_rate.get(ALL, 0.0))

    def latency_for(self, method: str) -> Delay | None:
        """The delay added to ``method``'s calls, if any."""
        return self.latency.get(method, self.latency.get(ALL))

    def checks(self) -> dict[str, str]:
        """The named checks as the Oracle reports them: ``"ok"`` or what is wrong."""
        checks = {name: "ok" for name in CHECKS}
        if self.health == "degraded":
            checks[self.failing_check] = "failing: stale data (injected by the demo)"
        elif self.health == "down":
            checks[self.failing_check] = "failing: unreachable (injected by the demo)"
        return checks

    def to_json(self) -> dict[str, Any]:
        """The JSON form the control endpoint shows and accepts."""
        return {
            "error_rate": dict(self.error_rate),
            "error_code": self.error_code,
            "latency": {method: str(delay) for method, delay in self.latency.items()},
            "health": self.health,
            "failing_check": self.failing_check,
        }

    def patched(self, patch: Mapping[str, Any]) -> Faults:
        """A copy with the keys of ``patch`` replaced; each given knob replaces the old one whole.

        Raises :class:`KnobError` on an unknown key or a bad value, leaving nothing half-changed.
        """
        changes: dict[str, Any] = {}
        for key, value in patch.items():
            if key == "error_rate":
                changes[key] = _per_method(key, value, _rate_value)
            elif key == "latency":
                changes[key] = _per_method(key, value, _delay_value)
            elif key == "error_code":
                changes[key] = parse_error_code(_text(key, value))
            elif key == "health":
                health = _text(key, value).strip().lower()
                if health not in HEALTH_STATES:
                    raise KnobError(f"health must be one of {', '.join(HEALTH_STATES)}")
                changes[key] = health
            elif key == "failing_check":
                name = _text(key, value).strip()
                if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,39}", name):
                    raise KnobError("failing_check must be a short lower-case name")
                changes[key] = name
            else:
                raise KnobError(f"unknown knob {key!r}")
        return replace(self, **changes)


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise KnobError(f"{key} must be a string")
    return value


def _rate_value(value: Any) -> float:
    if isinstance(value, bool):
        raise KnobError("a rate must be a number from 0 to 1 or a string like '25%'")
    if isinstance(value, int | float):
        return parse_rate(repr(value))
    if isinstance(value, str):
        return parse_rate(value)
    raise KnobError("a rate must be a number from 0 to 1 or a string like '25%'")


def _delay_value(value: Any) -> Delay:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise KnobError("a delay must be a string like '250ms' or '12s..15s@0.1'")
    return parse_delay(value if isinstance(value, str) else str(value))


def _per_method(key: str, value: Any, parse: Callable[[Any], T]) -> dict[str, T]:
    """A JSON object ``{method: value}``, or a bare value meaning every method."""
    if not isinstance(value, dict):
        return {ALL: parse(value)}
    result: dict[str, T] = {}
    for method, item in value.items():
        _check_method(method)
        result[method] = parse(item)
    return result


# Scenario phases: each turns the baseline into what that phase shows. "slow" delays 10 % of the
# calls by 12-15 s, which puts every method's P95 above 10 s (histogram_quantile lands near 15 s).
SLOW = Delay(12.0, 15.0, 0.1)
ERROR_SHARE = 0.25
PHASES: dict[str, Callable[[Faults], Faults]] = {
    "healthy": lambda base: base,
    "errors": lambda base: replace(base, error_rate={ALL: ERROR_SHARE}),
    "slow": lambda base: replace(base, latency={ALL: SLOW}),
    "degraded": lambda base: replace(base, health="degraded"),
}


class Knobs:
    """The current :class:`Faults` of a running Oracle, and the scenario that changes them.

    ``faults`` is read on every RPC without a lock; every change builds a new object and swaps
    the reference. ``on_change(faults)`` is called after each change (e.g. to update the
    standard gRPC health service).
    """

    def __init__(
        self,
        baseline: Faults,
        scenario: tuple[str, ...] = (),
        phase_seconds: float = 120.0,
        on_change: Callable[[Faults], None] | None = None,
    ) -> None:
        self._start = (baseline, scenario, phase_seconds)
        self._baseline = baseline
        self._scenario = scenario
        self._phase_seconds = phase_seconds
        self._scenario_started = time.monotonic()
        self._phase = ""
        self._on_change = on_change
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._thread: threading.Thread | None = None
        self.faults = baseline
        self._apply()

    # -- reading -------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything the control endpoint shows: current faults, baseline and scenario."""
        with self._lock:
            scenario: dict[str, Any] = {
                "phases": list(self._scenario) or "off",
                "phase_seconds": self._phase_seconds,
            }
            if self._scenario:
                scenario["phase"] = self._phase
                scenario["next_phase_in_seconds"] = round(self._until_next_phase(), 1)
            return {
                "faults": self.faults.to_json(),
                "baseline": self._baseline.to_json(),
                "scenario": scenario,
            }

    # -- changing ------------------------------------------------------------------------------

    def update(self, patch: Mapping[str, Any]) -> dict[str, Any]:
        """Patch the baseline and/or the scenario; returns :meth:`state`. All or nothing."""
        knob_patch = {k: v for k, v in patch.items() if k not in ("scenario", "phase_seconds")}
        baseline = self._baseline.patched(knob_patch)
        scenario = self._scenario
        if "scenario" in patch:
            scenario = parse_scenario(_text("scenario", patch["scenario"]))
        phase_seconds = self._phase_seconds
        if "phase_seconds" in patch:
            value = patch["phase_seconds"]
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                1 <= value <= 86400
            ):
                raise KnobError("phase_seconds must be a number of seconds from 1 to 86400")
            phase_seconds = float(value)
        with self._lock:
            restart = scenario != self._scenario or phase_seconds != self._phase_seconds
            self._baseline, self._scenario, self._phase_seconds = baseline, scenario, phase_seconds
            if restart:
                self._scenario_started = time.monotonic()
            self._apply()
            self._wake.notify_all()
        log.info("knobs changed", extra={"knobs": dict(patch)})
        return self.state()

    def reset(self) -> dict[str, Any]:
        """Back to the start-up settings; a start-up scenario begins again at its first phase."""
        with self._lock:
            self._baseline, self._scenario, self._phase_seconds = self._start
            self._scenario_started = time.monotonic()
            self._apply()
            self._wake.notify_all()
        log.info("knobs reset")
        return self.state()

    # -- the scenario thread -------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread that moves the scenario from phase to phase."""
        self._thread = threading.Thread(target=self._loop, name="oracle-scenario", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the scenario thread."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        with self._lock:
            while not self._closed:
                wait = self._until_next_phase() + 0.01 if self._scenario else None
                self._wake.wait(timeout=wait)
                if not self._closed:
                    self._apply()

    def _until_next_phase(self) -> float:
        elapsed = time.monotonic() - self._scenario_started
        return self._phase_seconds - elapsed % self._phase_seconds

    def _apply(self) -> None:
        """Recompute ``faults`` from baseline and phase; call with the lock held (or in init)."""
        phase = ""
        faults = self._baseline
        if self._scenario:
            elapsed = time.monotonic() - self._scenario_started
            phase = self._scenario[int(elapsed // self._phase_seconds) % len(self._scenario)]
            faults = PHASES[phase](self._baseline)
        if phase != self._phase and phase:
            log.info("scenario phase %s", phase, extra={"scenario_phase": phase,
                                                        "phase_seconds": self._phase_seconds})
        self._phase = phase
        changed = faults != self.faults
        self.faults = faults
        if changed and self._on_change is not None:
            self._on_change(faults)
