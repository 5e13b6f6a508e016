"""The Prometheus rules and scrape configuration in deploy/prometheus, judged by promtool.

promtool (Debian's `prometheus` package; `make system-deps` installs it) is the
judge: its absence fails these tests, it does not skip them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).parents[1] / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
UNIT_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
# The runbook page of the docs site (make docs), as `mkdocs serve` shows it locally.
RUNBOOK = "http://127.0.0.1:8000/runbook/#"
sys.path.insert(0, str(DEPLOY))
import stack  # noqa: E402  (deploy/stack.py)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    assert path is not None, "promtool is missing: install Debian's `prometheus` package (make system-deps)"
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=300, check=False)


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "rules" / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def alert_tests() -> list[dict[str, Any]]:
    return [
        case
        for path in UNIT_TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]


def test_the_rule_files_exist() -> None:
    assert [path.name for path in RULE_FILES] == ["alerts.yml", "recording.yml"]
    assert UNIT_TESTS


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda path: path.name)
def test_promtool_accepts_the_rule_file(path: Path) -> None:
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", UNIT_TESTS, ids=lambda path: path.name)
def test_promtool_unit_tests_pass(path: Path) -> None:
    result = promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted({rule["alert"] for rule in alert_rules()}))
def test_every_alert_has_unit_tests_firing_and_quiet(name: str) -> None:
    cases = [case for case in alert_tests() if case["alertname"] == name]
    assert any(case.get("exp_alerts") for case in cases), f"no promtool case where {name} fires"
    assert any(not case.get("exp_alerts") for case in cases), f"no promtool case where {name} stays quiet"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: f"{rule['alert']}-{rule['labels']['severity']}")
def test_every_alert_says_how_bad_what_and_where_to_look(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"page", "ticket"}
    annotations = rule["annotations"]
    assert annotations["summary"].strip()
    assert "$value" in annotations["description"], "the description must show the current value"
    assert annotations["runbook_url"] == RUNBOOK + rule["alert"].lower()


def test_slo_alerts_page_and_ticket_under_one_name() -> None:
    """Alertmanager holds a ticket back while a page with the same alertname fires."""
    severities: dict[str, set[str]] = {}
    for rule in alert_rules():
        if "slo" in rule["labels"]:
            severities.setdefault(rule["alert"], set()).add(rule["labels"]["severity"])
    assert severities == {
        "ToolCallErrorBudgetBurn": {"page", "ticket"},
        "SearchLatencyBudgetBurn": {"page", "ticket"},
    }


def test_bucket_bounds_are_spelled_as_the_client_writes_them() -> None:
    """client_python writes le="1.0", never le="1": a rule on le="1" matches nothing."""
    for path in RULE_FILES:
        for bound in re.findall(r'le="([^"]*)"', path.read_text()):
            hint = f'{path.name}: le="{bound}" never matches; write le="{float(bound)}"'
            assert bound == "+Inf" or "." in bound, hint


def test_the_shipped_scrape_configuration_is_valid() -> None:
    result = promtool("check", "config", "--syntax-only", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_local_stack_configuration_is_valid_with_its_rules(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("secret")
    config = tmp_path / "prometheus.yml"
    config.write_text(stack.prometheus_config(target="127.0.0.1:8081", alertmanager="127.0.0.1:9093", token_file=token))
    result = promtool("check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rule files found" in result.stdout


def test_the_scrape_configuration_sends_the_metrics_token(tmp_path: Path) -> None:
    (job,) = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["scrape_configs"]
    assert job["job_name"] == "docserver"  # DocServerDown selects up{job="docserver"}
    assert job["authorization"]["type"] == "Bearer"
    assert job["authorization"]["credentials_file"]


def test_the_scaled_rules_of_the_live_test_are_valid(tmp_path: Path) -> None:
    for path in RULE_FILES:
        scaled = tmp_path / path.name
        scaled.write_text(stack.scale_rules(path.read_text(), 60))
        result = promtool("check", "rules", str(scaled))
        assert result.returncode == 0, result.stdout + result.stderr


def test_scaling_divides_windows_and_for_and_keeps_the_rest() -> None:
    rule = {"alert": "A", "expr": "rate(x[10m]) > 1 and y offset 1h > z[1h:5m]", "for": "30m", "labels": {"a": "5m"}}
    text = yaml.safe_dump({"groups": [{"name": "g", "interval": "5m", "rules": [rule]}]})
    (group,) = yaml.safe_load(stack.scale_rules(text, 60))["groups"]
    assert group["interval"] == "5s"
    assert group["rules"][0] == {
        "alert": "A",
        "expr": "rate(x[10s]) > 1 and y offset 60s > z[60s:5s]",
        "for": "30s",
        "labels": {"a": "5m"},
    }
