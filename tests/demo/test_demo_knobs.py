"""The demo Oracle's knobs: text forms, all-or-nothing patches, and the scenario's phases."""

from __future__ import annotations

import random
import threading

import pytest

from sidecar.demo.knobs import (
    ALL,
    SLOW,
    Delay,
    Faults,
    KnobError,
    Knobs,
    parse_delay,
    parse_duration,
    parse_method_value,
    parse_rate,
    parse_scenario,
)


@pytest.mark.parametrize(("text", "delay"), [
    ("250ms", Delay(0.25, 0.25)),
    ("2s", Delay(2.0, 2.0)),
    ("1.5", Delay(1.5, 1.5)),
    ("100ms..2s", Delay(0.1, 2.0)),
    ("12s..15s@0.1", Delay(12.0, 15.0, 0.1)),
    ("12s@25%", Delay(12.0, 12.0, 0.25)),
])
def test_delay_text_forms(text, delay):
    """Fixed, uniform and partial delays parse and print back in the same form."""
    assert parse_delay(text) == delay
    assert parse_delay(str(delay)) == delay


@pytest.mark.parametrize("text", ["", "fast", "-1s", "2s..1s", "1s@2", "1h", "3601s", "1s@x"])
def test_bad_delays_are_refused_with_a_reason(text):
    """A delay that cannot be used raises KnobError with a sentence, never a bare ValueError."""
    with pytest.raises(KnobError, match=r"\w+ \w+"):
        parse_delay(text)


def test_rates_durations_and_methods():
    """Rates take fractions or percents, durations ms or s, and methods must be the Oracle's."""
    assert parse_rate("25%") == 0.25
    assert parse_rate("0.1") == 0.1
    assert parse_duration("250ms") == 0.25
    with pytest.raises(KnobError, match="between 0 and 1"):
        parse_rate("1.5")
    assert parse_method_value("GetReading=0.2", parse_rate) == ("GetReading", 0.2)
    assert parse_method_value("0.2", parse_rate) == (ALL, 0.2)
    with pytest.raises(KnobError, match="not a method of the Oracle"):
        parse_method_value("GetNothing=0.2", parse_rate)


def test_scenario_names():
    """``cycle`` is the four phases in order; a comma list picks some; unknown names fail."""
    assert parse_scenario("cycle") == ("healthy", "errors", "slow", "degraded")
    assert parse_scenario("off") == ()
    assert parse_scenario("slow, degraded") == ("slow", "degraded")
    with pytest.raises(KnobError, match="not a phase"):
        parse_scenario("healthy,broken")


def test_a_named_method_wins_over_the_wildcard():
    """Per-method settings override ``*``; methods without either get nothing."""
    faults = Faults(error_rate={ALL: 0.1, "GetReading": 0.5},
                    latency={"HealthCheck": Delay(1, 1)})
    assert faults.error_rate_for("GetReading") == 0.5
    assert faults.error_rate_for("SuggestRange") == 0.1
    assert faults.latency_for("HealthCheck") == Delay(1, 1)
    assert faults.latency_for("GetReading") is None


def test_partial_delay_hits_its_share_of_calls():
    """``@0.1`` delays about a tenth of the calls, each within the bounds."""
    rng = random.Random(7)
    samples = [SLOW.sample(rng) for _ in range(10_000)]
    slow = [s for s in samples if s > 0]
    assert 800 < len(slow) < 1200
    assert all(12.0 <= s <= 15.0 for s in slow)


def test_a_bad_patch_changes_nothing():
    """A patch with one bad value is refused whole; a good one replaces only its keys."""
    faults = Faults(error_rate={"GetReading": 0.2})
    with pytest.raises(KnobError):
        faults.patched({"health": "degraded", "latency": {"GetReading": "soon"}})
    with pytest.raises(KnobError, match="unknown knob"):
        faults.patched({"colour": "red"})
    changed = faults.patched({"health": "degraded", "latency": "5ms"})
    assert changed.health == "degraded"
    assert changed.latency == {ALL: Delay(0.005, 0.005)}
    assert changed.error_rate == {"GetReading": 0.2}
    assert faults.health == "healthy"


def test_degraded_health_names_the_failing_check():
    """Degraded and down fail the configured named check; healthy reports every check ok."""
    assert set(Faults().checks().values()) == {"ok"}
    checks = Faults(health="degraded", failing_check="cache").checks()
    assert checks["cache"].startswith("failing")
    assert checks["ephemeris"] == "ok"


def test_scenario_cycles_through_every_phase_and_back():
    """With short phases, the knobs go healthy -> errors -> slow -> degraded -> healthy."""
    seen: list[str] = []
    changed = threading.Event()

    def on_change(faults: Faults) -> None:
        if faults.health == "degraded":
            seen.append("degraded")
        elif faults.latency:
            seen.append("slow")
        elif faults.error_rate:
            seen.append("errors")
        else:
            seen.append("healthy")
        changed.set()

    knobs = Knobs(Faults(), parse_scenario("cycle"), phase_seconds=0.15, on_change=on_change)
    knobs.start()
    try:
        for _ in range(20):
            if len(seen) >= 4:
                break
            changed.wait(1)
            changed.clear()
    finally:
        knobs.close()
    assert seen[:4] == ["errors", "slow", "degraded", "healthy"]


def test_update_patches_the_baseline_under_a_running_scenario():
    """Control-endpoint changes go to the baseline; the scenario's phase still layers on top."""
    knobs = Knobs(Faults(), ("degraded",), phase_seconds=3600)
    state = knobs.update({"error_rate": {"GetReading": 0.5}})
    assert state["baseline"]["error_rate"] == {"GetReading": 0.5}
    assert knobs.faults.health == "degraded"
    assert knobs.faults.error_rate_for("GetReading") == 0.5
    assert knobs.update({"scenario": "off"})["faults"]["health"] == "healthy"
    with pytest.raises(KnobError, match="phase_seconds"):
        knobs.update({"phase_seconds": 0})
    assert knobs.reset()["scenario"]["phases"] == ["degraded"]
