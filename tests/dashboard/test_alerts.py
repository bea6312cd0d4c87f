"""The dashboard's read-only view of the alert state (sidecar.dashboard.alerts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sidecar.alerter.state import STATE_KEY, Alert, State, dumps
from sidecar.dashboard.alerts import read_alert_state
from sidecar.kube import Kube

ALERT = Alert("degraded", "CRITICAL", "oracle-a", None, True, 100.0, 101.0, 401.0,
              "health degraded: ephemeris: timeout")
OLD = Alert("error_rate", "WARNING", "oracle-b", "/s/M", False, 50.0, None, None, "old")


async def test_the_state_file_is_read_or_the_reason_it_cannot_be_is_given(
        tmp_path: Path) -> None:
    """A state file: its alerts (open first) when usable; readable=False and why when not."""
    path = tmp_path / "state.json"
    missing = await read_alert_state(str(path), "ignored", "oracle", None)
    assert missing["readable"] is False and "does not exist" in missing["error"]
    assert missing["source"] == f"file {path}" and missing["alerts"] == []
    path.write_text("{broken")
    broken = await read_alert_state(str(path), None, "oracle", None)
    assert broken["readable"] is False and broken["error"].startswith("unreadable: ")
    path.write_text(dumps(State(5.0, {OLD.key: OLD, ALERT.key: ALERT})))
    read = await read_alert_state(str(path), None, "oracle", None)
    assert read["readable"] is True and read["error"] is None and read["updated"] == 5.0
    assert [(a["key"], a["severity"], a["open"]) for a in read["alerts"]] == [
        (ALERT.key, "CRITICAL", True), (OLD.key, "WARNING", False)]


async def test_the_state_config_map_is_read_or_the_reason_it_cannot_be_is_given(
        fake_kube: Any) -> None:
    """A state ConfigMap: missing, without the key, usable, forbidden (403), no API at all."""
    kube = Kube(fake_kube.client())

    async def read() -> dict[str, Any]:
        return await read_alert_state(None, "state", "oracle", kube)

    assert "does not exist yet" in (await read())["error"]
    fake_kube.put_config_map("oracle", "state", {})
    assert f"no key {STATE_KEY}" in (await read())["error"]
    fake_kube.put_config_map("oracle", "state", {STATE_KEY: dumps(State(7.0, {ALERT.key: ALERT}))})
    read_ok = await read()
    assert read_ok["readable"] is True and read_ok["source"] == "ConfigMap oracle/state"
    assert [a["key"] for a in read_ok["alerts"]] == [ALERT.key] and read_ok["updated"] == 7.0
    fake_kube.forbid.add("configmaps")
    forbidden = await read()
    assert forbidden["readable"] is False and "403" in forbidden["error"]
    no_api = await read_alert_state(None, "state", "oracle", None)
    assert no_api["error"] == "the Kubernetes API is not available"
    nothing = await read_alert_state(None, None, "oracle", None)
    assert nothing["source"] is None and "not configured" in nothing["error"]
