"""Message text: level and title first, escaped values, Telegram's 4096 limit, durations."""

from __future__ import annotations

import pytest

from sidecar.alerter.decisions import Notice
from sidecar.alerter.messages import LIMIT, duration, escape, fit, probe_message, render, utc
from sidecar.alerter.rules import Finding
from tests.fakes.telegram_api import EntityError, parse_html, utf16_len

NOW = 1_795_853_660.0  # 2026-11-28 08:14:20 UTC
HINT = "kubectl port-forward --namespace oracle svc/oracle-dashboard 9000:9000"


def degraded(checks: str = "ephemeris: timeout") -> Notice:
    finding = Finding("degraded", "CRITICAL", "oracle-7d9f-abc", None,
                      title="oracle-7d9f-abc is degraded", summary=f"health degraded: {checks}",
                      facts=(("Health", "degraded (process 7 reports degraded)"),
                             ("Checks", checks), ("Ready", "no")), namespace="oracle")
    return Notice("CRITICAL", "oracle-7d9f-abc", ("degraded|oracle-7d9f-abc|-",), "oracle", True,
                  finding, opened=NOW)


def test_critical_message_reads_level_title_where_value_time_hint() -> None:
    """The first line is level and title; then pod and namespace, facts, UTC time, hint."""
    text = render(degraded(), NOW, HINT)
    assert text == (
        "🔴 <b>CRITICAL: oracle-7d9f-abc is degraded</b>\n"
        "<b>Pod:</b> <code>oracle-7d9f-abc</code> in namespace <code>oracle</code>\n"
        "<b>Health:</b> degraded (process 7 reports degraded)\n"
        "<b>Checks:</b> ephemeris: timeout\n"
        "<b>Ready:</b> no\n"
        "<b>Time:</b> 2026-11-28 08:14:20 UTC\n"
        f"<b>Dashboard:</b> <code>{HINT}</code>")
    parse_html(text)


def test_hostile_values_are_escaped() -> None:
    """``<``, ``>`` and ``&`` in an error text do not break the HTML."""
    nasty = "<script>alert(1)</script> & <b>bold</b> &amp; 5 > 3"
    text = render(degraded(nasty), NOW, "kubectl <&>")
    plain = parse_html(text)  # raises on broken HTML, as Telegram would refuse it
    assert nasty in plain and "kubectl <&>" in plain
    assert "&lt;script&gt;" in text


def test_the_checker_refuses_unescaped_text() -> None:
    """The fake API refuses what Telegram refuses, so the test above means something."""
    for bad in ("a < b", "x & y", "5 > 3", "<b>open", "<script>x</script>"):
        with pytest.raises(EntityError):
            parse_html(bad)


def test_recovery_message_says_how_long_the_incident_lasted() -> None:
    """INFO recovered: title with the duration, the incident start, what it was."""
    notice = Notice("INFO", "oracle-7d9f-abc", ("degraded|oracle-7d9f-abc|-",), "oracle", True,
                    opened=NOW - 750, was=("health degraded: ephemeris: timeout",))
    text = render(notice, NOW, HINT)
    first, *rest = text.split("\n")
    assert first == "✅ <b>INFO: oracle-7d9f-abc recovered after 12 min 30 s</b>"
    assert "<b>Incident:</b> 12 min 30 s, since 2026-11-28 08:01:50 UTC" in rest
    assert "<b>Was:</b> health degraded: ephemeris: timeout" in rest


def test_reminder_title_says_still() -> None:
    """A reminder after the cooldown says how long the alert has held."""
    notice = degraded()
    reminder = Notice(notice.level, notice.target, notice.keys, notice.namespace, True,
                      notice.finding, opened=NOW - 600, reminder=True)
    assert render(reminder, NOW).startswith(
        "🔴 <b>CRITICAL: oracle-7d9f-abc is degraded (still, for 10 min)</b>")


def test_url_target_is_named_as_sidecar() -> None:
    """A fixed-URL target is shown as the sidecar URL, not as a pod."""
    finding = Finding("unreachable", "CRITICAL", "http://10.1.2.3:9090", None, "t", "s")
    notice = Notice("CRITICAL", finding.target, (finding.key,), None, False, finding, NOW)
    assert "<b>Sidecar:</b> <code>http://10.1.2.3:9090</code>" in render(notice, NOW)


@pytest.mark.parametrize("filler", ["x", "&", "<", "é", "😀", "ab<c>&d"])
def test_long_messages_are_cut_within_4096_with_a_marker(filler: str) -> None:
    """Whatever the text, the message fits, is valid HTML and says it was cut."""
    text = render(degraded(filler * 6000), NOW, HINT)
    assert utf16_len(text) <= LIMIT
    plain = parse_html(text)
    assert plain.endswith("… (truncated)")
    assert plain.startswith("🔴 CRITICAL: oracle-7d9f-abc is degraded")


def test_fit_closes_open_tags_and_never_cuts_an_entity() -> None:
    """A cut inside <code>…</code> closes it; a cut next to &amp; drops the whole entity."""
    text = "<b>title</b>\n<code>" + "&amp;" * 2000 + "</code>"
    cut = fit(text, limit=300)
    assert utf16_len(cut) <= 300
    assert cut.endswith("</code>" + escape("\n… (truncated)"))
    parse_html(cut)
    assert fit("short") == "short"


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0 s"), (44.6, "45 s"), (60, "1 min"), (750, "12 min 30 s"), (3600, "1 h"),
    (7500, "2 h 5 min"), (86400, "1 d"), (3 * 86400 + 4 * 3600 + 59, "3 d 4 h"), (-5, "0 s")])
def test_duration_table(seconds: float, text: str) -> None:
    """Durations read as a person says them."""
    assert duration(seconds) == text


def test_probe_message_and_utc() -> None:
    """The --test message names where alerts come from; times are UTC."""
    text = probe_message(NOW, "the pods app=oracle in namespace <x>", HINT)
    assert "in namespace &lt;x&gt;" in text
    assert utc(0) == "1970-01-01 00:00:00 UTC"
    parse_html(text)


@pytest.mark.parametrize(("target", "gone", "is_pod", "title"), [
    ("oracle-a", False, True, "✅ <b>INFO: oracle-a recovered after 2 min</b>"),
    ("oracle-a", True, False,
     "✅ <b>INFO: oracle-a is gone (replaced or scaled down) after 2 min</b>"),
    ("pods:app=oracle", False, False, "✅ <b>INFO: Oracle pods running again after 2 min</b>"),
])
def test_info_titles(target: str, gone: bool, is_pod: bool, title: str) -> None:
    """Recovered, gone, and pods back behind the selector each say so in the first line."""
    notice = Notice("INFO", target, (f"degraded|{target}|-",), "oracle", is_pod,
                    opened=NOW - 120, was=("x",), gone=gone)
    assert render(notice, NOW).split("\n")[0] == title


def test_small_latencies_read_in_milliseconds() -> None:
    """P50 of a few milliseconds is shown in ms, P95 above a second in s."""
    from sidecar.alerter.rules import Thresholds, judge
    from tests.alerter.conftest import answer, rpc, snapshot

    (finding,) = judge(answer(snapshot(rows=[rpc("GetReading", 40, p95_ms=12_400)])),
                       Thresholds()).findings
    assert dict(finding.facts)["Also"] == "p50 5 ms, p99 12.4 s, max 12.4 s"
