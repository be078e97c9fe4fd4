"""Calico's defaulting and cross-field validation rules (docs/calico-semantics.md#defaults,
docs/calico-semantics.md#validation).

The pydantic models enforce types, enums and size limits; everything that needs more than
one value, or a parser, lives here. Each check appends `(path, reason)` pairs so that a
manifest gets every problem reported at once. Comments name the check families of
docs/calico-semantics.md#validation (metadata, policy, rules, entity rules, host endpoints, …).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from felis.model import checks
from felis.model.constants import BUILTIN_TIERS_BY_NAME, CALICO_PROTOCOL_NAMES, DEFAULT_TIER
from felis.model.paths import join
from felis.model.validate_meta import Problem, _is_rfc3339, _q, check_annotations, check_labels

if TYPE_CHECKING:
    from felis.model.namespaced import NetworkPolicySpec
    from felis.model.resources import (
        EntityRule,
        GlobalNetworkPolicy,
        GlobalNetworkPolicySpec,
        GlobalNetworkSet,
        HostEndpoint,
        ObjectMeta,
        Profile,
        Resource,
        Rule,
        Tier,
    )
    from felis.model.values import Port, ProtocolValue


TIER_LABEL = "projectcalico.org/tier"
NAMESPACE_LABEL = "projectcalico.org/namespace"

GLOBAL_ONLY_IN_NAMESPACE_SELECTOR = "global() can only be used in an EntityRule namespaceSelector"
_PORTS_NEED_PROTOCOL = "rules that specify ports must set protocol to TCP or UDP or SCTP"
_NUMERIC_PORTS_NEED_PROTOCOL = (
    "rules with numeric port or port range must set protocol to TCP or UDP or SCTP"
)
_PROTOCOL_NAMES = ", ".join(CALICO_PROTOCOL_NAMES)


def _no_defaults(resource: Any) -> None:
    pass


@dataclass(frozen=True, slots=True)
class KindRules:
    """Defaulting and checks of a kind modelled in its own module (felis.model.namespaced,
    felis.model.staged), which registers them in KIND_RULES when it is imported."""

    name_reasons: Callable[[str], list[str]]
    check: Callable[[Any, list[Problem]], None]
    defaults: Callable[[Any], None] = _no_defaults
    namespaced: bool = False


KIND_RULES: dict[str, KindRules] = {}


# --------------------------------------------------------------------------- defaulting


def apply_defaults(resource: Resource) -> None:
    """Calico's defaults (docs/calico-semantics.md#defaults): policy types, policy tier and tier
    label; a tier's default action."""
    rules = KIND_RULES.get(resource.kind)
    if rules is not None:
        rules.defaults(resource)
    elif resource.kind == "GlobalNetworkPolicy":
        default_policy(resource)
    elif resource.kind == "Tier" and resource.spec.default_action is None:
        resource.spec.default_action = "Deny"


def default_policy(policy: Any) -> None:
    """Calico's defaulting of every policy kind with Calico rules: types from the rules
    present, the default tier, and the tier label."""
    spec = policy.spec
    if not spec.types:
        if not spec.egress:
            spec.types = ["Ingress"]
        elif not spec.ingress:
            spec.types = ["Egress"]
        else:
            spec.types = ["Ingress", "Egress"]
    if not spec.tier:
        spec.tier = DEFAULT_TIER
    labels = policy.metadata.labels
    if labels.get(TIER_LABEL) != spec.tier:
        labels[TIER_LABEL] = spec.tier


# --------------------------------------------------------------------------- entry point


def check_resource(resource: Resource) -> list[Problem]:
    problems: list[Problem] = []
    _check_metadata(resource.metadata, resource.kind, problems)
    if resource.kind == "GlobalNetworkPolicy":
        _check_gnp(resource, problems)
    elif resource.kind == "HostEndpoint":
        _check_hep(resource, problems)
    elif resource.kind == "GlobalNetworkSet":
        _check_gns(resource, problems)
    elif resource.kind == "Tier":
        _check_tier(resource, problems)
    elif resource.kind == "Profile":
        _check_profile(resource, problems)
    rules = KIND_RULES.get(resource.kind)
    if rules is not None:
        rules.check(resource, problems)
    return problems


def write_problems(resource: Resource, operation: Literal["create", "update"]) -> list[Problem]:
    """The write-time metadata checks (docs/calico-semantics.md#metadata), which Calico's client
    library makes when it writes rather than on load."""
    meta = resource.metadata
    if operation == "create":
        if meta.resource_version:
            return [
                (
                    "metadata.resourceVersion",
                    "field must not be set for a Create request (use apply or replace)",
                )
            ]
        return []
    problems = []
    if not meta.resource_version:
        problems.append(("metadata.resourceVersion", "field must be set for an Update request"))
    if not meta.uid:
        problems.append(("metadata.uid", "field must be set for an Update request"))
    if not meta.creation_timestamp:
        problems.append(("metadata.creationTimestamp", "field must be set for an Update request"))
    return problems


# --------------------------------------------------------------------------- metadata


def _check_metadata(meta: ObjectMeta, kind: str, problems: list[Problem]) -> None:
    if kind == "GlobalNetworkPolicy":
        reasons = checks.policy_name_reasons(meta.name)
    elif kind == "Tier":
        reasons = checks.tier_name_reasons(meta.name)
    else:
        reasons = checks.resource_name_reasons(meta.name)
    rules = KIND_RULES.get(kind)
    if rules is not None:
        reasons = rules.name_reasons(meta.name)
    problems.extend(("metadata.name", r) for r in reasons)
    if meta.namespace and not (rules is not None and rules.namespaced):
        problems.append(
            (
                "metadata.namespace",
                "namespace should not be specified for a non-namespaced resource. "
                f"{kind} is not a namespaced resource",
            )
        )
    for field, stamp in (
        ("creationTimestamp", meta.creation_timestamp),
        ("deletionTimestamp", meta.deletion_timestamp),
    ):
        if stamp is not None and not _is_rfc3339(stamp):
            problems.append((f"metadata.{field}", f"invalid RFC3339 time '{_q(stamp)}'"))
    check_labels(meta.labels, "metadata.labels", problems)
    check_annotations(meta.annotations, "metadata.annotations", problems)


# --------------------------------------------------------------------------- GlobalNetworkPolicy


def _check_selector(text: str, path: str, problems: list[Problem], *, no_global: bool) -> None:
    if not text:
        return
    reason = checks.selector_reason(text)
    if reason:
        problems.append((path, reason))
    if no_global and "global(" in text:
        problems.append((path, GLOBAL_ONLY_IN_NAMESPACE_SELECTOR))


def _check_gnp(policy: GlobalNetworkPolicy, problems: list[Problem]) -> None:
    spec = policy.spec
    check_policy_header(spec, problems, namespace_selector=spec.namespace_selector)
    _check_gnp_flags(spec, problems)
    check_policy_rules(spec, problems)


def check_policy_header(
    spec: GlobalNetworkPolicySpec | NetworkPolicySpec,
    problems: list[Problem],
    *,
    namespace_selector: str | None = None,
) -> None:
    """What every policy kind checks before its own flags: tier, selectors, types, hints."""
    if spec.tier and spec.tier != DEFAULT_TIER and not checks.is_valid_name(spec.tier):
        problems.append(
            ("spec.tier", f"invalid tier name '{_q(spec.tier)}': must be a valid resource name")
        )
    _check_selector(spec.selector, "spec.selector", problems, no_global=True)
    if namespace_selector is not None:
        _check_selector(namespace_selector, "spec.namespaceSelector", problems, no_global=True)
    _check_selector(
        spec.service_account_selector, "spec.serviceAccountSelector", problems, no_global=True
    )
    seen: set[str] = set()
    for policy_type in spec.types:
        if policy_type in seen:
            problems.append(("spec.types", f"'{policy_type}' type specified more than once"))
        seen.add(policy_type)
    if len(set(spec.performance_hints)) != len(spec.performance_hints):
        problems.append(("spec.performanceHints", "duplicate performance hint"))


def check_policy_rules(
    spec: GlobalNetworkPolicySpec | NetworkPolicySpec,
    problems: list[Problem],
    *,
    namespaced: bool = False,
) -> None:
    for direction, rules in (("ingress", spec.ingress), ("egress", spec.egress)):
        for index, rule in enumerate(rules):
            rule_path = f"spec.{direction}[{index}]"
            check_rule(rule, rule_path, problems)
            _check_rule_direction(rule, rule_path, direction, problems, namespaced=namespaced)


def _check_gnp_flags(spec: GlobalNetworkPolicySpec, problems: list[Problem]) -> None:
    if spec.do_not_track and spec.pre_dnat:
        problems.append(("spec.preDNAT", "preDNAT and doNotTrack cannot both be true"))
    if spec.pre_dnat and spec.egress:
        problems.append(("spec.egress", "preDNAT policy cannot have any egress rules"))
    if spec.pre_dnat and "Egress" in spec.types:
        problems.append(("spec.types", "preDNAT policy cannot have 'Egress' type"))
    if (spec.do_not_track or spec.pre_dnat) and not spec.apply_on_forward:
        problems.append(
            (
                "spec.applyOnForward",
                "applyOnForward must be true if either preDNAT or doNotTrack is true",
            )
        )


def _check_rule_direction(
    rule: Rule, path: str, direction: str, problems: list[Problem], *, namespaced: bool = False
) -> None:
    """Where services and HTTP matches may appear in a policy (docs/calico-semantics.md#policy).
    A namespaced policy's service references default to its own namespace, so only a global one
    must name it."""
    if direction == "egress":
        if rule.source.services is not None:
            problems.append((f"{path}.source.services", "not allowed in egress rule source"))
        if rule.http is not None:
            wording = "not allowed in egress rule" if namespaced else "not allowed in egress rules"
            problems.append((f"{path}.http", wording))
        services = rule.destination.services
        if services is not None and not services.namespace and not namespaced:
            problems.append((f"{path}.destination.services.namespace", "must specify a namespace"))
    else:
        if rule.destination.services is not None:
            problems.append(
                (f"{path}.destination.services", "not allowed in ingress rule destination")
            )
        services = rule.source.services
        if services is not None and not services.namespace and not namespaced:
            problems.append((f"{path}.source.services.namespace", "must specify a namespace"))


# --------------------------------------------------------------------------- Rule


def _protocol_problem(protocol: ProtocolValue, path: str, problems: list[Problem]) -> None:
    reason = protocol.invalid_reason()
    if reason == "protocol number invalid":
        problems.append((path, "protocol number invalid: 0 (must be 1-255)"))
    elif reason:
        problems.append(
            (
                path,
                f"protocol name invalid: '{_q(protocol.value)}' (must be a number 1-255 or "
                f"one of {_PROTOCOL_NAMES}, exact case)",
            )
        )


def check_rule(rule: Rule, path: str, problems: list[Problem]) -> None:
    """The rule checks and the entity-rule checks of one rule (docs/calico-semantics.md#rules,
    docs/calico-semantics.md#entity-rules)."""
    protocol = rule.protocol
    if protocol is not None:
        _protocol_problem(protocol, f"{path}.protocol", problems)
    if rule.not_protocol is not None:
        _protocol_problem(rule.not_protocol, f"{path}.notProtocol", problems)

    # Ports only make sense with a port-carrying protocol.
    for side_name, side in (("source", rule.source), ("destination", rule.destination)):
        for list_name, ports in (("ports", side.ports), ("notPorts", side.not_ports)):
            if not ports:
                continue
            list_path = f"{path}.{side_name}.{list_name}"
            if protocol is None:
                if not all(p.name for p in ports):
                    problems.append((list_path, _NUMERIC_PORTS_NEED_PROTOCOL))
            elif not protocol.supports_ports:
                problems.append((list_path, _PORTS_NEED_PROTOCOL))

    # ICMP fields and IP version.
    if rule.icmp is not None and not (
        protocol is not None and (protocol.is_("ICMP") or protocol.is_("ICMPv6"))
    ):
        problems.append((f"{path}.icmp", "ICMP fields require protocol to be ICMP or ICMPv6"))
    for field, icmp in (("icmp", rule.icmp), ("notICMP", rule.not_icmp)):
        if icmp is not None and icmp.code is not None and icmp.type is None:
            problems.append((f"{path}.{field}.code", "ICMP code specified without an ICMP type"))
    if rule.ip_version is not None:
        for field, proto in (("protocol", protocol), ("notProtocol", rule.not_protocol)):
            if proto is None:
                continue
            if proto.is_("ICMP") and rule.ip_version != 4:
                problems.append((f"{path}.{field}", "protocol ICMP requires ipVersion 4"))
            if proto.is_("ICMPv6") and rule.ip_version != 6:
                problems.append((f"{path}.{field}", "protocol ICMPv6 requires ipVersion 6"))

    _check_rule_nets(rule, path, problems)
    check_entity_rule(rule.source, f"{path}.source", problems)
    check_entity_rule(rule.destination, f"{path}.destination", problems)
    if rule.destination.services is not None and (
        rule.destination.ports or rule.destination.not_ports
    ):
        problems.append(
            (f"{path}.destination", "ports and notPorts cannot be specified with services")
        )
    if rule.http is not None:
        _check_http(rule, f"{path}.http", problems)
    if rule.metadata is not None:
        check_annotations(rule.metadata.annotations, f"{path}.metadata.annotations", problems)


def _check_rule_nets(rule: Rule, path: str, problems: list[Problem]) -> None:
    """CIDR syntax and masking, one IP family, no negated catch-all."""
    seen_v4 = seen_v6 = False
    for side_name, side in (("source", rule.source), ("destination", rule.destination)):
        for list_name, nets in (("nets", side.nets), ("notNets", side.not_nets)):
            if not nets:
                continue
            list_path = f"{path}.{side_name}.{list_name}"
            negated = list_name == "notNets"
            v4 = v6 = False
            for index, text in enumerate(nets):
                cidr = checks.parse_cidr(text)
                if cidr is None:
                    problems.append(
                        (
                            f"{list_path}[{index}]",
                            f"invalid CIDR '{_q(text)}' (rules need address/prefix-length)",
                        )
                    )
                    continue
                if not cidr.strictly_masked:
                    problems.append(
                        (
                            f"{list_path}[{index}]",
                            f"invalid network '{_q(text)}': host bits must be zero "
                            f"(did you mean {cidr.network}?)",
                        )
                    )
                v4 = v4 or cidr.version == 4
                v6 = v6 or cidr.version == 6
                if negated and (
                    (cidr.version == 4 and text == "0.0.0.0/0")
                    or (cidr.version == 6 and cidr.network.prefixlen == 0)
                ):
                    problems.append(
                        (
                            f"{list_path}[{index}]",
                            "catch-all CIDR in negation creates logical contradiction "
                            "(matches no traffic)",
                        )
                    )
            if rule.ip_version is not None and (
                (v4 and rule.ip_version != 4) or (v6 and rule.ip_version != 6)
            ):
                problems.append((list_path, "rule IP version doesn't match CIDR version"))
            if (v4 and seen_v6) or (v6 and seen_v4) or (v4 and v6):
                problems.append((list_path, "rule contains both IPv4 and IPv6 CIDRs"))
            seen_v4 = seen_v4 or v4
            seen_v6 = seen_v6 or v6


def check_port(port: Port, path: str, problems: list[Problem]) -> None:
    """What the decoder cannot already guarantee about a port value
    (docs/calico-semantics.md#port-values)."""
    if port.min_port > port.max_port:
        problems.append((path, "port range invalid"))
    if port.name:
        if port.min_port or port.max_port:
            problems.append(
                (path, "named port invalid, if name is specified, min and max should be 0")
            )
    elif port.min_port < 1 or port.max_port < 1:
        problems.append((path, "port range invalid, port number must be between 1 and 65535"))


def check_entity_rule(entity: EntityRule, path: str, problems: list[Problem]) -> None:
    """The entity-rule checks of one side (source or destination) of a rule."""
    _check_selector(entity.selector, f"{path}.selector", problems, no_global=True)
    _check_selector(entity.not_selector, f"{path}.notSelector", problems, no_global=False)
    ns_selector = entity.namespace_selector
    if ns_selector:
        _check_selector(ns_selector, f"{path}.namespaceSelector", problems, no_global=False)
        if "global(" in ns_selector and not checks.is_lone_global(ns_selector):
            problems.append(
                (f"{path}.namespaceSelector", "global() cannot be combined with other selectors")
            )
    accounts = entity.service_accounts
    if accounts is not None:
        _check_selector(
            accounts.selector, f"{path}.serviceAccounts.selector", problems, no_global=False
        )
    for list_name, ports in (("ports", entity.ports), ("notPorts", entity.not_ports)):
        for index, port in enumerate(ports):
            check_port(port, f"{path}.{list_name}[{index}]", problems)
    services = entity.services
    if services is None:
        return
    services_path = f"{path}.services"
    if not services.name:
        problems.append((f"{services_path}.name", "services must specify a service name"))
    elif not checks.is_valid_name(services.name):
        problems.append((f"{services_path}.name", f"invalid service name '{_q(services.name)}'"))
    if services.namespace and not checks.is_valid_name(services.namespace):
        problems.append(
            (f"{services_path}.namespace", f"invalid namespace name '{_q(services.namespace)}'")
        )
    if ns_selector:
        problems.append(
            (services_path, "cannot specify NamespaceSelector and Services on the same rule")
        )
    if accounts is not None:
        problems.append(
            (services_path, "cannot specify ServiceAccounts and Services on the same rule")
        )
    if entity.selector or entity.not_selector:
        problems.append(
            (services_path, "cannot specify Selector/NotSelector and Services on the same rule")
        )
    if entity.nets or entity.not_nets:
        problems.append(
            (services_path, "cannot specify Nets/NotNets and Services on the same rule")
        )


def _check_http(rule: Rule, path: str, problems: list[Problem]) -> None:
    """Where an HTTP match may appear, and what it may hold."""
    http = rule.http
    assert http is not None
    if rule.action != "Allow":
        problems.append((path, "HTTP match is only valid on Allow rules"))
    protocol = rule.protocol
    if protocol is not None and not protocol.is_("TCP"):
        problems.append((path, "rules with HTTP match must have protocol TCP or unset"))
    if len(set(http.methods)) != len(http.methods):
        methods = " ".join(_q(m) for m in http.methods)
        problems.append((f"{path}.methods", f"Invalid methods (duplicates): [{methods}]"))
    for index, match in enumerate(http.paths):
        match_path = f"{path}.paths[{index}]"
        if match.exact and match.prefix:
            problems.append((match_path, "Invalid path match. Both 'exact' and 'prefix' are set"))
            continue
        value = match.exact or match.prefix
        if not value:
            problems.append(
                (match_path, "Invalid path match. Either 'exact' or 'prefix' must be set")
            )
        elif not value.startswith("/") or any(c in value for c in "? #"):
            problems.append(
                (
                    match_path,
                    f"Invalid path {_q(value)} (must start with `/` and not contain `?`, `#` "
                    "or a space)",
                )
            )


# --------------------------------------------------------------------------- HostEndpoint


def _check_hep(hep: HostEndpoint, problems: list[Problem]) -> None:
    spec = hep.spec
    if not spec.node:
        problems.append(("spec.node", "node must be specified"))
    elif not checks.is_valid_name(spec.node):
        problems.append(
            ("spec.node", f"invalid node name '{_q(spec.node)}': must be a valid resource name")
        )
    if not spec.interface_name and not spec.expected_ips:
        problems.append(("spec", "at least one of interfaceName or expectedIPs must be specified"))
    if spec.interface_name and not checks.is_valid_interface(spec.interface_name):
        problems.append(
            (
                "spec.interfaceName",
                f"invalid interface name '{_q(spec.interface_name)}': must be '*' or 1-15 "
                "characters from a-z A-Z 0-9 _ . -",
            )
        )
    for index, address in enumerate(spec.expected_ips):
        if not checks.is_valid_ip(address):
            problems.append(
                (
                    f"spec.expectedIPs[{index}]",
                    f"invalid IP address '{_q(address)}' (an address, without a prefix length)",
                )
            )
    for index, profile in enumerate(spec.profiles):
        if not checks.is_valid_name(profile):
            problems.append(
                (
                    f"spec.profiles[{index}]",
                    f"invalid profile name '{_q(profile)}': must be a valid resource name",
                )
            )
    for index, port in enumerate(spec.ports):
        port_path = f"spec.ports[{index}]"
        problems.extend(
            (f"{port_path}.name", f"invalid port name '{_q(port.name)}': {r}")
            for r in checks.port_name_reasons(port.name)
        )
        _protocol_problem(port.protocol, f"{port_path}.protocol", problems)
        if not port.protocol.supports_ports:
            problems.append(
                (f"{port_path}.protocol", "EndpointPort protocol does not support ports.")
            )


# --------------------------------------------------------------------------- GlobalNetworkSet


def _check_gns(gns: GlobalNetworkSet, problems: list[Problem]) -> None:
    if NAMESPACE_LABEL in gns.metadata.labels:
        problems.append(
            (
                join("metadata.labels", NAMESPACE_LABEL),
                f"{NAMESPACE_LABEL} is not a valid label name",
            )
        )
    for index, text in enumerate(gns.spec.nets):
        if checks.parse_cidr_or_ip(text) is None:
            problems.append((f"spec.nets[{index}]", f"invalid CIDR or IP address '{_q(text)}'"))


# --------------------------------------------------------------------------- Profile


def _check_profile(profile: Profile, problems: list[Problem]) -> None:
    """Calico checks a profile's rules one by one, as any rule; unlike a policy's, its rules
    have no direction checks, since Calico validates no profile spec as a whole."""
    spec = profile.spec
    check_labels(spec.labels_to_apply, "spec.labelsToApply", problems)
    for direction, rules in (("ingress", spec.ingress), ("egress", spec.egress)):
        for index, rule in enumerate(rules):
            check_rule(rule, f"spec.{direction}[{index}]", problems)


# --------------------------------------------------------------------------- Tier


def _check_tier(tier: Tier, problems: list[Problem]) -> None:
    pinned = BUILTIN_TIERS_BY_NAME.get(tier.metadata.name)
    if pinned is None:
        return
    order, action = pinned.order, pinned.default_action
    name = tier.metadata.name
    if tier.spec.order != order:
        problems.append(("spec.order", f"{name} tier order must be {order}"))
    if tier.spec.default_action != action:
        problems.append(
            ("spec.defaultAction", f"The '{name}' tier must have default action '{action}'")
        )
