"""Shared pieces of the deploy tests: paths, promtool, a scrape of the real registry, and a
small reader of the metric and label names a PromQL expression uses."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from felis.agent.agent import AgentState
from felis.agent.metrics import build_registry
from felis.conntrack.parse import parse_stats
from felis.dataplane.kernel import ApplyReport, RuleCounter
from felis.dataplane.spec import Family

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "deploy" / "prometheus" / "felis-rules.yaml"
RULE_TESTS = Path(__file__).resolve().parent / "felis-rules.test.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "felis.json"
OPERATIONS = ROOT / "docs" / "operations.md"
METRICS_DOC = ROOT / "docs" / "metrics.md"
UNIT = ROOT / "deploy" / "felis-agent.service"
ENV_EXAMPLE = ROOT / "deploy" / "felis.env.example"
VENV = "/opt/felis"

# `conntrack -S` as Debian 12's conntrack prints it, one CPU: the agent exports every key.
CONNTRACK_S = (
    "cpu=0 found=0 invalid=2 insert=0 insert_failed=0 drop=0 early_drop=0 error=0 "
    "search_restart=0 clash_resolve=0 chaintoolong=0\n"
)
# Labels that Prometheus adds on scrape, and the ones the rules make with label_replace.
TARGET_LABELS = frozenset({"job", "instance"})
MADE_LABELS = frozenset({"policy", "direction"})


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: run scripts/bootstrap.sh (Debian package prometheus)")
    return path


def run_promtool(args: Sequence[str], *, stdin: str | None = None) -> str:
    """Run promtool; fail the test with its output unless it succeeds."""
    proc = subprocess.run(
        [promtool(), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def exec_start() -> list[str]:
    """The words of the unit's ExecStart, continuation lines joined."""
    text = UNIT.read_text().replace("\\\n", " ")
    lines = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    assert len(lines) == 1, "one ExecStart"
    return shlex.split(lines[0].removeprefix("ExecStart="))


def agent_scrape() -> str:
    """/metrics of the real registry with every kind of series present: rule counters,
    conntrack figures as the CLI reads them, a skipped object and one apply."""
    counters = [
        # The seed's fast-path copies in the raw hooks, and a tracked policy in filter.
        RuleCounter(
            Family.V4, "raw", "PREROUTING", "gnp/memcached-server ingress rule 0", "h1", 52, 2904
        ),
        RuleCounter(
            Family.V4, "raw", "OUTPUT", "gnp/memcached-server egress rule 0", "h2", 50, 2800
        ),
        RuleCounter(Family.V4, "filter", "felis-pi-web", "gnp/web ingress rule 0", "h3", 5, 300),
    ]
    state = AgentState(in_sync=True, datastore_ok=True, revision=6)
    state.endpoints = ("memcached-node-1-eth0",)
    state.skipped = (SimpleNamespace(kind="GlobalNetworkPolicy", name="bad"),)
    agent = SimpleNamespace(
        state=state,
        current_spec=None,
        dataplane=SimpleNamespace(counters=lambda spec: counters),
    )
    registry, metrics = build_registry(
        agent, lambda: {"entries": 3, "max": 262144, **parse_stats(CONNTRACK_S)}
    )
    metrics.observe_apply(ApplyReport("nftables", ["IPv4 nft: 1 chain(s) added"]), 0.02)
    return generate_latest(registry).decode()


def exported(text: str) -> dict[str, frozenset[str]]:
    """Sample name -> label names, from a Prometheus text page."""
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in out.items()}


# PromQL words that look like names: functions, operators, keywords.
_KEYWORDS = frozenset(
    {
        *("by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"),
        *("and", "or", "unless", "sum", "min", "max", "avg", "count", "topk", "bottomk"),
        *("rate", "irate", "increase", "delta", "deriv", "predict_linear"),
        *("histogram_quantile", "label_replace", "clamp_min", "clamp_max", "abs", "vector"),
    }
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{([^{}]*)\}")
_MATCHER_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^()]*)\)")
_NAME = re.compile(r"(?<![A-Za-z0-9_:.$])([A-Za-z_:][A-Za-z0-9_:]*)(?![A-Za-z0-9_:(])")


def names_in(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) an expression uses. Enough for the rules and dashboard
    here: it reads selectors, label matchers, grouping clauses and label_replace targets."""
    labels: set[str] = set()
    for body in _MATCHERS.findall(expr):
        labels.update(_MATCHER_LABEL.findall(_STRING.sub('""', body)))
    for body in _GROUPING.findall(expr):
        labels.update(part.strip() for part in body.split(",") if part.strip())
    # label_replace(v, "dst", "replacement", "src", "regex"): dst and src are labels.
    for dst, src in re.findall(r',\s*"([^"]*)",\s*"[^"]*",\s*"([^"]*)",\s*"[^"]*"\s*\)', expr):
        labels.update({dst, src})
    bare = _MATCHERS.sub(" ", _GROUPING.sub(" ", _STRING.sub(" ", expr)))
    bare = re.sub(r"\[[^\]]*\]", " ", bare)  # range and offset durations
    metrics = {
        name
        for name in _NAME.findall(bare)
        if name not in _KEYWORDS and not re.fullmatch(r"[0-9.e+-]+|Inf|NaN", name)
    }
    return metrics, labels


def unknown_names(exprs: Iterable[str], recorded: Iterable[str] = ()) -> tuple[set[str], set[str]]:
    """Metric and label names used in `exprs` that the agent does not export (recorded
    series and Prometheus' own `up` aside)."""
    available = exported(agent_scrape())
    known_metrics = set(available) | set(recorded) | {"up"}
    known_labels = set().union(*available.values()) | TARGET_LABELS | MADE_LABELS | {"le"}
    metrics: set[str] = set()
    labels: set[str] = set()
    for expr in exprs:
        used_metrics, used_labels = names_in(expr)
        metrics |= used_metrics - known_metrics
        labels |= used_labels - known_labels
    return metrics, labels
