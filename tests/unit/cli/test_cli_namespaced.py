"""Namespaced kinds on the command line: -n / -A, the NAMESPACE column, delete -n, as calicoctl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import Felis, write

BUNDLE = """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: allow, namespace: team-a}
spec: {selector: all(), order: 5}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: allow, namespace: team-b}
spec: {selector: app == 'b'}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: allow}
spec: {selector: app == 'd'}
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: partners, namespace: team-a}
spec: {nets: [198.18.5.0/24]}
---
apiVersion: projectcalico.org/v3
kind: StagedKubernetesNetworkPolicy
metadata: {name: web, namespace: team-a}
spec:
  podSelector:
    matchLabels: {app: web}
    matchExpressions: [{key: tier, operator: In, values: [a, b]}]
"""


@pytest.fixture
def applied(felis: Felis, tmp_path: Path) -> Felis:
    result = felis("apply", "-f", write(tmp_path, "bundle.yaml", BUNDLE))
    assert result.code == 0, result.err
    assert result.out_lines == ["Successfully applied 5 resource(s): 5 created"]
    return felis


def test_get_defaults_to_the_default_namespace_without_a_namespace_column(applied: Felis) -> None:
    assert applied("get", "networkpolicy").out_lines == ["NAME    TIER", "allow   default"]


def test_get_n_and_all_namespaces_add_the_namespace_column(applied: Felis) -> None:
    assert applied("get", "np", "-n", "team-b").out_lines == [
        "NAMESPACE   NAME    TIER",
        "team-b      allow   default",
    ]
    assert applied("get", "policies", "-A", "-o", "wide").out_lines == [
        "NAMESPACE   NAME    TIER      ORDER   SELECTOR",
        "default     allow   default   <nil>   app == 'd'",
        "team-a      allow   default   5       all()",
        "team-b      allow   default   <nil>   app == 'b'",
    ]
    assert applied("get", "netsets", "-A", "-o", "wide").out_lines == [
        "NAMESPACE   NAME       NETS",
        "team-a      partners   198.18.5.0/24",
    ]
    assert applied("get", "sknp", "-n", "team-a", "-o", "wide").out_lines == [
        "NAMESPACE   NAME   PODSELECTOR",
        "team-a      web    &LabelSelector{MatchLabels:map[string]string{app: web,},"
        "MatchExpressions:[]LabelSelectorRequirement{LabelSelectorRequirement{Key:tier,"
        "Operator:In,Values:[a b],},},}",
    ]


def test_get_one_by_name_in_a_namespace(applied: Felis) -> None:
    got = json.loads(applied("get", "np", "allow", "-n", "team-a", "-o", "json").out)
    assert (got["metadata"]["namespace"], got["spec"]["order"]) == ("team-a", 5)
    missing = applied("get", "np", "allow", "-n", "team-c")
    assert missing.code == 1
    assert missing.err_lines[0] == "resource does not exist: NetworkPolicy(team-c/allow)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("get", "gnp", "-n", "x"), "GlobalNetworkPolicy is not namespaced"),
        (("get", "hep", "-A"), "HostEndpoint is not namespaced"),
        (("get", "np", "allow", "-A"), "cannot use --all-namespaces flag for getting a single"),
        (("get", "np", "-A", "-n", "x"), "cannot use both --namespace and --all-namespaces"),
        (("get", "np", "team-a/allow"), "may not contain '/' (give the namespace with -n)"),
        (("delete", "gns", "x", "-n", "x"), "GlobalNetworkSet is not namespaced"),
    ],
)
def test_namespace_options_misused_are_usage_errors(
    applied: Felis, args: tuple[str, ...], message: str
) -> None:
    result = applied(*args)
    assert result.code == 2
    assert message in result.err


def test_delete_n_removes_only_that_namespace(applied: Felis) -> None:
    deleted = applied("delete", "np", "allow", "-n", "team-a")
    assert deleted.out_lines == ["Successfully deleted 1 'NetworkPolicy' resource(s)"]
    remaining = applied("get", "np", "-A", "-o", "name").out_lines
    assert remaining == ["allow", "allow"]
    names = json.loads(applied("get", "np", "-A", "-o", "json").out)["items"]
    assert [o["metadata"]["namespace"] for o in names] == ["default", "team-b"]
    # Without -n, the name is in `default`.
    assert applied("delete", "np", "allow").code == 0
    again = applied("delete", "np", "allow")
    assert again.code == 1
    assert "resource does not exist: NetworkPolicy(default/allow)" in again.err


def test_delete_by_manifest_uses_the_namespaces_it_names(applied: Felis, tmp_path: Path) -> None:
    result = applied("delete", "-f", write(tmp_path, "bundle.yaml", BUNDLE))
    assert result.out_lines == ["Successfully deleted 5 resource(s)"]
    assert applied("get", "np", "-A").out_lines == ["NAMESPACE   NAME   TIER"]


def test_the_same_resource_twice_in_one_input_is_an_error(felis: Felis, tmp_path: Path) -> None:
    # Same name in another namespace is another resource; in the same namespace it is not.
    twice = BUNDLE + "---\n" + BUNDLE.split("---", maxsplit=1)[0]
    result = felis("apply", "-f", write(tmp_path, "twice.yaml", twice))
    assert result.code == 1
    assert "document 6 (NetworkPolicy allow): also given in document 1" in result.err


def test_a_missing_tier_is_refused_for_namespaced_and_staged_policies(
    felis: Felis, tmp_path: Path
) -> None:
    text = """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: team-a}
spec: {tier: security}
---
apiVersion: projectcalico.org/v3
kind: StagedGlobalNetworkPolicy
metadata: {name: security.p}
spec: {tier: security}
"""
    result = felis("apply", "-f", write(tmp_path, "tiers.yaml", text))
    assert result.code == 1
    assert len(result.err_lines) == 2
    assert all("spec.tier: resource does not exist: Tier(security)" in e for e in result.err_lines)
