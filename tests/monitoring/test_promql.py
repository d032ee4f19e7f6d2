"""Every PromQL expression of the chart through the pinned promtool: the PrometheusRule's groups
(from `helm template`) and every Grafana dashboard query pass `promtool check rules`, and the alerts
fire, or stay quiet, on synthetic series (`promtool test rules`, alerts_test.yaml)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .chart import alerts, dashboard_rule_file, helm, prometheus_tools, render, rule_groups

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("rules")
    (d / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups(render(helm()))}, sort_keys=False))
    (d / "dashboard.yaml").write_text(yaml.safe_dump(dashboard_rule_file(), sort_keys=False))
    shutil.copy(HERE / "alerts_test.yaml", d / "alerts_test.yaml")
    return d


def promtool(*args: str, cwd: Path) -> str:
    proc = subprocess.run([str(prometheus_tools().promtool), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"promtool {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_alert_rules_and_dashboard_queries_pass_promtool_check(rules_dir):
    out = promtool("check", "rules", "--lint=all", "rules.yaml", "dashboard.yaml", cwd=rules_dir)
    assert "SUCCESS: 4 rules found" in out
    n = len(dashboard_rule_file()["groups"][0]["rules"])
    assert f"SUCCESS: {n} rules found" in out


def test_each_alert_fires_on_synthetic_series_and_not_on_its_look_alikes(rules_dir):
    tested = {t["alertname"] for case in yaml.safe_load((HERE / "alerts_test.yaml").read_text())["tests"]
              for t in case["alert_rule_test"]}
    assert tested == set(alerts(rule_groups(render(helm())))), "every alert needs a unit test"
    promtool("test", "rules", "alerts_test.yaml", cwd=rules_dir)
