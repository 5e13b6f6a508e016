"""deploy/alertmanager/alertmanager.yml, judged by amtool: valid, pages and tickets routed apart, tickets inhibited.

amtool (Debian's `prometheus-alertmanager` package) is the judge: its absence
fails these tests. tests/test_alerts_live.py runs the same routing tree in a
real Alertmanager.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).parents[1] / "deploy"
CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
sys.path.insert(0, str(DEPLOY))
import stack  # noqa: E402  (deploy/stack.py)


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("amtool")
    assert path is not None, "amtool is missing: install Debian's `prometheus-alertmanager` package (make system-deps)"
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=60, check=False)


def test_amtool_accepts_the_configuration() -> None:
    result = amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def test_amtool_accepts_the_local_stack_configuration(tmp_path: Path) -> None:
    config = tmp_path / "alertmanager.yml"
    config.write_text(stack.alertmanager_config("http://127.0.0.1:9095", fast=True))
    result = amtool("check-config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (("severity=page", "alertname=ToolCallErrorBudgetBurn"), "page"),
        (("severity=page", "alertname=DocServerDown"), "page"),
        (("severity=ticket", "alertname=SlowSearch"), "ticket"),
        (("alertname=SomethingWithoutSeverity",), "ticket"),
    ],
)
def test_each_severity_reaches_its_receiver(labels: tuple[str, ...], receiver: str) -> None:
    result = amtool("config", "routes", "test", f"--config.file={CONFIG}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == [receiver]


def test_a_page_holds_back_the_ticket_of_the_same_alert_job_and_instance() -> None:
    (rule,) = yaml.safe_load(CONFIG.read_text())["inhibit_rules"]
    assert rule["source_matchers"] == ['severity="page"']
    assert rule["target_matchers"] == ['severity="ticket"']
    assert set(rule["equal"]) == {"alertname", "job", "instance"}


def test_resolved_alerts_are_sent_to_both_receivers() -> None:
    receivers = {receiver["name"]: receiver for receiver in yaml.safe_load(CONFIG.read_text())["receivers"]}
    assert receivers["page"]["pagerduty_configs"][0]["send_resolved"] is True
    assert receivers["ticket"]["webhook_configs"][0]["send_resolved"] is True
