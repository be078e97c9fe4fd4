"""Calico's namespaced kinds felis stores: NetworkPolicy and NetworkSet.

A namespaced resource is identified by its namespace and its name. Where felis needs that
identity as one string (datastore keys, `felis get` arguments, messages) it writes
`<namespace>/<name>`, as calicoctl names them (`NetworkPolicy(team-a/allow-dns)`) and as Calico's
etcd layout keys them. An object without `metadata.namespace` is in `default`, as calicoctl
decides for a manifest that names none.

Neither kind does anything to a host endpoint: a NetworkPolicy selects workload endpoints only,
and a NetworkSet is only a source of addresses, which a GlobalNetworkPolicy rule with a
`namespaceSelector` can match (docs/resources.md).
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal, cast

from pydantic import Field

from felis.model import checks
from felis.model import validate as _validate
from felis.model.resources import (
    GlobalNetworkSetSpec,
    ObjectMeta,
    PerformanceHint,
    PolicyType,
    Rule,
    Str,
    _Model,
    _Resource,
)
from felis.model.validate import KIND_RULES, KindRules
from felis.model.validate_meta import Problem, _q

DEFAULT_NAMESPACE: Final = "default"

# calicoctl keeps this prefix for the Kubernetes NetworkPolicies Calico mirrors into etcd.
K8S_POLICY_PREFIX: Final = "knp.default."

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = _LABEL + r"(\." + _LABEL + r")*"
# One optional dot, or the prefixes of Kubernetes policies Calico stores under its own kind.
NETWORK_POLICY_NAME_RE = re.compile(
    rf"({_LABEL})(\.{_LABEL})?|((?:knp|ossg)\.default\.({_SUBDOMAIN}))"
)
_NAMESPACE_RE = re.compile(_LABEL)


class NetworkPolicySpec(_Model):
    tier: Str = ""
    order: float | None = None
    ingress: list[Rule] = Field(default_factory=list, max_length=1024)
    egress: list[Rule] = Field(default_factory=list, max_length=1024)
    selector: Str = Field("", max_length=1024)
    types: list[PolicyType] = Field(default_factory=list, max_length=2)
    service_account_selector: Str = Field("", alias="serviceAccountSelector", max_length=1024)
    performance_hints: list[PerformanceHint] = Field(default_factory=list, alias="performanceHints")


class NetworkPolicy(_Resource):
    kind: Literal["NetworkPolicy"] = "NetworkPolicy"
    spec: NetworkPolicySpec = Field(default_factory=NetworkPolicySpec)


class NetworkSet(_Resource):
    kind: Literal["NetworkSet"] = "NetworkSet"
    # A NetworkSet's spec is a GlobalNetworkSet's (Calico shares the type too).
    spec: GlobalNetworkSetSpec = Field(default_factory=GlobalNetworkSetSpec)


def qualified_name(resource: Any) -> str:
    """`<namespace>/<name>` for a namespaced resource, the bare name for any other (only
    namespaced kinds may carry a namespace: validation refuses it elsewhere)."""
    meta: ObjectMeta = resource.metadata
    return f"{meta.namespace}/{meta.name}" if meta.namespace else meta.name


# --------------------------------------------------------------------------- shared rules


def default_namespace(resource: Any) -> None:
    meta: ObjectMeta = resource.metadata
    if not meta.namespace:
        meta.namespace = DEFAULT_NAMESPACE


def default_namespaced_policy(policy: Any) -> None:
    default_namespace(policy)
    _validate.default_policy(policy)


def check_namespace(meta: ObjectMeta, problems: list[Problem]) -> None:
    """A Kubernetes namespace name: one DNS label. Calico's validator takes any string, but the
    namespace is a segment of the object's etcd key, where a '/' would make another key."""
    namespace = meta.namespace
    reasons = []
    if len(namespace) > checks.DNS1123_LABEL_MAX:
        reasons.append(f"must be no more than {checks.DNS1123_LABEL_MAX} characters")
    if not _NAMESPACE_RE.fullmatch(namespace):
        reasons.append(
            "must be a lowercase RFC 1123 label: lower case alphanumeric characters or '-', "
            "starting and ending with an alphanumeric character"
        )
    problems.extend(
        ("metadata.namespace", f"invalid namespace '{_q(namespace)}': {r}") for r in reasons
    )


def network_policy_name_reasons(name: str) -> list[str]:
    """NetworkPolicy and StagedNetworkPolicy names: a DNS label with at most one dot (or the
    `knp.default.` / `ossg.default.` forms Calico gives mirrored Kubernetes policies)."""
    return checks._name_reasons(
        name,
        checks.DNS1123_SUBDOMAIN_MAX,
        NETWORK_POLICY_NAME_RE,
        "lower case alphanumeric characters or '-', with at most one "
        f"'.' (regex: ({_LABEL})(\\.{_LABEL})?)",
    )


def check_network_policy_spec(spec: NetworkPolicySpec, problems: list[Problem]) -> None:
    """Calico's NetworkPolicy spec checks, also those of a staged one that sets a policy."""
    _validate.check_policy_header(spec, problems)
    _validate.check_policy_rules(spec, problems, namespaced=True)


# --------------------------------------------------------------------------- the kinds


def _check_network_policy(policy: NetworkPolicy, problems: list[Problem]) -> None:
    check_namespace(policy.metadata, problems)
    if policy.metadata.name.startswith(K8S_POLICY_PREFIX):
        problems.append(
            (
                "metadata.name",
                f"the prefix '{K8S_POLICY_PREFIX}' is reserved: kubernetes network policies "
                "must be managed through the kubernetes API",
            )
        )
    check_network_policy_spec(policy.spec, problems)


def _check_network_set(netset: NetworkSet, problems: list[Problem]) -> None:
    check_namespace(netset.metadata, problems)
    # The same rules as a GlobalNetworkSet's: its labels and its nets.
    _validate._check_gns(cast(Any, netset), problems)


KIND_RULES["NetworkPolicy"] = KindRules(
    name_reasons=network_policy_name_reasons,
    check=_check_network_policy,
    defaults=default_namespaced_policy,
    namespaced=True,
)
KIND_RULES["NetworkSet"] = KindRules(
    name_reasons=checks.resource_name_reasons,
    check=_check_network_set,
    defaults=default_namespace,
    namespaced=True,
)
