"""Small builders and a compact printer for calc tests."""

from __future__ import annotations

import dataclasses
from typing import Any

from felis.calc import CalcConfig, CalcResult, HostInterface, compute
from felis.dataplane.spec import Family, Match, Rule, Table
from felis.model import from_dict
from felis.model.resources import Resource

NODE = "node-1"


def hep(
    name: str,
    *,
    node: str = NODE,
    iface: str = "",
    ips: list[str] | None = None,
    labels: dict[str, str] | None = None,
    profiles: list[str] | None = None,
    ports: list[dict[str, Any]] | None = None,
) -> Resource:
    spec: dict[str, Any] = {"node": node}
    if iface:
        spec["interfaceName"] = iface
    if ips:
        spec["expectedIPs"] = ips
    if profiles:
        spec["profiles"] = profiles
    if ports:
        spec["ports"] = ports
    return from_dict(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "HostEndpoint",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": spec,
        }
    )


def gnp(name: str, **spec: Any) -> Resource:
    spec.setdefault("selector", "all()")
    return from_dict(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "GlobalNetworkPolicy",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def gns(name: str, nets: list[str], labels: dict[str, str] | None = None) -> Resource:
    return from_dict(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "GlobalNetworkSet",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"nets": nets},
        }
    )


def profile(
    name: str,
    *,
    labels: dict[str, str] | None = None,
    ingress: list[dict[str, Any]] | None = None,
    egress: list[dict[str, Any]] | None = None,
) -> Resource:
    spec: dict[str, Any] = {}
    if labels:
        spec["labelsToApply"] = labels
    if ingress:
        spec["ingress"] = ingress
    if egress:
        spec["egress"] = egress
    return from_dict(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "Profile",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def tier(name: str, order: float | None = None, action: str | None = None) -> Resource:
    spec: dict[str, Any] = {}
    if order is not None:
        spec["order"] = order
    if action is not None:
        spec["defaultAction"] = action
    return from_dict(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "Tier",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


ETH0 = HostInterface("eth0", ("10.0.0.1/24",))


def run(
    resources: list[Resource],
    interfaces: list[HostInterface] | None = None,
    config: CalcConfig | None = None,
    node: str = NODE,
) -> CalcResult:
    return compute(resources, node, [ETH0] if interfaces is None else interfaces, config)


def fmt(rule: Rule) -> str:
    """`field=value ... -> Action` with only the fields that are set."""
    parts = []
    for f in dataclasses.fields(Match):
        value = getattr(rule.match, f.name)
        if value != getattr(Match(), f.name):
            if isinstance(value, frozenset):
                value = ",".join(sorted(v.value for v in value))
            parts.append(f"{f.name}={value}")
    action = rule.action
    parts.append(f"-> {action}" if action is not None else "-> (comment)")
    if rule.comment:
        parts.append(f"# {rule.comment}")
    return " ".join(parts)


def chain(result: CalcResult, table: Table, name: str, family: Family = Family.V4) -> list[str]:
    return [fmt(r) for r in result.spec.ruleset(family).table(table).chains[name].rules]


def chains(result: CalcResult, table: Table, family: Family = Family.V4) -> list[str]:
    return list(result.spec.ruleset(family).table(table).chains)
