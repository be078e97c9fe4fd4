"""Calico's staged policies: StagedGlobalNetworkPolicy, StagedNetworkPolicy and
StagedKubernetesNetworkPolicy.

A staged policy is a proposal: it says what a policy of the same name would become (`stagedAction:
Set`, the default) or that it would go (`Delete`). Calico reports what it would have done to flows
and never programs it, so on a host felis stores it and does nothing with it.

Each is validated as the policy it would become, except that a `Delete` must carry nothing but its
tier (the Kubernetes one: nothing at all). Calico's client drops the defaulted `types` of a
`Delete` before that check, so `types` is never the reason one fails.
"""

from __future__ import annotations

from typing import Any, Literal, cast

from pydantic import Field

from felis.model import checks
from felis.model import validate as _validate
from felis.model.namespaced import (
    NetworkPolicySpec,
    check_namespace,
    check_network_policy_spec,
    default_namespace,
    default_namespaced_policy,
    network_policy_name_reasons,
)
from felis.model.resources import GlobalNetworkPolicySpec, PolicyType, Str, _Model, _Resource
from felis.model.validate import KIND_RULES, KindRules
from felis.model.validate_meta import Problem
from felis.model.values import Port

StagedAction = Literal["Set", "Delete", "Learn", "Ignore"]

_DELETE_KEEPS = frozenset({"tier", "staged_action", "types"})


class StagedGlobalNetworkPolicySpec(GlobalNetworkPolicySpec):
    staged_action: StagedAction | None = Field(None, alias="stagedAction")


class StagedNetworkPolicySpec(NetworkPolicySpec):
    staged_action: StagedAction | None = Field(None, alias="stagedAction")


class StagedGlobalNetworkPolicy(_Resource):
    kind: Literal["StagedGlobalNetworkPolicy"] = "StagedGlobalNetworkPolicy"
    spec: StagedGlobalNetworkPolicySpec = Field(default_factory=StagedGlobalNetworkPolicySpec)


class StagedNetworkPolicy(_Resource):
    kind: Literal["StagedNetworkPolicy"] = "StagedNetworkPolicy"
    spec: StagedNetworkPolicySpec = Field(default_factory=StagedNetworkPolicySpec)


# --------------------------------------------------------------------------- Kubernetes form
# The networking.k8s.io/v1 NetworkPolicy spec, as a StagedKubernetesNetworkPolicy carries it.


class LabelSelectorRequirement(_Model):
    key: Str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[Str] = Field(default_factory=list)


class LabelSelector(_Model):
    match_labels: dict[str, Str] = Field(default_factory=dict, alias="matchLabels")
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, alias="matchExpressions"
    )


class IPBlock(_Model):
    cidr: Str
    except_: list[Str] = Field(default_factory=list, alias="except")


class NetworkPolicyPeer(_Model):
    pod_selector: LabelSelector | None = Field(None, alias="podSelector")
    namespace_selector: LabelSelector | None = Field(None, alias="namespaceSelector")
    ip_block: IPBlock | None = Field(None, alias="ipBlock")


class NetworkPolicyPort(_Model):
    protocol: Literal["TCP", "UDP", "SCTP"] | None = None
    port: int | str | None = None
    end_port: int | None = Field(None, alias="endPort")


class NetworkPolicyIngressRule(_Model):
    ports: list[NetworkPolicyPort] = Field(default_factory=list)
    from_: list[NetworkPolicyPeer] = Field(default_factory=list, alias="from")


class NetworkPolicyEgressRule(_Model):
    ports: list[NetworkPolicyPort] = Field(default_factory=list)
    to: list[NetworkPolicyPeer] = Field(default_factory=list)


class StagedKubernetesNetworkPolicySpec(_Model):
    staged_action: StagedAction | None = Field(None, alias="stagedAction")
    pod_selector: LabelSelector = Field(default_factory=LabelSelector, alias="podSelector")
    ingress: list[NetworkPolicyIngressRule] = Field(default_factory=list)
    egress: list[NetworkPolicyEgressRule] = Field(default_factory=list)
    policy_types: list[PolicyType] = Field(default_factory=list, alias="policyTypes", max_length=2)


class StagedKubernetesNetworkPolicy(_Resource):
    kind: Literal["StagedKubernetesNetworkPolicy"] = "StagedKubernetesNetworkPolicy"
    spec: StagedKubernetesNetworkPolicySpec = Field(
        default_factory=StagedKubernetesNetworkPolicySpec
    )


# --------------------------------------------------------------------------- checks


def _delete_problem(spec: Any, keeps: frozenset[str], what: str) -> list[Problem]:
    """A `Delete` that still sets other fields, naming them."""
    fields = type(spec).model_fields
    extra = [
        fields[name].alias or name
        for name in fields
        if name not in keeps
        and getattr(spec, name) != fields[name].get_default(call_default_factory=True)
    ]
    if not extra:
        return []
    reason = f"{what} should all be zero-value if stagedAction is Delete (set: {', '.join(extra)})"
    return [("spec", reason)]


def _default_staged(policy: Any) -> None:
    if policy.kind == "StagedNetworkPolicy":
        default_namespaced_policy(policy)
    else:
        _validate.default_policy(policy)
    if policy.spec.staged_action == "Delete":
        policy.spec.types = []


def _check_staged_global(policy: StagedGlobalNetworkPolicy, problems: list[Problem]) -> None:
    if policy.spec.staged_action == "Delete":
        problems += _delete_problem(policy.spec, _DELETE_KEEPS, "Spec fields, except Tier,")
        return
    _validate._check_gnp(cast(Any, policy), problems)


def _check_staged(policy: StagedNetworkPolicy, problems: list[Problem]) -> None:
    check_namespace(policy.metadata, problems)
    if policy.spec.staged_action == "Delete":
        problems += _delete_problem(policy.spec, _DELETE_KEEPS, "Spec fields, except Tier,")
        return
    check_network_policy_spec(policy.spec, problems)


def _check_staged_kubernetes(
    policy: StagedKubernetesNetworkPolicy, problems: list[Problem]
) -> None:
    check_namespace(policy.metadata, problems)
    spec = policy.spec
    if spec.staged_action == "Delete":
        problems += _delete_problem(spec, frozenset({"staged_action"}), "Spec fields")
        return
    # Calico validates the policy this one would become; the one conversion that can fail is
    # a port's, so that is what is refused (the rest, the API server checks in Kubernetes).
    sides: tuple[tuple[str, list[list[NetworkPolicyPort]]], ...] = (
        ("ingress", [rule.ports for rule in spec.ingress]),
        ("egress", [rule.ports for rule in spec.egress]),
    )
    for direction, rules in sides:
        for index, ports in enumerate(rules):
            for number, port in enumerate(ports):
                _check_k8s_port(port, f"spec.{direction}[{index}].ports[{number}]", problems)


def _check_k8s_port(port: NetworkPolicyPort, path: str, problems: list[Problem]) -> None:
    if port.port is None:
        return
    text = str(port.port)
    if port.end_port is not None:
        text += f":{port.end_port}"
    try:
        Port.parse(text)
    except ValueError as err:
        where = f"{path}.endPort" if port.end_port is not None else f"{path}.port"
        problems.append((where, f"cannot be converted to a Calico policy: {err}"))


KIND_RULES["StagedGlobalNetworkPolicy"] = KindRules(
    name_reasons=checks.policy_name_reasons,
    check=_check_staged_global,
    defaults=_default_staged,
)
KIND_RULES["StagedNetworkPolicy"] = KindRules(
    name_reasons=network_policy_name_reasons,
    check=_check_staged,
    defaults=_default_staged,
    namespaced=True,
)
KIND_RULES["StagedKubernetesNetworkPolicy"] = KindRules(
    name_reasons=checks.resource_name_reasons,
    check=_check_staged_kubernetes,
    defaults=default_namespace,
    namespaced=True,
)

__all__ = [
    "StagedAction",
    "StagedGlobalNetworkPolicy",
    "StagedGlobalNetworkPolicySpec",
    "StagedKubernetesNetworkPolicy",
    "StagedKubernetesNetworkPolicySpec",
    "StagedNetworkPolicy",
    "StagedNetworkPolicySpec",
]
