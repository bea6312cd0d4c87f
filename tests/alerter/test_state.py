"""The alert state: its exact JSON format and both stores' compare-and-swap."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from sidecar.alerter.state import (
    STATE_KEY,
    Alert,
    Claim,
    ConfigMapStore,
    FileStore,
    MemoryStore,
    State,
    StateConflict,
    StateError,
    dumps,
    parse,
)
from sidecar.kube import Kube

ALERT = Alert("degraded", "CRITICAL", "oracle-a", None, True, 100.0, 101.0, 401.0,
              "health degraded: db: timeout")
LATENCY = Alert("latency", "WARNING", "oracle-a", "nps.oracle.OracleService/GetReading", False,
                50.0, None, None, "P95 12 s")


def test_format_is_exactly_the_agreed_one() -> None:
    """version, updated, alerts keyed kind|target|rpc with the agreed fields, and claims."""
    state = State(123.5, {ALERT.key: ALERT, LATENCY.key: LATENCY},
                  {ALERT.key: Claim("run-1", 200.0, True, None, None)})
    raw = json.loads(dumps(state))
    assert raw == {
        "version": 1, "updated": 123.5,
        "alerts": {
            "degraded|oracle-a|-": {
                "kind": "degraded", "severity": "CRITICAL", "target": "oracle-a", "rpc": None,
                "open": True, "opened": 100.0, "last_sent": 101.0, "cooldown_until": 401.0,
                "summary": "health degraded: db: timeout"},
            "latency|oracle-a|nps.oracle.OracleService/GetReading": {
                "kind": "latency", "severity": "WARNING", "target": "oracle-a",
                "rpc": "nps.oracle.OracleService/GetReading", "open": False, "opened": 50.0,
                "last_sent": None, "cooldown_until": None, "summary": "P95 12 s"}},
        "claims": {"degraded|oracle-a|-": {"run": "run-1", "until": 200.0, "open": True,
                                           "last_sent": None, "cooldown_until": None}},
    }
    assert parse(dumps(state)) == state


@pytest.mark.parametrize(("text", "problem"), [
    ("not json", "not JSON"), ("[]", "not a JSON object"), ('{"version": 2}', "version 2"),
    ('{"version": 1, "alerts": []}', "not a JSON object"),
])
def test_unusable_state_is_a_state_error(text: str, problem: str) -> None:
    """Not JSON, not an object, another version or a wrong shape: StateError saying which."""
    with pytest.raises(StateError, match=problem):
        parse(text)


def test_a_bad_alert_is_dropped_and_the_rest_kept(caplog: pytest.LogCaptureFixture) -> None:
    """One malformed alert costs only itself, with a warning."""
    raw = json.loads(dumps(State(1.0, {ALERT.key: ALERT})))
    raw["alerts"]["x"] = {"kind": "meteor", "severity": "CRITICAL", "target": "t", "open": True,
                          "opened": 1}
    raw["alerts"]["y"] = {**ALERT.to_json(), "opened": "yesterday", "target": "b"}
    raw["claims"] = {"z": {"run": 5}}
    with caplog.at_level(logging.WARNING):
        state = parse(json.dumps(raw))
    assert list(state.alerts) == [ALERT.key] and state.claims == {}
    assert sum("dropped an unusable" in r.getMessage() for r in caplog.records) == 3


def test_file_store_starts_fresh_then_swaps(tmp_path: Path) -> None:
    """A missing file is a fresh state; save writes it; a stale version is a conflict."""
    store = FileStore(str(tmp_path / "sub" / "state.json"))
    first = store.load()
    assert first.state == State() and first.token is None
    store.save(State(1.0, {ALERT.key: ALERT}), first.token)
    with pytest.raises(StateConflict):
        store.save(State(2.0), first.token)  # somebody (we) wrote since
    second = store.load()
    assert second.state.alerts == {ALERT.key: ALERT}
    store.save(State(3.0), second.token)
    assert store.load().state.updated == 3.0
    assert [p.name for p in (tmp_path / "sub").iterdir() if p.name.startswith(".state-")] == []


def test_file_store_replaces_a_corrupt_file_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Corrupt state: a warning, a fresh start, and the next save overwrites it."""
    path = tmp_path / "state.json"
    path.write_bytes(b"\x00\xff garbage")
    store = FileStore(str(path))
    with caplog.at_level(logging.WARNING):
        loaded = store.load()
    assert loaded.state == State()
    assert "fresh alert state" in caplog.text
    store.save(State(9.0), loaded.token)
    assert parse(path.read_text()).updated == 9.0


def test_config_map_store_creates_replaces_and_detects_conflicts(fake_kube: Any) -> None:
    """First save creates; later saves replace at the resourceVersion read; 409 → conflict."""
    store = ConfigMapStore(Kube(fake_kube.client()), "oracle", "alert-state")
    loaded = store.load()
    assert loaded.token is None
    store.save(State(1.0), loaded.token)
    loaded = store.load()
    fake_kube.put_config_map("oracle", "alert-state",
                             {STATE_KEY: dumps(State(2.0)), "note": "kept"})
    with pytest.raises(StateConflict):
        store.save(State(3.0), loaded.token)
    loaded = store.load()
    assert loaded.state.updated == 2.0
    store.save(State(4.0), loaded.token)
    data = fake_kube.config_maps[("oracle", "alert-state")]["data"]
    assert data["note"] == "kept" and parse(data[STATE_KEY]).updated == 4.0


def test_config_map_store_reads_the_charts_empty_config_map(fake_kube: Any) -> None:
    """The chart creates the ConfigMap without data: a fresh state, saved by replace."""
    fake_kube.put_config_map("oracle", "alert-state", {})
    store = ConfigMapStore(Kube(fake_kube.client()), "oracle", "alert-state")
    loaded = store.load()
    assert loaded.state == State()
    store.save(State(1.0), loaded.token)
    assert ("POST", "/api/v1/namespaces/oracle/configmaps") not in fake_kube.requests


def test_memory_store_swaps_too() -> None:
    """The in-process store of --loop has the same compare-and-swap."""
    store = MemoryStore()
    loaded = store.load()
    store.save(State(1.0), loaded.token)
    with pytest.raises(StateConflict):
        store.save(State(2.0), loaded.token)
    assert store.load().state.updated == 1.0
