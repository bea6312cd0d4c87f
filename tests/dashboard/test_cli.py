"""``oracle-sidecar dashboard`` flags and their environment twins (the Helm chart's names)."""

from __future__ import annotations

import pytest

from sidecar.cli import _parser_for
from sidecar.dashboard.app import Settings, settings_from

ENV = ("DASHBOARD_HOST", "DASHBOARD_PORT", "ORACLE_HTTP_URL", "ORACLE_NAMESPACE",
       "ORACLE_POD_SELECTOR", "ORACLE_HTTP_PORT", "DASHBOARD_REFRESH", "DASHBOARD_TIMEOUT",
       "ALERT_STATE_CONFIGMAP", "ALERT_STATE_FILE", "LOG_LEVEL")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without any of the dashboard's variables set."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def _settings(*argv: str) -> Settings:
    args = ["dashboard", *argv]
    return settings_from(_parser_for(args).parse_args(args))


def test_defaults_watch_pods_through_the_api_on_port_9000() -> None:
    """No flags, no env: port 9000, Kubernetes discovery, sidecars on 9090, refresh 5 s."""
    assert _settings() == Settings()
    assert Settings().port == 9000 and Settings().sidecar_port == 9090


def test_the_charts_environment_configures_the_dashboard(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """The env the chart's dashboard ConfigMap and Deployment set is read, with types checked."""
    monkeypatch.setenv("DASHBOARD_PORT", "9100")
    monkeypatch.setenv("DASHBOARD_REFRESH", "2")
    monkeypatch.setenv("ORACLE_POD_SELECTOR", "app.kubernetes.io/instance=x,"
                                              "app.kubernetes.io/component=oracle")
    monkeypatch.setenv("ORACLE_HTTP_PORT", "9191")
    monkeypatch.setenv("ORACLE_NAMESPACE", "oracle")
    monkeypatch.setenv("ALERT_STATE_CONFIGMAP", "x-oracle-alerter-state")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    s = _settings()
    assert (s.port, s.refresh, s.sidecar_port, s.namespace) == (9100, 2.0, 9191, "oracle")
    assert s.selector.endswith("component=oracle") and s.targets == ()
    assert s.alert_state_configmap == "x-oracle-alerter-state"


def test_targets_come_from_a_comma_list_and_flags_replace_it(monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """ORACLE_HTTP_URL is comma-separated; --target (repeatable) replaces it."""
    monkeypatch.setenv("ORACLE_HTTP_URL", "http://a:9090/, http://b:9090")
    assert _settings().targets == ("http://a:9090", "http://b:9090")
    assert _settings("--target", "http://c:1", "--target", "http://d:2").targets == (
        "http://c:1", "http://d:2")


@pytest.mark.parametrize(("name", "value", "says"), [
    ("DASHBOARD_PORT", "70000", "DASHBOARD_PORT='70000'"),
    ("DASHBOARD_REFRESH", "0", "DASHBOARD_REFRESH='0'"),
    ("ORACLE_HTTP_URL", "ftp://x", "is not an http:// or https:// URL"),
])
def test_a_bad_variable_stops_with_its_name(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str], name: str,
                                            value: str, says: str) -> None:
    """A bad env value exits 2 before anything starts, naming the variable and the value."""
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as info:
        _settings()
    assert info.value.code == 2 and says in capsys.readouterr().err
