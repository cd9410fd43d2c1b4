"""The shipped alert rules: valid, and unit-tested with promtool (including must-not-fire cases)."""

from __future__ import annotations

import subprocess
from pathlib import Path

HERE = Path(__file__).parent
RULES = HERE.parent.parent / "charts" / "kubetaskqueue" / "files" / "alerts.yaml"


def test_rules_file_is_valid(promtool: str) -> None:
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


def test_promtool_unit_tests_pass(promtool: str) -> None:
    result = subprocess.run([promtool, "test", "rules", "alerts_test.yaml"], cwd=HERE,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_runbook_section() -> None:
    runbook = (HERE.parent.parent / "docs" / "runbook.md").read_text()
    alerts = [line.split(":", 1)[1].strip() for line in RULES.read_text().splitlines()
              if line.strip().startswith("- alert:")]
    assert len(alerts) == 6
    for alert in alerts:
        assert f"## {alert}" in runbook
        assert f"runbook.md#{alert.lower()}" in RULES.read_text()
