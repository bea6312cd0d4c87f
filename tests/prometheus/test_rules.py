"""The alert rules: one source (the chart), promtool-clean, and unit-tested by promtool itself."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.prometheus.conftest import REPO, RULE_TESTS, RULES, promtool

CHART = REPO / "charts" / "oracle"
HERE = Path(__file__).resolve().parent


def load_render() -> ModuleType:
    """prometheus/render.py, the script that renders the plain rule file from the chart."""
    spec = importlib.util.spec_from_file_location("oracle_rules_render",
                                                  REPO / "prometheus" / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = load_render()


def test_committed_rule_file_is_a_fresh_render_of_the_chart() -> None:
    """prometheus/oracle-rules.yaml equals the chart's PrometheusRule spec rendered now."""
    assert RULES.read_text() == render.rule_file(), (
        "prometheus/oracle-rules.yaml is out of date: run .venv/bin/python prometheus/render.py")
    assert render.main(["--check"]) == 0


def test_plain_file_and_chart_rule_are_the_same_rules() -> None:
    """The chart's PrometheusRule, given the same selector, has exactly the plain file's groups."""
    with helm.Chart.load(CHART) as chart:
        text = chart.render({"prometheusRule": {"enabled": True,
                                                "selector": 'job="oracle-sidecar"'}},
                            name="any", namespace="anywhere", is_install=True)
    spec = yaml.safe_load(text["oracle/templates/prometheusrule.yaml"])["spec"]
    assert spec == yaml.safe_load(RULES.read_text())


def test_render_script_writes_a_custom_rule_file(tmp_path: Path) -> None:
    """--set and -f change the selector, thresholds and excluded codes of a rendered file."""
    values = tmp_path / "values.yaml"
    values.write_text("alerter:\n  p95Seconds: 3\n")
    out = tmp_path / "my-rules.yaml"
    assert render.main(["-o", str(out), "-f", str(values),
                        "--set", 'prometheusRule.selector=job="oracle"',
                        "--set", "prometheusRule.excludedCodes={NotFound,Canceled}"]) == 0
    rules = {r["alert"]: r for r in yaml.safe_load(out.read_text())["groups"][0]["rules"]}
    assert 'job="oracle"' in rules["OracleSidecarDown"]["expr"]
    assert 'grpc_code!~"OK|NotFound|Canceled"' in rules["OracleErrorRateHigh"]["expr"]
    assert "[5m])) > 3\nand\n" in rules["OracleLatencyP95High"]["expr"]
    assert "--set 'prometheusRule.selector=job=\"oracle\"'" in out.read_text()
    assert render.main(["-o", str(out), "--check"]) == 1  # differs from the default render
    check = promtool("check", "rules", str(out))
    assert check.returncode == 0, check.stdout + check.stderr


def test_promtool_check_rules_passes_on_the_plain_file() -> None:
    """promtool check rules accepts prometheus/oracle-rules.yaml and finds its seven rules."""
    check = promtool("check", "rules", str(RULES))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 7 rules found" in check.stdout


SCENARIOS = ["defaults", *sorted(p.name for p in CHART.glob("ci/*-values.yaml"))]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_promtool_check_rules_passes_on_every_chart_rendering(scenario: str,
                                                              tmp_path: Path) -> None:
    """The PrometheusRule of every ci scenario (and of the defaults) is a valid rule file."""
    values = {} if scenario == "defaults" else helm.values_from_yaml(
        (CHART / "ci" / scenario).read_text())
    values = render.merge(values, {"prometheusRule": {"enabled": True}})
    with helm.Chart.load(CHART) as chart:
        text = chart.render(values, name="rel", namespace="oracle-ns", is_install=True)
    spec = yaml.safe_load(text["oracle/templates/prometheusrule.yaml"])["spec"]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(spec))
    check = promtool("check", "rules", str(path))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 7 rules found" in check.stdout


def test_promtool_unit_tests_pass() -> None:
    """promtool test rules: every rule fires and stays quiet where it should (P95 > 10 s too)."""
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_unit_tests_cover_every_rule_firing_and_not_firing() -> None:
    """Each alert has a unit test where it fires and one where it is expected not to."""
    alerts = {r["alert"] for r in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]}
    fired: set[str] = set()
    quiet: set[str] = set()
    for group in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in group.get("alert_rule_test", []):
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    assert fired == alerts
    assert quiet == alerts


def test_excluded_codes_unit_tests_pass(tmp_path: Path) -> None:
    """With NotFound and Canceled excluded, those codes count as calls but not as errors."""
    (tmp_path / "excluded-codes-rules.yaml").write_text(render.rule_file(
        {"prometheusRule": {"excludedCodes": ["NotFound", "Canceled"]}}))
    shutil.copy(HERE / "excluded-codes.test.yaml", tmp_path)
    result = promtool("test", "rules", "excluded-codes.test.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", [
    {"alerter": {"errorRatePercent": 3}},  # the 4 % RPC would fire
    {"alerter": {"minRequests": 5}},  # the 10-call RPCs would fire
    {"alerter": {"p95Seconds": 20}},  # the 15 s P95 would not
    {"prometheusRule": {"excludedCodes": ["Internal"]}},  # the Internal errors would not count
], ids=["lower-error-rate", "fewer-calls", "higher-p95", "internal-excluded"])
def test_unit_tests_notice_a_changed_threshold(values: dict[str, Any], tmp_path: Path) -> None:
    """The unit tests fail on rules rendered with other thresholds: they pin the real ones."""
    (tmp_path / "oracle-rules.yaml").write_text(render.rule_file(values))
    shutil.copy(RULE_TESTS, tmp_path)
    result = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    assert "FAILED" in result.stdout + result.stderr
