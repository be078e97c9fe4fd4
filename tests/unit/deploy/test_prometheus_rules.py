"""The Prometheus rules operators load (deploy/prometheus/felis-rules.yaml): promtool accepts
them, their promtool unit tests pass, every alert is tested both ways and documented, and they
use only what the agent exports."""

from __future__ import annotations

import re
from typing import Any

import yaml
from deploy_helpers import (
    OPERATIONS,
    RULE_TESTS,
    RULES,
    agent_scrape,
    names_in,
    run_promtool,
    unknown_names,
)


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def test_promtool_check_rules() -> None:
    output = run_promtool(["check", "rules", str(RULES)])
    assert f"SUCCESS: {len(rules())} rules found" in output


def test_promtool_rule_unit_tests() -> None:
    assert "SUCCESS" in run_promtool(["test", "rules", str(RULE_TESTS)])


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for group in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in group.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {alert["alert"] for alert in alerts()}
    assert names - firing == set(), "alerts never seen firing"
    assert names - quiet == set(), "alerts never checked to stay quiet"
    assert (firing | quiet) - names == set(), "tests of alerts that do not exist"


def test_every_recording_rule_is_tested() -> None:
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    used = set()
    for group in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in group.get("promql_expr_test", []):
            used |= names_in(case["expr"])[0]
    assert recorded - used == set()


def test_every_alert_has_summary_description_and_a_runbook_section() -> None:
    headings = set(re.findall(r"^### (Felis\w+)$", OPERATIONS.read_text(), re.MULTILINE))
    for alert in alerts():
        name = alert["alert"]
        notes = alert.get("annotations", {})
        assert notes.get("summary") and notes.get("description"), name
        assert notes.get("runbook") == f"docs/operations.md#{name.lower()}", name
        assert name in headings, f"docs/operations.md has no '### {name}' runbook section"
        assert alert["labels"]["severity"] in {"warning", "critical"}, name
    assert headings == {alert["alert"] for alert in alerts()}, "runbook sections without alert"


def test_rules_use_only_what_the_agent_exports() -> None:
    recorded = [rule["record"] for rule in rules() if "record" in rule]
    metrics, labels = unknown_names([rule["expr"] for rule in rules()], recorded)
    assert metrics == set(), "metrics the agent does not export"
    assert labels == set(), "labels the agent's series do not carry"


def test_agent_metrics_pass_promtool_check_metrics() -> None:
    # The live scrape is checked too (tests/kernel/test_metrics_promtool.py); this one has every
    # kind of series, including those a healthy lab node does not show (a skipped object).
    assert run_promtool(["check", "metrics"], stdin=agent_scrape()) == ""
