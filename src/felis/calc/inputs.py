"""The calculation's own view of the stored resources.

The model objects carry everything Calico's JSON can say; the calculation needs a small,
normalised, comparable subset (addresses parsed and masked, tiers and types defaulted). Turning a
resource into that view in one place keeps the rest of `felis.calc` independent of model details
and lets the incremental calculator tell cheaply whether an update changes anything.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar

from felis.calc.selectors import NAMESPACE_LABEL, policy_selector
from felis.dataplane.spec import Family
from felis.model.constants import BUILTIN_TIERS_BY_NAME, DEFAULT_TIER, PORT_PROTOCOL_NAMES
from felis.model.namespaced import qualified_name
from felis.model.resources import (
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    HostEndpoint,
    NetworkSet,
    Profile,
    Rule,
    Tier,
)
from felis.selector import Selector

STAR_INTERFACE = "*"

_EMPTY: Mapping[str, str] = MappingProxyType({})


def family_of(cidr: str) -> Family:
    return Family.V6 if ":" in cidr else Family.V4


def masked_cidr(net: str) -> str:
    """A network in canonical masked form; a bare address becomes /32 or /128."""
    return str(ipaddress.ip_network(net, strict=False))


@dataclass(frozen=True, slots=True)
class NamedPort:
    name: str
    protocol: str
    """`tcp`, `udp` or `sctp`."""
    port: int


@dataclass(frozen=True, slots=True)
class HepInfo:
    name: str
    node: str
    interface_name: str
    expected_ips: tuple[str, ...]
    """Normalised addresses (no prefix length)."""
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    profiles: tuple[str, ...] = ()
    ports: tuple[NamedPort, ...] = ()
    cidrs: tuple[str, ...] = ()
    """expected_ips as /32 or /128 networks."""


@dataclass(frozen=True, slots=True)
class GnsInfo:
    """A GlobalNetworkSet, or a NetworkSet (named `<namespace>/<name>`)."""

    name: str
    labels: Mapping[str, str]
    cidrs: tuple[str, ...]
    profiles: tuple[str, ...] = ()
    """Profiles whose labels it inherits: a NetworkSet's namespace profile."""


@dataclass(frozen=True, slots=True)
class TierInfo:
    name: str
    order: float | None
    default_action: str
    """`Deny` or `Pass`."""
    valid: bool = True
    """False for a tier a policy names but that does not exist (sorted after all others)."""

    def sort_key(self) -> tuple[bool, bool, float, str]:
        return (not self.valid, self.order is None, self.order or 0.0, self.name)


@dataclass(frozen=True, slots=True)
class PolicyInfo:
    name: str
    tier: str
    order: float | None
    selector: Selector
    """With the namespace and service-account selectors folded in (`felis.calc.selectors`)."""
    ingress_type: bool
    egress_type: bool
    ingress: tuple[Rule, ...]
    egress: tuple[Rule, ...]
    do_not_track: bool
    pre_dnat: bool
    apply_on_forward: bool

    kind: ClassVar[str] = "GlobalNetworkPolicy"
    short_kind: ClassVar[str] = "gnp"
    """How chain comments and log prefixes (`%k`) name the kind."""

    def sort_key(self) -> tuple[bool, float, str]:
        # Calico breaks ties on "<name>/<namespace>/<kind>", which is not the same as comparing
        # bare names ("a//..." sorts after "a-b//...").
        return (self.order is None, self.order or 0.0, f"{self.name}//GlobalNetworkPolicy")

    def rules(self, ingress: bool) -> tuple[Rule, ...]:
        return self.ingress if ingress else self.egress


@dataclass(frozen=True, slots=True)
class ProfileInfo:
    """A Profile: rules run after all of an endpoint's policies (normal chains only), and
    labels the endpoints naming it inherit for selector matching."""

    name: str
    labels: Mapping[str, str]
    ingress: tuple[Rule, ...]
    egress: tuple[Rule, ...]

    kind: ClassVar[str] = "Profile"
    short_kind: ClassVar[str] = "pro"
    tier: ClassVar[str] = ""
    do_not_track: ClassVar[bool] = False

    def rules(self, ingress: bool) -> tuple[Rule, ...]:
        return self.ingress if ingress else self.egress


RuleSource = PolicyInfo | ProfileInfo
"""Whatever a rule chain is rendered from."""


def inherited_labels(
    own: Mapping[str, str], profiles: tuple[str, ...], known: Mapping[str, ProfileInfo]
) -> Mapping[str, str]:
    """An endpoint's labels for selector matching: its own, then each profile's in the order
    listed, the first to set a key winning (as Calico's label inheritance does)."""
    parents = [known[name].labels for name in profiles if name in known]
    if not any(parents):
        return own
    merged: dict[str, str] = {}
    for labels in reversed(parents):
        merged.update(labels)
    merged.update(own)
    return MappingProxyType(merged)


def profile_info(profile: Profile) -> ProfileInfo:
    spec = profile.spec
    return ProfileInfo(
        name=profile.metadata.name,
        labels=MappingProxyType(dict(spec.labels_to_apply)),
        ingress=tuple(spec.ingress),
        egress=tuple(spec.egress),
    )


def hep_info(hep: HostEndpoint) -> HepInfo:
    spec = hep.spec
    ports = []
    for port in spec.ports:
        number = port.protocol.number
        proto = PORT_PROTOCOL_NAMES.get(number) if number is not None else None
        if proto is not None:
            ports.append(NamedPort(port.name, proto, port.port))
    addrs = [ipaddress.ip_address(ip) for ip in spec.expected_ips]
    return HepInfo(
        name=hep.metadata.name,
        node=spec.node,
        interface_name=spec.interface_name,
        expected_ips=tuple(str(a) for a in addrs),
        cidrs=tuple(f"{a}/{a.max_prefixlen}" for a in addrs),
        labels=MappingProxyType(dict(hep.metadata.labels)),
        profiles=tuple(spec.profiles),
        ports=tuple(ports),
    )


def gns_info(gns: GlobalNetworkSet) -> GnsInfo:
    return GnsInfo(
        name=gns.metadata.name,
        labels=MappingProxyType(dict(gns.metadata.labels)),
        cidrs=tuple(dict.fromkeys(masked_cidr(net) for net in gns.spec.nets)),
    )


NAMESPACE_PROFILE_PREFIX = "kns."
"""Calico's profile of a Kubernetes namespace, which holds its labels as `pcns.<label>`."""


def network_set_info(netset: NetworkSet) -> GnsInfo:
    """A NetworkSet as Calico's syncer hands it to Felix: its labels with its namespace's added,
    so that rule selectors with a `namespaceSelector` can match it, and its namespace's profile
    to inherit the `pcns.` labels from."""
    namespace = netset.metadata.namespace
    labels = {**netset.metadata.labels, NAMESPACE_LABEL: namespace}
    return GnsInfo(
        name=qualified_name(netset),
        labels=MappingProxyType(labels),
        cidrs=tuple(dict.fromkeys(masked_cidr(net) for net in netset.spec.nets)),
        profiles=(NAMESPACE_PROFILE_PREFIX + namespace,),
    )


def tier_info(tier: Tier) -> TierInfo:
    name = tier.metadata.name
    builtin = BUILTIN_TIERS_BY_NAME.get(name)
    if builtin is not None:
        return TierInfo(name, float(builtin.order), builtin.default_action)
    return TierInfo(name, tier.spec.order, tier.spec.default_action or "Deny")


def builtin_or_missing_tier(name: str) -> TierInfo:
    builtin = BUILTIN_TIERS_BY_NAME.get(name)
    if builtin is not None:
        return TierInfo(name, float(builtin.order), builtin.default_action)
    return TierInfo(name, None, "Deny", valid=False)


def policy_info(policy: GlobalNetworkPolicy) -> PolicyInfo:
    spec = policy.spec
    types = set(spec.types)
    if not types:
        # Felix treats a policy stored without types as governing both directions.
        types = {"Ingress", "Egress"}
    return PolicyInfo(
        name=policy.metadata.name,
        tier=spec.tier or DEFAULT_TIER,
        order=spec.order,
        selector=policy_selector(
            spec.selector, spec.namespace_selector, spec.service_account_selector
        ),
        ingress_type="Ingress" in types,
        egress_type="Egress" in types,
        ingress=tuple(spec.ingress),
        egress=tuple(spec.egress) if not spec.pre_dnat else (),
        do_not_track=spec.do_not_track,
        pre_dnat=spec.pre_dnat,
        apply_on_forward=spec.apply_on_forward,
    )
