"""The Grafana dashboard (deploy/grafana/felis.json): the fields Grafana needs to import it, a
layout without overlaps, and every query evaluated by promtool against series shaped exactly
like the agent's own /metrics, so a query that does not parse or finds nothing fails."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from deploy_helpers import (
    DASHBOARD,
    METRICS_DOC,
    RULES,
    agent_scrape,
    run_promtool,
    unknown_names,
)
from prometheus_client.parser import text_string_to_metric_families

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANEL_TYPES = {"row", "timeseries", "stat"}
# Grafana's own variables, and what the test gives each variable when it evaluates a query
# (the instance variable's "All" is its allValue).
BUILTIN = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
NODES = ("node-a:9099", "node-b:9099")
MINUTES = 45
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard()["templating"]["list"]}


def queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable."""
    out = [
        (f"panel {p['title']!r} {t['refId']}", t["expr"]) for p in panels() for t in p["targets"]
    ]
    for name, var in variables().items():
        if var["type"] == "query":
            found = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"])
            assert found, f"variable {name}: only label_values(metric, label) queries are checked"
            out.append((f"variable {name}", f"count by ({found[2]}) ({found[1]})"))
    return out


def substitute(expr: str) -> str:
    values = {name: str(var.get("allValue") or var["current"]["value"])
              for name, var in variables().items() if var["type"] == "query"}  # fmt: skip
    values |= BUILTIN

    def one(found: re.Match[str]) -> str:
        name = found[1] or found[2]
        assert name in values, f"{expr}: ${name} is not a dashboard variable"
        return values[name]

    return _VARIABLE.sub(one, expr)


def test_dashboard_has_what_grafana_needs() -> None:
    board = dashboard()
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", board["uid"])
    assert board["title"] and isinstance(board["schemaVersion"], int)
    assert board["schemaVersion"] >= 36, "Grafana 9+ dashboard schema"
    assert board["time"] == {"from": "now-6h", "to": "now"}
    assert isinstance(board["tags"], list) and isinstance(board["annotations"]["list"], list)
    datasource = variables()["datasource"]
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")
    for name, var in variables().items():
        if var["type"] == "query":
            assert var["datasource"] == DATASOURCE, name
            assert var["definition"] == var["query"], name
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids)


def test_every_panel_is_complete() -> None:
    for panel in dashboard()["panels"]:
        title = panel.get("title")
        assert title and panel["type"] in PANEL_TYPES, panel
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in "hwxy"), title
        assert grid["h"] > 0 and grid["w"] > 0 and grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["description"], title
        assert panel["datasource"] == DATASOURCE, title
        assert "defaults" in panel["fieldConfig"] and "options" in panel, title
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), title
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE and target["expr"].strip(), title


def test_panels_do_not_overlap() -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']!r} overlaps {taken[(x, y)]!r}"
                taken[(x, y)] = panel["title"]


def test_every_panel_is_described_in_the_docs() -> None:
    text = METRICS_DOC.read_text()
    for panel in panels():
        assert f"**{panel['title']}**" in text, (
            f"docs/metrics.md does not describe {panel['title']}"
        )


def test_queries_use_only_what_the_agent_exports() -> None:
    for where, expr in queries():
        metrics, labels = unknown_names([substitute(expr)])
        assert (metrics, labels) == (set(), set()), f"{where}: {expr}"


def input_series() -> list[dict[str, str]]:
    """Every sample of the agent's /metrics, on two nodes, over MINUTES minutes: counters and
    histograms rise by one a minute, gauges keep their scraped value."""
    series = []
    for node in NODES:
        series.append({"series": f'up{{job="felis", instance="{node}"}}', "values": f"1x{MINUTES}"})
        for family in text_string_to_metric_families(agent_scrape()):
            rising = family.type in {"counter", "histogram"}
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                labels = {"job": "felis", "instance": node, **sample.labels}
                body = ", ".join(f'{k}="{v}"' for k, v in labels.items())
                values = f"0+1x{MINUTES}" if rising else f"{sample.value:g}x{MINUTES}"
                series.append({"series": f"{sample.name}{{{body}}}", "values": values})
    return series


def test_every_query_evaluates_to_data(tmp_path: Path) -> None:
    cases = [
        {
            "expr": f"count({substitute(expr)}) > bool 0",
            "eval_time": f"{MINUTES - 5}m",
            "exp_samples": [{"labels": "{}", "value": 1}],
        }
        for _, expr in queries()
    ]
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": input_series(), "promql_expr_test": cases}],
    }
    path = tmp_path / "dashboard.test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    assert "SUCCESS" in run_promtool(["test", "rules", str(path)])
    assert len(cases) >= len(panels()), "every panel has at least one query"
