"""promtool checks the rule file, unit-tests every alert and checks the compose config."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.deploy.deploy_promql import metric_names
from tests.deploy.deploy_support import documented_series, require_tool, run_tool

RULES = Path("deploy/prometheus/lam-rules.yaml")
RULE_TESTS = Path("deploy/prometheus/lam-rules.test.yaml")


def rules(repo: Path) -> list[dict]:
    doc = yaml.safe_load((repo / RULES).read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_promtool_check_rules(repo: Path) -> None:
    promtool = require_tool("promtool")
    proc = run_tool([promtool, "check", "rules", str(repo / RULES)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules(repo))} rules found" in proc.stdout


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "groups:\n- name: x\n  rules:\n  - alert: A\n    expr: rate(lam_requests_total)\n"
    )
    assert run_tool([promtool, "check", "rules", str(bad)]).returncode != 0


def test_promtool_unit_tests_fire_every_alert(repo: Path) -> None:
    promtool = require_tool("promtool")
    proc = run_tool([promtool, "test", "rules", str(repo / RULE_TESTS)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tested = set()
    for case in yaml.safe_load((repo / RULE_TESTS).read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            if check["exp_alerts"]:
                tested.add(check["alertname"])
    assert tested == {r["alert"] for r in rules(repo)}, "an alert without a firing test"


def test_promtool_check_compose_config(repo: Path, tmp_path: Path) -> None:
    # The container layout: /etc/prometheus/prometheus.yml + rules/lam-rules.yaml, so
    # promtool also loads the rule file that the config's rule_files glob picks up.
    promtool = require_tool("promtool")
    shutil.copy(repo / "docker" / "prometheus.yml", tmp_path / "prometheus.yml")
    (tmp_path / "rules").mkdir()
    shutil.copy(repo / RULES, tmp_path / "rules" / "lam-rules.yaml")
    proc = run_tool([promtool, "check", "config", str(tmp_path / "prometheus.yml")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules(repo))} rules found" in proc.stdout


def test_promtool_check_config_as_shipped(repo: Path) -> None:
    promtool = require_tool("promtool")
    proc = run_tool([promtool, "check", "config", str(repo / "docker" / "prometheus.yml")])
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "rule", rules(Path(__file__).resolve().parents[2]), ids=lambda r: r["alert"]
)
def test_rules_use_only_documented_metrics(rule: dict) -> None:
    names = metric_names(rule["expr"])
    assert names, rule["expr"]
    assert names <= documented_series() | {"up"}, names - documented_series()
