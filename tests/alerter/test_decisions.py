"""Deciding what is due: cooldown edges, recoveries, claims and their rollback, pruning."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.alerter.decisions import MAX_ALERTS, RETENTION, plan, settle
from sidecar.alerter.rules import Evaluation, Finding, Verdict
from sidecar.alerter.state import Alert, Claim, State

COOLDOWN = 300.0
T = 1_800_000_000.0  # a unix time


def finding(kind: str = "degraded", target: str = "oracle-a", rpc: str | None = None
            ) -> Finding:
    severity = "CRITICAL" if kind in ("unreachable", "degraded") else "WARNING"
    return Finding(kind, severity, target, rpc, title=f"{target} {kind}",
                   summary=f"{kind} on {target}", namespace="oracle")


def failing(*findings: Finding, target: str = "oracle-a") -> Verdict:
    critical = any(f.severity == "CRITICAL" for f in findings)
    return Verdict(target, "failing" if critical else "ok", findings, "broken", "oracle", True)


def ok(target: str = "oracle-a") -> Verdict:
    return Verdict(target, "ok", (), "healthy", "oracle", True)


def ev(*verdicts: Verdict, complete: bool = True) -> Evaluation:
    return Evaluation({v.target: v for v in verdicts}, complete)


def alert(kind: str = "degraded", target: str = "oracle-a", rpc: str | None = None,
          open: bool = True, opened: float = T, last_sent: float | None = T,
          cooldown_until: float | None = T + COOLDOWN) -> Alert:
    severity = "CRITICAL" if kind in ("unreachable", "degraded") else "WARNING"
    return Alert(kind, severity, target, rpc, open, opened, last_sent, cooldown_until,
                 f"{kind} on {target}")


def state_of(*alerts: Alert, claims: dict[str, Claim] | None = None) -> State:
    return State(T, {a.key: a for a in alerts}, claims or {})


def actions(result: Any) -> list[tuple[str, str]]:
    return [(d.action, d.key) for d in result.decisions]


KEY = "degraded|oracle-a|-"

COOLDOWN_CASES = [
    # (id, prior alert or None, now, expected action)
    ("new-alert-is-due", None, T, "due"),
    ("open-just-before-cooldown-ends", alert(), T + COOLDOWN - 0.001, "suppressed"),
    ("open-when-cooldown-ends", alert(), T + COOLDOWN, "due"),
    ("open-just-after-cooldown", alert(), T + COOLDOWN + 0.001, "due"),
    ("closed-reopens-just-before-cooldown-ends", alert(open=False), T + COOLDOWN - 0.001,
     "suppressed"),
    ("closed-reopens-just-after-cooldown", alert(open=False), T + COOLDOWN + 0.001, "due"),
    ("open-but-never-delivered", alert(last_sent=None, cooldown_until=None), T + 1, "due"),
]


@pytest.mark.parametrize(("case", "prior", "now", "expected"), COOLDOWN_CASES,
                         ids=[c[0] for c in COOLDOWN_CASES])
def test_cooldown_table(case: str, prior: Alert | None, now: float, expected: str) -> None:
    """The same alert is due again exactly when its cooldown has ended, not a moment before."""
    state = state_of(prior) if prior else State()
    result = plan(state, ev(failing(finding())), now, COOLDOWN, "run-1", now + 60)
    assert actions(result) == [(expected, KEY)]
    stored = result.state.alerts[KEY]
    assert stored.open
    if expected == "due":
        assert len(result.notices) == 1
        assert (stored.last_sent, stored.cooldown_until) == (now, now + COOLDOWN)
        assert result.state.claims[KEY].run == "run-1"
    else:
        assert result.notices == ()
        assert (stored.last_sent, stored.cooldown_until) == (T, T + COOLDOWN)
        assert KEY not in result.state.claims


def test_reminder_after_cooldown_says_still() -> None:
    """An alert still holding after its cooldown is a reminder with its original start."""
    result = plan(state_of(alert(opened=T - 100)), ev(failing(finding())), T + COOLDOWN,
                  COOLDOWN, "r", T + 400)
    (notice,) = result.notices
    assert notice.reminder and notice.opened == T - 100


def test_reopened_within_cooldown_keeps_new_opened_time() -> None:
    """A closed alert that fires again opens anew (opened = now) even when suppressed."""
    result = plan(state_of(alert(open=False)), ev(failing(finding())), T + 10, COOLDOWN, "r",
                  T + 100)
    assert result.state.alerts[KEY].opened == T + 10
    assert not result.state.alerts[KEY].notified


def test_recovery_sends_one_info_with_the_incident_start() -> None:
    """A notified CRITICAL whose target is healthy again closes with one INFO notice."""
    state = state_of(alert(opened=T - 600),
                     alert("unreachable", opened=T - 900, last_sent=T - 900))
    result = plan(state, ev(ok()), T + 60, COOLDOWN, "r", T + 120)
    (notice,) = result.notices
    assert (notice.level, notice.kind, notice.opened) == ("INFO", "recovered", T - 900)
    assert set(notice.keys) == {KEY, "unreachable|oracle-a|-"}
    assert not any(a.open for a in result.state.alerts.values())
    assert set(result.state.claims) == set(notice.keys)
    assert sorted(a for a, _ in actions(result)) == ["recovered", "recovered"]


def test_recovery_without_a_delivered_alert_is_silent() -> None:
    """A CRITICAL that was never delivered in this incident closes without an INFO."""
    state = state_of(alert(opened=T + 5, last_sent=T))  # reopened after its last delivery
    result = plan(state, ev(ok()), T + 60, COOLDOWN, "r", T + 120)
    assert result.notices == ()
    assert actions(result) == [("closed", KEY)]
    assert not result.state.alerts[KEY].open


def test_warning_that_clears_closes_silently() -> None:
    """A WARNING has no recovery notice; it just closes."""
    warn = alert("error_rate", rpc="S/M")
    result = plan(state_of(warn), ev(ok()), T + 60, COOLDOWN, "r", T + 120)
    assert result.notices == ()
    assert actions(result) == [("closed", warn.key)]


def test_unreachable_then_degraded_keeps_the_incident_start() -> None:
    """A CRITICAL replaced by another closes silently; the new one keeps the incident start."""
    state = state_of(alert("unreachable", opened=T - 300, last_sent=T - 300))
    result = plan(state, ev(failing(finding("degraded"))), T, COOLDOWN, "r", T + 60)
    assert sorted(actions(result)) == [("closed", "unreachable|oracle-a|-"), ("due", KEY)]
    assert result.state.alerts[KEY].opened == T - 300
    assert [n.kind for n in result.notices] == ["degraded"]


@pytest.mark.parametrize(("verdicts", "complete", "expected"), [
    ([Verdict("oracle-a", "skipped", note="terminating")], True, "untouched"),
    ([], False, "untouched"),
    ([], True, "gone"),
])
def test_alerts_of_skipped_unknown_or_gone_targets(verdicts: list[Verdict], complete: bool,
                                                  expected: str) -> None:
    """Skipped targets and an unknown target list leave alerts alone; a gone target recovers."""
    state = state_of(alert())
    result = plan(state, ev(*verdicts, complete=complete), T + 60, COOLDOWN, "r", T + 120)
    if expected == "untouched":
        assert result.state.alerts == state.alerts and result.notices == ()
    else:
        (notice,) = result.notices
        assert notice.gone and notice.level == "INFO"


def test_live_claim_of_another_run_is_left_alone() -> None:
    """An alert another run claimed (and may be sending) is neither sent nor changed."""
    claim = Claim("other", T + 30, True, None, None)
    state = state_of(alert(last_sent=None, cooldown_until=None), claims={KEY: claim})
    result = plan(state, ev(failing(finding())), T, COOLDOWN, "me", T + 60)
    assert result.notices == ()
    assert actions(result) == [("in_flight", KEY)]
    assert result.state.claims == {KEY: claim}


def test_claim_of_a_dead_run_is_rolled_back_and_the_alert_is_due() -> None:
    """A claim past its ``until`` belongs to a run that died: roll back, then send again."""
    claim = Claim("dead", T - 1, True, None, None)
    state = state_of(alert(last_sent=T - 50, cooldown_until=T - 50 + COOLDOWN),
                     claims={KEY: claim})
    result = plan(state, ev(failing(finding())), T, COOLDOWN, "me", T + 60)
    assert actions(result) == [("claim_expired", KEY), ("due", KEY)]
    assert result.state.claims[KEY].run == "me"
    assert len(result.notices) == 1


def test_two_plans_on_the_same_state_send_once() -> None:
    """The second run, reading the first run's claim, does not send the alert again."""
    first = plan(State(), ev(failing(finding())), T, COOLDOWN, "a", T + 60)
    second = plan(first.state, ev(failing(finding())), T + 0.5, COOLDOWN, "b", T + 60)
    assert len(first.notices) == 1 and second.notices == ()
    assert actions(second) == [("in_flight", KEY)]


@pytest.mark.parametrize(("delivered", "due_next_run"), [(True, False), (False, True)])
def test_settle_records_or_rolls_back(delivered: bool, due_next_run: bool) -> None:
    """A delivered alert keeps its cooldown; a failed one is put back and is due next run."""
    first = plan(State(), ev(failing(finding())), T, COOLDOWN, "a", T + 60)
    settled = settle(first.state, "a", [(KEY, delivered)])
    assert settled.claims == {}
    stored = settled.alerts[KEY]
    assert stored.open
    assert stored.last_sent == (T if delivered else None)
    later = plan(settled, ev(failing(finding())), T + 30, COOLDOWN, "b", T + 90)
    assert bool(later.notices) is due_next_run


def test_failed_recovery_notice_is_retried() -> None:
    """An INFO whose delivery failed re-opens its alerts, so the next run sends it again."""
    first = plan(state_of(alert()), ev(ok()), T + 60, COOLDOWN, "a", T + 120)
    settled = settle(first.state, "a", [(KEY, False)])
    assert settled.alerts[KEY].open
    again = plan(settled, ev(ok()), T + 120, COOLDOWN, "b", T + 180)
    assert [n.level for n in again.notices] == ["INFO"]


def test_settle_leaves_a_claim_taken_over_by_another_run() -> None:
    """A run whose claim expired and was taken over does not touch the new claim."""
    state = state_of(alert(), claims={KEY: Claim("b", T + 60, True, None, None)})
    assert settle(state, "a", [(KEY, False)]) == state


def test_old_closed_alerts_are_forgotten() -> None:
    """Closed alerts are dropped after the retention; open ones and recent ones stay."""
    old = alert("latency", rpc="S/old", open=False, opened=T - RETENTION - 400,
                last_sent=T - RETENTION - 400, cooldown_until=T - RETENTION - 100)
    recent = alert("latency", rpc="S/recent", open=False)
    still_open = alert("latency", rpc="S/open", opened=T - 10 * RETENTION,
                       last_sent=T - 10 * RETENTION, cooldown_until=T - 10 * RETENTION)
    result = plan(state_of(old, recent, still_open),
                  ev(failing(finding("latency", rpc="S/open"))), T, COOLDOWN, "r", T + 60)
    assert set(result.state.alerts) == {recent.key, still_open.key}


def test_state_size_is_capped_oldest_closed_first() -> None:
    """At most MAX_ALERTS alerts are kept; the oldest closed ones go first."""
    many = [alert("latency", rpc=f"S/m{i}", open=False, opened=T - i, last_sent=T - i,
                  cooldown_until=T - i) for i in range(MAX_ALERTS + 5)]
    result = plan(state_of(*many), ev(ok()), T, COOLDOWN, "r", T + 60)
    assert len(result.state.alerts) == MAX_ALERTS
    assert "latency|oracle-a|S/m0" in result.state.alerts
    assert f"latency|oracle-a|S/m{MAX_ALERTS + 4}" not in result.state.alerts


def test_notices_are_ordered_most_severe_first() -> None:
    """CRITICAL before WARNING before INFO, so a short deadline drops the least urgent."""
    state = state_of(alert(target="oracle-b"))
    result = plan(state, ev(failing(finding("latency", rpc="S/M"), finding("degraded")),
                            ok("oracle-b")), T, COOLDOWN, "r", T + 60)
    assert [n.level for n in result.notices] == ["CRITICAL", "WARNING", "INFO"]
    assert result.state.updated == T
