"""Facts about Calico and IP that several layers need, written once.

Plain data and no imports from the rest of felis, so that any layer may use it: the model
validates against it, the datastore stores the built-in tiers from it, calc and the renderers
number protocols with it.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final, NamedTuple

API_GROUP: Final = "projectcalico.org"
API_VERSION: Final = "projectcalico.org/v3"
"""The apiVersion of every resource felis reads, stores and prints."""

DEFAULT_TIER: Final = "default"
"""The tier of a policy that names none."""


class BuiltinTier(NamedTuple):
    name: str
    order: int
    default_action: str


BUILTIN_TIERS: Final[tuple[BuiltinTier, ...]] = (
    BuiltinTier("kube-admin", 1000, "Pass"),
    BuiltinTier(DEFAULT_TIER, 1_000_000, "Deny"),
    BuiltinTier("kube-baseline", 10_000_000, "Pass"),
)
"""The tiers Calico creates when a datastore is initialised. Validation pins their order and
default action and they cannot be deleted, so they exist with these settings whether or not
they are stored (docs/calico-semantics.md#tier)."""

TIERED_KINDS: Final = frozenset(
    {"GlobalNetworkPolicy", "NetworkPolicy", "StagedGlobalNetworkPolicy", "StagedNetworkPolicy"}
)
"""The policy kinds that belong to a tier (the staged Kubernetes form does not)."""

BUILTIN_TIERS_BY_NAME: Final = MappingProxyType({tier.name: tier for tier in BUILTIN_TIERS})
BUILTIN_TIER_NAMES: Final = frozenset(BUILTIN_TIERS_BY_NAME)

PROTOCOL_NUMBERS: Final = MappingProxyType(
    {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58, "sctp": 132, "udplite": 136}
)
"""The IP protocols felis knows by name, spelt as the kernel tools spell them."""
PROTOCOL_NAMES: Final = MappingProxyType(
    {number: name for name, number in PROTOCOL_NUMBERS.items()}
)

PORT_PROTOCOL_NUMBERS: Final = MappingProxyType(
    {name: PROTOCOL_NUMBERS[name] for name in ("tcp", "udp", "sctp")}
)
"""The protocols with ports, the only ones a rule may give ports for."""
PORT_PROTOCOL_NAMES: Final = MappingProxyType(
    {number: name for name, number in PORT_PROTOCOL_NUMBERS.items()}
)
PORT_PROTOCOLS: Final = frozenset(PORT_PROTOCOL_NAMES)

CALICO_PROTOCOL_NAMES: Final = ("TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite")
"""How Calico's API spells the protocols it accepts by name (exact case)."""
CALICO_PROTOCOL_NUMBERS: Final = MappingProxyType(
    {name: PROTOCOL_NUMBERS[name.lower()] for name in CALICO_PROTOCOL_NAMES}
)
