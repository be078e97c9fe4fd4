"""The agent's /metrics on a real kernel, both backends, seen as Prometheus sees it.

* `promtool check metrics` accepts a live scrape (Prometheus naming and help-text conventions),
  and the scrape carries every felis metric the alert rules and the dashboard in deploy/ read.
* The one-way doNotTrack alert judges real counters right: the seed policy, whose ingress rule
  lets the requests in and whose egress rule lets the replies out, does not fire it; the seed
  without its egress rule does. Two scrapes, before and after some connections, give each
  counter's increase; promtool evaluates the rules on that increase repeated every minute.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from harness import wait_until
from node import CLIENT_HEP, HEP, SEED_POLICY, FelisNode, manifest
from prometheus_client.parser import text_string_to_metric_families
from test_counters import INGRESS, MEMCACHED, scrape

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "felis-rules.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "felis.json"
PORT = 19099  # inside the test's own server namespace, so nothing else holds it
ONE_WAY_POLICY = SEED_POLICY.split("  egress:")[0]
MINUTES = 16  # longer than the alert's 10 minutes `for` plus its 5 minutes rate window
ONE_WAY_ALERT = 'ALERTS{alertname="FelisUntrackedPolicyOneWay", alertstate="firing"}'


def promtool(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    assert path, "promtool not found: run scripts/bootstrap.sh (Debian package prometheus)"
    return subprocess.run(
        [path, *args], input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


def metrics(node: FelisNode) -> str:
    status, text = scrape(node, PORT)["/metrics"]
    assert status == 200, text
    return str(text)


def start(node: FelisNode, policy: str) -> None:
    node.apply(manifest(HEP, CLIENT_HEP, policy))
    node.serve(MEMCACHED)
    node.start_agent("--metrics-port", str(PORT), "--refresh-interval", "0")
    wait_until(
        lambda: scrape(node, PORT)["/healthz"][0] == 200,
        timeout=20,
        what="the agent to report healthy",
    )


def rule_counters(text: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "felis_rule_packets_total"
    }


def evaluate(tmp_path: Path, before: str, after: str, cases: list[dict[str, Any]]) -> None:
    """Run `cases` (promql_expr_test) on the rule counters growing by (after - before) a
    minute, as job "felis", instance "lab"."""
    start_values = rule_counters(before)
    series = []
    for labels, value in rule_counters(after).items():
        first = start_values.get(labels, 0.0)
        body = ", ".join(f'{k}="{v}"' for k, v in (("job", "felis"), ("instance", "lab"), *labels))
        series.append(
            {
                "series": f"felis_rule_packets_total{{{body}}}",
                "values": f"{first:.0f}+{value - first:.0f}x{MINUTES}",
            }
        )
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": cases}],
    }
    path = tmp_path / "live.test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = promtool(["test", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_live_scrape_passes_promtool(node: FelisNode) -> None:
    start(node, SEED_POLICY)
    assert node.reach(node.client, MEMCACHED)
    text = metrics(node)
    assert f'rule="{INGRESS}"' in text

    lint = promtool(["check", "metrics"], stdin=text)
    assert (lint.returncode, lint.stdout + lint.stderr) == (0, "")

    exported = set(re.findall(r"^(felis_\w+)", text, re.MULTILINE))
    deployed = RULES.read_text() + DASHBOARD.read_text()
    used = set(re.findall(r"\bfelis_\w+", deployed))
    assert used - exported == set(), "deploy/ reads metrics this agent does not export"


def test_seed_counts_both_ways_and_does_not_fire(node: FelisNode, tmp_path: Path) -> None:
    start(node, SEED_POLICY)
    before = metrics(node)
    for _ in range(3):
        assert node.reach(node.client, MEMCACHED)
    at = f"{MINUTES - 1}m"
    evaluate(
        tmp_path,
        before,
        metrics(node),
        [
            {
                "expr": "count by (policy, direction) (felis:untracked_policy_packets:rate5m > 0)",
                "eval_time": at,
                "exp_samples": [
                    {"labels": '{policy="memcached-server", direction="ingress"}', "value": 1},
                    {"labels": '{policy="memcached-server", direction="egress"}', "value": 1},
                ],
            },
            {"expr": ONE_WAY_ALERT, "eval_time": at, "exp_samples": []},
        ],
    )


def test_seed_without_reply_rule_fires(node: FelisNode, tmp_path: Path) -> None:
    start(node, ONE_WAY_POLICY)
    before = metrics(node)
    for _ in range(3):
        assert not node.reach(node.client, MEMCACHED), "the replies have no rule"
    evaluate(
        tmp_path,
        before,
        metrics(node),
        [
            {
                "expr": f"count by (policy, direction) ({ONE_WAY_ALERT})",
                "eval_time": f"{MINUTES - 1}m",
                "exp_samples": [
                    {"labels": '{policy="memcached-server", direction="ingress"}', "value": 1}
                ],
            }
        ],
    )
