"""Namespaced and staged kinds in the calculation: what Calico does with them on a host.

NetworkSets feed the IP sets of GlobalNetworkPolicy rules whose selectors reach namespaced
objects (a `namespaceSelector`); NetworkPolicies and staged policies change nothing.
"""

from __future__ import annotations

from typing import Any

from calc_helpers import ETH0, NODE, gnp, gns, hep, profile

from felis.calc import CalcResult, Calculator, compute
from felis.calc.selectors import rule_side_selector
from felis.dataplane.spec import Family
from felis.model import from_dict
from felis.model.resources import EntityRule, Resource

SERVER = hep("server", iface="eth0", labels={"role": "server"}, ips=["10.0.0.1"])


def _doc(kind: str, name: str, namespace: str | None, spec: dict[str, Any], **meta: Any) -> Any:
    metadata: dict[str, Any] = {"name": name, **meta}
    if namespace is not None:
        metadata["namespace"] = namespace
    return from_dict(
        {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": metadata, "spec": spec}
    )


def netset(name: str, namespace: str, nets: list[str], **labels: str) -> Resource:
    resource: Resource = _doc("NetworkSet", name, namespace, {"nets": nets}, labels=labels)
    return resource


def allow_from(name: str, **source: Any) -> Resource:
    return gnp(
        name,
        selector="role == 'server'",
        ingress=[{"action": "Allow", "protocol": "TCP", "source": source}],
    )


def set_name(**source: Any) -> str:
    selector = rule_side_selector(EntityRule.model_validate(source, by_alias=True))
    assert selector is not None
    return "felis4-s-" + selector.unique_id[2:24]


def members(result: CalcResult, name: str) -> set[str]:
    return set(result.spec.ruleset(Family.V4).sets[name].members)


IN_ANY_NAMESPACE = {"namespaceSelector": "all()", "selector": "role == 'client'"}


def test_network_set_members_match_rules_with_a_namespace_selector() -> None:
    result = compute(
        [
            SERVER,
            allow_from("from-namespaced-clients", **IN_ANY_NAMESPACE),
            allow_from("from-clients", selector="role == 'client'"),
            netset("clients", "team-a", ["10.1.0.0/24"], role="client"),
            gns("global-clients", ["10.2.0.0/24"], {"role": "client"}),
        ],
        NODE,
        [ETH0],
    )
    # The namespaced set carries projectcalico.org/namespace, the global one does not.
    assert members(result, set_name(**IN_ANY_NAMESPACE)) == {"10.1.0.0/24"}
    # A plain selector matches both, as in Calico.
    assert members(result, set_name(selector="role == 'client'")) == {
        "10.1.0.0/24",
        "10.2.0.0/24",
    }


def test_same_name_in_two_namespaces_are_two_sets() -> None:
    calc = Calculator(NODE)
    calc.set_interfaces([ETH0])
    for resource in (
        SERVER,
        allow_from("p", **IN_ANY_NAMESPACE),
        netset("clients", "team-a", ["10.1.0.1"], role="client"),
        netset("clients", "team-b", ["10.1.0.2"], role="client"),
    ):
        calc.upsert(resource)
    name = set_name(**IN_ANY_NAMESPACE)
    assert members(calc.result(), name) == {"10.1.0.1/32", "10.1.0.2/32"}
    calc.remove("netsets", "team-a/clients")
    assert members(calc.result(), name) == {"10.1.0.2/32"}
    # The namespace is part of the label set selectors see.
    only_b = {"namespaceSelector": "all()", "selector": "projectcalico.org/namespace == 'team-b'"}
    calc.upsert(allow_from("only-b", **only_b))
    assert members(calc.result(), set_name(**only_b)) == {"10.1.0.2/32"}


def test_network_sets_inherit_their_namespace_profile_labels() -> None:
    """Calico gives a NetworkSet the profile `kns.<namespace>`, whose labels (the namespace's,
    as `pcns.<label>`) are what a rule's namespaceSelector is matched against."""
    team_a = {"namespaceSelector": "team == 'a'"}
    calc = Calculator(NODE)
    calc.set_interfaces([ETH0])
    for resource in (
        SERVER,
        allow_from("team-a", **team_a),
        netset("db", "ns-1", ["10.5.0.0/16"]),
        netset("db", "ns-2", ["10.6.0.0/16"]),
    ):
        calc.upsert(resource)
    name = set_name(**team_a)
    assert members(calc.result(), name) == set()
    calc.upsert(profile("kns.ns-1", labels={"pcns.team": "a"}))
    assert members(calc.result(), name) == {"10.5.0.0/16"}
    calc.upsert(profile("kns.ns-1", labels={"pcns.team": "b"}))
    assert members(calc.result(), name) == set()
    calc.upsert(profile("kns.ns-2", labels={"pcns.team": "a"}))
    assert members(calc.result(), name) == {"10.6.0.0/16"}
    calc.remove("Profile", "kns.ns-2")
    assert members(calc.result(), name) == set()


NO_EFFECT = [
    _doc(
        "NetworkPolicy",
        "deny-all",
        "default",
        {"selector": "all()", "types": ["Ingress", "Egress"], "ingress": [{"action": "Deny"}]},
    ),
    _doc(
        "StagedGlobalNetworkPolicy",
        "staged-deny",
        None,
        {
            "selector": "all()",
            "doNotTrack": True,
            "applyOnForward": True,
            "ingress": [{"action": "Deny"}],
        },
    ),
    _doc("StagedNetworkPolicy", "staged", "default", {"stagedAction": "Delete"}),
    _doc(
        "StagedKubernetesNetworkPolicy",
        "k8s",
        "default",
        {"podSelector": {}, "policyTypes": ["Ingress"]},
    ),
]


def test_namespaced_and_staged_policies_change_nothing_on_a_host() -> None:
    base = [SERVER, allow_from("from-clients", selector="role == 'client'")]
    without = compute(base, NODE, [ETH0])
    with_them = compute([*base, *NO_EFFECT], NODE, [ETH0])
    assert with_them.spec == without.spec
    assert with_them.skipped == []
    calc = Calculator(NODE)
    calc.set_interfaces([ETH0])
    for resource in [*base, *NO_EFFECT]:
        calc.upsert(resource)
    calc.remove("NetworkPolicy", "default/deny-all")
    calc.remove("sgnp", "staged-deny")
    assert calc.result().spec == without.spec
