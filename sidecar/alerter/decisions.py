"""What to send now: the findings of a run against the alert state and the cooldown.

Pure functions, the clock passed in. :func:`plan` turns (state, evaluation, now) into the
notices due now, a :class:`Decision` per alert considered (for the logs), and the new state in
which every due notice is *claimed*; :func:`settle` then records how each delivery went.

- A finding whose alert is closed or new opens it; it is due unless ``now < cooldown_until``.
  An open alert is due again (a reminder) once its cooldown is over.
- Delivering sets ``last_sent = now`` and ``cooldown_until = now + cooldown``. A delivery that
  failed puts both back, so the next run tries again.
- An open alert whose condition is gone closes. When the target is healthy again (or gone) and
  a CRITICAL of it was delivered in this incident, one INFO "recovered" says how long it lasted.
  A CRITICAL that clears while another CRITICAL of the same target holds (unreachable, then
  degraded) closes silently and the new one keeps the incident's start.
- One message per severity per run (see :mod:`sidecar.alerter.grouping`): when a message of a
  severity is due, the open alerts of that severity still within their cooldown join it
  ("grouped"), and their cooldowns restart with it.
- An alert claimed by another run that is still within its claim is left alone ("in flight").
  A claim past its ``until`` belongs to a run that died: it is rolled back and the alert is due.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from sidecar.alerter.rules import Evaluation, Finding
from sidecar.alerter.state import SUMMARY_LIMIT, Alert, Claim, State

__all__ = ["MAX_ALERTS", "RETENTION", "Decision", "Notice", "Plan", "plan", "settle"]

RETENTION = 24 * 3600.0  # a closed alert is forgotten this long after its last event
MAX_ALERTS = 1000  # beyond this, the oldest closed alerts are forgotten first
_ORDER = {"CRITICAL": 0, "WARNING": 1, "INFO": 2}


@dataclass(frozen=True, slots=True)
class Notice:
    """One message due now. ``keys`` are the alerts it claims (several for a recovery)."""

    level: str  # CRITICAL | WARNING | INFO
    target: str
    keys: tuple[str, ...]
    namespace: str | None = None
    is_pod: bool = False
    finding: Finding | None = None  # CRITICAL / WARNING: what holds now
    opened: float | None = None  # when the alert (or for INFO, the incident) began
    reminder: bool = False  # the alert was delivered before in this incident; still holds
    was: tuple[str, ...] = ()  # INFO: summaries of the alerts that are over
    gone: bool = False  # INFO: the target no longer exists (pod replaced or scaled away)

    @property
    def kind(self) -> str:
        return self.finding.kind if self.finding else "recovered"

    @property
    def summary(self) -> str:
        if self.finding:
            return self.finding.summary
        return "gone: " + "; ".join(self.was) if self.gone else "recovered: " + "; ".join(self.was)


@dataclass(frozen=True, slots=True)
class Decision:
    """What was decided for one alert, and why: one log line each."""

    action: str  # due | grouped | suppressed | in_flight | closed | recovered | claim_expired
    key: str
    target: str
    kind: str
    severity: str
    reason: str
    cooldown_until: float | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """The result of :func:`plan`: the new state (claims included) and what to send."""

    state: State
    notices: tuple[Notice, ...]
    decisions: tuple[Decision, ...]


def _decision(action: str, alert: Alert | Finding, reason: str,
              cooldown_until: float | None = None) -> Decision:
    return Decision(action, alert.key, alert.target, alert.kind, alert.severity, reason,
                    cooldown_until)


def plan(state: State, evaluation: Evaluation, now: float, cooldown: float, run: str,
         claim_until: float) -> Plan:
    """Decide what is due at ``now``; due notices are claimed for ``run`` until ``claim_until``."""
    s = state
    decisions: list[Decision] = []
    notices: list[Notice] = []

    # Claims left by runs that died: put the alert back as it was, so it is due again.
    for key, claim in sorted(s.claims.items()):
        if claim.until > now:
            continue
        alert = s.alerts.get(key)
        s = s.with_claim(key, None)
        if alert is not None:
            s = s.with_alert(replace(alert, open=claim.open, last_sent=claim.last_sent,
                                     cooldown_until=claim.cooldown_until))
            decisions.append(_decision("claim_expired", alert,
                                       f"run {claim.run} claimed it and did not finish; its "
                                       f"delivery counts as failed"))
    busy = set(s.claims)  # claimed by a run that may still be sending

    # Where each target's incident began: its earliest open CRITICAL.
    incident: dict[str, float] = {}
    for alert in s.alerts.values():
        if alert.open and alert.severity == "CRITICAL":
            incident[alert.target] = min(incident.get(alert.target, alert.opened), alert.opened)

    findings = {f.key: f for f in evaluation.findings}
    held: list[tuple[Finding, Alert, bool]] = []  # within the cooldown: finding, alert, reminder
    for key, finding in sorted(findings.items()):
        old = s.alerts.get(key)
        if key in busy:
            decisions.append(_decision("in_flight", finding, "another run is delivering it"))
            continue
        was_open = old is not None and old.open
        if old is not None and was_open:
            opened = old.opened
        elif finding.severity == "CRITICAL" and finding.target in incident:
            opened = min(incident[finding.target], now)
        else:
            opened = now
        alert = Alert(finding.kind, finding.severity, finding.target, finding.rpc, True, opened,
                      old.last_sent if old else None, old.cooldown_until if old else None,
                      finding.summary[:SUMMARY_LIMIT], old.sent_via if old else None)
        reminder = was_open and old is not None and old.notified
        if alert.cooldown_until is not None and now < alert.cooldown_until:
            s = s.with_alert(alert)
            held.append((finding, alert, reminder))
            continue
        s = _claimed(s, alert, now, cooldown, run, claim_until)
        notices.append(_notice(finding, evaluation, opened, reminder))
        decisions.append(_decision("due", alert, "still holds after the cooldown" if reminder
                                   else "new", now + cooldown))

    # One message per severity per run: an alert within its cooldown joins the message of its
    # severity when that message goes out anyway (its cooldown restarts with it), so alerts
    # that started at different times fall into step instead of each paging on its own.
    going = {n.level for n in notices}
    for finding, alert, reminder in held:
        if alert.severity in going:
            s = _claimed(s, alert, now, cooldown, run, claim_until)
            notices.append(_notice(finding, evaluation, alert.opened, reminder))
            decisions.append(_decision("grouped", alert, f"within its cooldown, but this run "
                                       f"sends a {alert.severity} message anyway",
                                       now + cooldown))
        else:
            decisions.append(_decision("suppressed", alert, "within the cooldown",
                                       alert.cooldown_until))

    # Open alerts whose condition is gone.
    by_target: dict[str, list[Alert]] = {}
    for key, alert in sorted(s.alerts.items()):
        if alert.open and key not in findings:
            by_target.setdefault(alert.target, []).append(alert)
    for target, alerts in by_target.items():
        verdict = evaluation.verdicts.get(target)
        if verdict is None and not evaluation.complete:
            continue  # the target list is unknown this time: nothing can be said
        if verdict is not None and verdict.status == "skipped":
            continue  # not judged this time (starting, terminating): keep as it is
        gone = verdict is None
        criticals = [a for a in alerts if a.severity == "CRITICAL"]
        if any(a.key in busy for a in criticals):
            for alert in criticals:
                decisions.append(_decision("in_flight", alert, "another run is delivering it"))
            criticals = []
        for alert in alerts:
            if alert.severity != "CRITICAL" and alert.key not in busy:
                s = s.with_alert(replace(alert, open=False))
                decisions.append(_decision("closed", alert, "gone" if gone else "cleared"))
        if not criticals:
            continue
        if verdict is not None and verdict.status == "failing":
            for alert in criticals:
                s = s.with_alert(replace(alert, open=False))
                decisions.append(_decision("closed", alert, f"cleared, but the target still has "
                                           f"a critical problem: {verdict.note}"))
            continue
        if not any(a.notified for a in criticals):
            for alert in criticals:
                s = s.with_alert(replace(alert, open=False))
                decisions.append(_decision("closed", alert, "recovered; its alert was never "
                                           "delivered (cooldown), so no recovery notice"))
            continue
        for alert in criticals:
            s = s.with_alert(replace(alert, open=False))
            s = s.with_claim(alert.key, Claim(run, claim_until, True, alert.last_sent,
                                              alert.cooldown_until))
            decisions.append(_decision("recovered", alert, "gone" if gone else "healthy again"))
        notices.append(Notice(
            "INFO", target, tuple(a.key for a in criticals),
            verdict.namespace if verdict else None, verdict.is_pod if verdict else False,
            opened=min(a.opened for a in criticals), was=tuple(a.summary for a in criticals),
            gone=gone))

    s = _pruned(s, now)
    notices.sort(key=lambda n: (_ORDER[n.level], n.target, n.keys))
    return Plan(replace(s, updated=now), tuple(notices), tuple(decisions))


def _claimed(s: State, alert: Alert, now: float, cooldown: float, run: str,
             claim_until: float) -> State:
    """``alert`` delivered now (optimistically), with a claim that remembers it as it was."""
    s = s.with_alert(replace(alert, last_sent=now, cooldown_until=now + cooldown))
    return s.with_claim(alert.key, Claim(run, claim_until, True, alert.last_sent,
                                         alert.cooldown_until))


def _notice(finding: Finding, evaluation: Evaluation, opened: float, reminder: bool) -> Notice:
    verdict = evaluation.verdicts.get(finding.target)
    return Notice(finding.severity, finding.target, (finding.key,), finding.namespace,
                  verdict.is_pod if verdict else False, finding, opened=opened, reminder=reminder)


def _pruned(state: State, now: float) -> State:
    """Forget closed, unclaimed alerts after RETENTION; keep at most MAX_ALERTS."""
    def last_event(a: Alert) -> float:
        return max(a.opened, a.last_sent or 0.0, a.cooldown_until or 0.0)

    closed = sorted((a for a in state.alerts.values()
                     if not a.open and a.key not in state.claims), key=last_event)
    drop = {a.key for a in closed if last_event(a) < now - RETENTION}
    excess = len(state.alerts) - len(drop) - MAX_ALERTS
    if excess > 0:
        drop |= {a.key for a in [a for a in closed if a.key not in drop][:excess]}
    return state.without_alerts(drop) if drop else state


def settle(state: State, run: str, outcomes: Iterable[tuple[str, bool]],
           via: str = "telegram") -> State:
    """Record deliveries: a delivered claim is dropped; a failed one is rolled back.

    ``via`` is how the delivered ones went out (``telegram``, or ``log`` without a bot token).

    A claim that is no longer ``run``'s (it expired and another run took it over) is left alone.
    """
    s = state
    for key, delivered in outcomes:
        claim = s.claims.get(key)
        if claim is None or claim.run != run:
            continue
        s = s.with_claim(key, None)
        alert = s.alerts.get(key)
        if delivered and alert is not None:
            if alert.last_sent != claim.last_sent:  # this delivery is its last_sent
                s = s.with_alert(replace(alert, sent_via=via))
        elif alert is not None:
            s = s.with_alert(replace(alert, open=alert.open or claim.open,
                                     last_sent=claim.last_sent,
                                     cooldown_until=claim.cooldown_until))
    return s
