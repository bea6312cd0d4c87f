"""The alert rules: what is wrong now, from one ``/api/v1/snapshot`` answer per target.

Pure functions of the answers and the thresholds; no state, no clock, no I/O. Each target gets a
:class:`Verdict`: ``ok`` (reachable, healthy and ready, so its CRITICAL alerts are over; WARNING
findings may still hold), ``failing`` (a CRITICAL finding holds), or ``skipped`` (not judged this
time: a pod that is not running or is being deleted, or a sidecar that just started and has no
report yet), whose alerts are left as they are.

================  ========  ==================================================================
kind              severity  fires when
================  ========  ==================================================================
``unreachable``   CRITICAL  the sidecar does not answer a snapshot; or no pod of the selector
                            is running
``degraded``      CRITICAL  health ``degraded`` / ``down`` (or ``unknown``), or not ready
``error_rate``    WARNING   per RPC: errors / requests > ``error_rate_percent`` over the window,
                            with at least ``min_requests`` requests in it (all RPCs together
                            when no single RPC qualifies)
``latency``       WARNING   per RPC: P95 > ``p95_seconds`` over the window, with at least
                            ``min_requests`` requests in it
================  ========  ==================================================================
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from sidecar.alerter.state import alert_key
from sidecar.targets import Fetched, Target

__all__ = [
    "WINDOWS",
    "Evaluation",
    "Finding",
    "Thresholds",
    "Verdict",
    "evaluate",
    "judge",
    "judged",
    "no_running_pod",
    "selector_target",
]

WINDOWS = ("1m", "5m", "1h")
SNAPSHOT_PATH = "/api/v1/snapshot"
_TEXT = 300  # characters of any one value taken from a sidecar's answer


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The numbers the rules compare against (flags / env / chart values)."""

    error_rate_percent: float = 5.0
    p95_seconds: float = 10.0
    window: str = "5m"
    min_requests: int = 20
    # A sidecar younger than this that has never heard from any process is "starting". Its
    # status is "unknown" only then: once a process has reported and left (exited, expired),
    # the sidecar says "down", so an Oracle that dies in its first minute is alerted on.
    startup_grace: float = 60.0


@dataclass(frozen=True, slots=True)
class Finding:
    """One alert condition that holds now. Texts are plain (the message escapes them)."""

    kind: str
    severity: str
    target: str
    rpc: str | None
    title: str  # what is wrong, in a few words, without the level
    summary: str  # one line for the state and the logs
    facts: tuple[tuple[str, str], ...] = ()  # (label, value) lines of the message
    namespace: str | None = None
    cause: str = ""  # what findings of this kind share, for a grouped title: "P95 above 10 s"
    item: str = ""  # one line naming the RPC (if any) and its figure, for a grouped message

    @property
    def cause_text(self) -> str:
        return self.cause or self.kind.replace("_", " ")

    @property
    def item_text(self) -> str:
        return self.item or self.summary

    @property
    def key(self) -> str:
        return alert_key(self.kind, self.target, self.rpc)


Status = Literal["ok", "failing", "skipped"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one target looks like now."""

    target: str
    status: Status
    findings: tuple[Finding, ...] = ()
    note: str = ""  # why skipped, or a short description
    namespace: str | None = None
    is_pod: bool = False


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The verdicts of one run. ``complete``: every target that exists has a verdict.

    When complete, an alert whose target has no verdict belongs to a target that is gone.
    """

    verdicts: dict[str, Verdict] = field(default_factory=dict)
    complete: bool = True

    @property
    def findings(self) -> list[Finding]:
        return [f for v in self.verdicts.values() for f in v.findings]


def _clip(value: Any) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= _TEXT else text[:_TEXT - 1] + "…"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _seconds(ms: float) -> str:
    if ms < 1000:
        return f"{ms:.3g} ms"
    return f"{ms / 1000:.3g} s" if ms < 100_000 else f"{ms / 1000:.0f} s"


def _percent(value: float) -> str:
    return f"{value:.3g}%" if value < 100 else "100%"


def selector_target(selector: str) -> str:
    """The target name of the alert "no pod matches the selector"."""
    return f"pods:{selector}"


def no_running_pod(selector: str, namespace: str, targets: Iterable[Target]) -> Verdict:
    """The verdict of the selector itself: ok while a pod runs, else CRITICAL unreachable."""
    name = selector_target(selector)
    pods = list(targets)
    running = [t for t in pods if judged(t)]
    if running:
        return Verdict(name, "ok", note=f"{len(running)} pod(s) running", namespace=namespace)
    if pods:
        states = ", ".join(sorted(f"{t.name}: {'terminating' if t.terminating else t.phase}"
                                  for t in pods))
        what = f"{len(pods)} pod(s) match, none is running ({_clip(states)})"
    else:
        what = "no pod matches the selector"
    finding = Finding(
        "unreachable", "CRITICAL", name, None,
        title=f"no Oracle pod running in {namespace}",
        summary=f"no Oracle pod running: {what}",
        facts=(("Found", what),),
        namespace=namespace,
        cause="no pod running",
    )
    return Verdict(name, "failing", (finding,), what, namespace)


def judged(target: Target) -> bool:
    """Pods that are running and not being deleted are judged; the others are not (yet)."""
    return target.namespace is None or (target.phase == "Running" and not target.terminating)


def evaluate(fetched: Iterable[Fetched], th: Thresholds, *, selector: str | None = None,
             namespace: str | None = None, pods: Iterable[Target] | None = None) -> Evaluation:
    """Judge every answer; with ``selector``, also judge "is any pod running" over ``pods``."""
    verdicts: dict[str, Verdict] = {}
    for answer in fetched:
        verdicts[answer.target.name] = judge(answer, th)
    if selector is not None:
        verdict = no_running_pod(selector, namespace or "default", pods or [])
        verdicts[verdict.target] = verdict
    return Evaluation(verdicts)


def judge(answer: Fetched, th: Thresholds) -> Verdict:
    """The verdict of one target from its snapshot answer (or its failure to answer)."""
    target = answer.target
    is_pod = target.namespace is not None
    ns = target.namespace

    def verdict(status: Status, findings: Iterable[Finding] = (), note: str = "") -> Verdict:
        return Verdict(target.name, status, tuple(findings), note, ns, is_pod)

    if not judged(target):
        state = "terminating" if target.terminating else f"in phase {target.phase}"
        return verdict("skipped", note=f"pod is {state}")
    body = answer.body
    health = body.get("health") if isinstance(body, dict) else None
    if answer.error is not None or answer.status != 200 or not isinstance(health, dict) \
            or not isinstance(health.get("status"), str):
        if answer.error is not None:
            why = answer.error
        elif answer.status != 200:
            why = f"answered HTTP {answer.status} instead of a snapshot"
        else:
            why = "answered something that is not a sidecar snapshot"
        finding = Finding(
            "unreachable", "CRITICAL", target.name, None,
            title=f"sidecar of {target.name} does not answer",
            summary=f"sidecar unreachable: {_clip(why)}",
            facts=(("Problem", _clip(why)), ("Asked", f"{target.url or '-'}{SNAPSHOT_PATH}")),
            namespace=ns, cause="sidecar does not answer",
        )
        return verdict("failing", (finding,), why)

    findings: list[Finding] = []
    status = health["status"]
    ready = health.get("ready")
    uptime = _number(body.get("uptime_seconds"))
    if status == "unknown" and uptime is not None and uptime < th.startup_grace:  # never heard
        return verdict("skipped", note=f"sidecar started {uptime:.0f} s ago and the Oracle has "
                                       f"not reported yet")
    if status != "healthy" or ready is False:
        findings.append(_degraded(target, health, status, ready))
    window = body.get("windows", {}).get(th.window) if isinstance(body.get("windows"), dict) \
        else None
    if isinstance(window, dict):
        findings += _error_rates(target, window, th)
        findings += _latencies(target, window, th)
    if not findings:
        return verdict("ok", note="healthy and ready")
    critical = any(f.severity == "CRITICAL" for f in findings)
    # A target with only warnings is still "ok" for recovery: its CRITICAL alerts are over.
    return verdict("failing" if critical else "ok", findings,
                   "; ".join(f.summary for f in findings))


def _degraded(target: Target, health: dict[str, Any], status: str, ready: Any) -> Finding:
    raw_checks = health.get("checks")
    checks: dict[Any, Any] = raw_checks if isinstance(raw_checks, dict) else {}
    named = "; ".join(f"{_clip(k)}: {_clip(v)}" for k, v in sorted(checks.items()))
    reason = _clip(health.get("reason") or "")
    ready_reason = _clip(health.get("ready_reason") or "")
    if status in ("degraded", "down"):
        word = status
    elif status == "unknown":
        word = "not reporting"
    elif ready is False:
        word = "not ready"
    else:
        word = _clip(status)
    facts = [("Health", f"{_clip(status)}" + (f" ({reason})" if reason else ""))]
    if named:
        facts.append(("Checks", named))
    if ready is not None:
        facts.append(("Ready", ("yes" if ready else "no")
                      + (f" ({ready_reason})" if ready_reason and ready_reason != reason
                         else "")))
    age = _number(health.get("last_push_age_seconds"))
    if age is not None:
        facts.append(("Last report", f"{age:.1f} s ago"))
    summary = f"health {_clip(status)}" + (", not ready" if ready is False else "") + (
        f": {named}" if named else f": {reason}" if reason else "")
    return Finding("degraded", "CRITICAL", target.name, None,
                   title=f"{target.name} is {word}", summary=_clip(summary),
                   facts=tuple(facts), namespace=target.namespace, cause=word)


def _rows(window: dict[str, Any]) -> list[tuple[str, int, int, dict[str, Any]]]:
    """(Service/Method, count, errors, row) of the window's RPC rows that are well formed."""
    out = []
    rows = window.get("rpcs")
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict):
            continue
        count, errors = _number(row.get("count")), _number(row.get("errors"))
        if count is None or errors is None or count < 0 or errors < 0:
            continue
        name = f"{_clip(row.get('service', '?'))}/{_clip(row.get('method', '?'))}"
        out.append((name, int(count), min(int(errors), int(count)), row))
    return out


def _codes(row: dict[str, Any]) -> str:
    raw = row.get("codes")
    codes: dict[Any, Any] = raw if isinstance(raw, dict) else {}
    bad = sorted(((n, str(c)) for c, n in codes.items() if c != "OK" and _number(n)),
                 reverse=True)[:5]
    return ", ".join(f"{_clip(c)} {int(n)}" for n, c in bad)


def _error_rate_finding(target: Target, rpc: str | None, count: int, errors: int,
                        row: dict[str, Any], th: Thresholds) -> Finding:
    rate = 100.0 * errors / count
    method = rpc.rsplit("/", 1)[-1] if rpc else "all RPCs"
    facts = [("RPC", rpc or "all RPCs together"),
             ("Error rate", f"{_percent(rate)} ({errors} of {count} requests over {th.window}); "
                            f"threshold {_percent(th.error_rate_percent)}")]
    codes = _codes(row)
    if codes:
        facts.append(("Codes", codes))
    return Finding(
        "error_rate", "WARNING", target.name, rpc,
        title=f"error rate {_percent(rate)} on {method} ({target.name})",
        summary=f"error rate {_percent(rate)} ({errors}/{count}) over {th.window} on "
                f"{rpc or 'all RPCs'}, threshold {_percent(th.error_rate_percent)}",
        facts=tuple(facts), namespace=target.namespace,
        cause=f"error rate above {_percent(th.error_rate_percent)}",
        item=f"{rpc or 'all RPCs together'}: {_percent(rate)} ({errors} of {count} requests "
             f"over {th.window})" + (f"; {codes}" if codes else ""))


def _error_rates(target: Target, window: dict[str, Any], th: Thresholds) -> list[Finding]:
    out = []
    for rpc, count, errors, row in _rows(window):
        if count >= th.min_requests and 100.0 * errors / count > th.error_rate_percent:
            out.append(_error_rate_finding(target, rpc, count, errors, row, th))
    totals = window.get("totals")
    if not out and isinstance(totals, dict):
        total, failed = _number(totals.get("count")), _number(totals.get("errors"))
        if total is not None and failed is not None and total >= max(th.min_requests, 1) \
                and 100.0 * failed / total > th.error_rate_percent:
            out.append(_error_rate_finding(target, None, int(total),
                                           min(int(failed), int(total)), totals, th))
    return out


def _latencies(target: Target, window: dict[str, Any], th: Thresholds) -> list[Finding]:
    out = []
    for rpc, count, _, row in _rows(window):
        p95 = _number(row.get("p95_ms"))
        if p95 is None or count < th.min_requests or p95 <= th.p95_seconds * 1000:
            continue
        method = rpc.rsplit("/", 1)[-1]
        facts = [("RPC", rpc),
                 ("P95", f"{_seconds(p95)} over {th.window} ({count} requests); threshold "
                         f"{th.p95_seconds:g} s")]
        extra = [f"{label} {_seconds(v)}" for label, v in
                 (("p50", _number(row.get("p50_ms"))), ("p99", _number(row.get("p99_ms"))),
                  ("max", _number(row.get("max_ms")))) if v is not None]
        if extra:
            facts.append(("Also", ", ".join(extra)))
        out.append(Finding(
            "latency", "WARNING", target.name, rpc,
            title=f"P95 {_seconds(p95)} on {method} ({target.name})",
            summary=f"P95 {_seconds(p95)} over {th.window} on {rpc} ({count} requests), "
                    f"threshold {th.p95_seconds:g} s",
            facts=tuple(facts), namespace=target.namespace,
            cause=f"P95 above {th.p95_seconds:g} s",
            item=f"{rpc}: P95 {_seconds(p95)} over {th.window} ({count} requests)"))
    return out
