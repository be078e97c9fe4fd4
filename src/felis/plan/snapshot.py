"""A read-only view of a set of resources, for questions about policy rather than packets.

`felis plan` and `felis lint` ask the same things the calculation answers internally (which
host endpoints are active, which policies select them and in which class, who is in a selector's
set), so they use calc's own building blocks instead of re-deriving Calico's rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TypeVar

from felis.calc.config import CalcConfig
from felis.calc.endpoints import resolve
from felis.calc.inputs import (
    STAR_INTERFACE,
    GnsInfo,
    HepInfo,
    PolicyInfo,
    ProfileInfo,
    TierInfo,
    gns_info,
    hep_info,
    inherited_labels,
    network_set_info,
    policy_info,
    profile_info,
    tier_info,
)
from felis.calc.policies import EndpointPolicies, classify, sort_policies
from felis.model.namespaced import qualified_name
from felis.model.resources import (
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    HostEndpoint,
    NetworkSet,
    Profile,
    Resource,
    Tier,
)
from felis.selector import Selector

ANY_INTERFACE = "*"

_R = TypeVar("_R", bound=Resource)


@dataclass(frozen=True, slots=True)
class ActiveEndpoint:
    name: str
    interface: str
    """Interface name, or `*` for the all-interfaces host endpoint."""
    hep: HepInfo
    policies: EndpointPolicies


def key_of(resource: Resource) -> tuple[str, str]:
    return (resource.kind, qualified_name(resource))


class Snapshot:
    """Resources keyed by (kind, name); a later duplicate replaces an earlier one."""

    def __init__(self, resources: Iterable[Resource]) -> None:
        self.resources: dict[tuple[str, str], Resource] = {}
        for resource in resources:
            self.resources[key_of(resource)] = resource

    def of_kind(self, model: type[_R]) -> dict[str, _R]:
        """The resources of one model class, by name."""
        return {r.metadata.name: r for r in self.resources.values() if isinstance(r, model)}

    @cached_property
    def profiles(self) -> dict[str, ProfileInfo]:
        return {name: profile_info(r) for name, r in self.of_kind(Profile).items()}

    @cached_property
    def heps(self) -> dict[str, HepInfo]:
        """With the labels they inherit from their profiles, as selectors see them."""
        out = {}
        for name, resource in self.of_kind(HostEndpoint).items():
            hep = hep_info(resource)
            if hep.profiles:
                hep = replace(hep, labels=inherited_labels(hep.labels, hep.profiles, self.profiles))
            out[name] = hep
        return out

    @cached_property
    def policies(self) -> dict[str, PolicyInfo]:
        return {name: policy_info(r) for name, r in self.policy_models.items()}

    @cached_property
    def policy_models(self) -> dict[str, GlobalNetworkPolicy]:
        return self.of_kind(GlobalNetworkPolicy)

    @cached_property
    def network_sets(self) -> dict[str, GnsInfo]:
        """GlobalNetworkSets by name and NetworkSets by `<namespace>/<name>`, with the labels
        selectors see (a NetworkSet's also its namespace's, as calc indexes them)."""
        out = {name: gns_info(r) for name, r in self.of_kind(GlobalNetworkSet).items()}
        for resource in self.resources.values():
            if isinstance(resource, NetworkSet):
                info = network_set_info(resource)
                labels = inherited_labels(info.labels, info.profiles, self.profiles)
                out[info.name] = replace(info, labels=labels)
        return out

    @cached_property
    def tiers(self) -> dict[str, TierInfo]:
        return {name: tier_info(r) for name, r in self.of_kind(Tier).items()}

    @cached_property
    def ordered(self) -> list[tuple[TierInfo, PolicyInfo]]:
        return sort_policies(self.policies.values(), self.tiers)

    def endpoint_policies(self, hep: HepInfo) -> EndpointPolicies:
        """The classes of `hep` as calc computes them (doNotTrack ignored on a `*` HEP)."""
        star = hep.interface_name == STAR_INTERFACE
        return classify(hep, self.ordered, allow_untracked=not star)

    def active(self, node: str, config: CalcConfig | None = None) -> list[ActiveEndpoint]:
        """The node's active host endpoints, with the assumptions of `felis render`: every named
        interface exists, endpoints bound only by expectedIPs are left out."""
        config = config or CalcConfig()
        local = [h for h in self.heps.values() if h.node == node]
        bound = resolve(local, None, config.interface_exclude)
        out = [
            ActiveEndpoint(hep.name, iface, hep, self.endpoint_policies(hep))
            for iface, hep in bound.by_interface
        ]
        if bound.star is not None:
            star = bound.star
            out.append(ActiveEndpoint(star.name, ANY_INTERFACE, star, self.endpoint_policies(star)))
        return out

    def selected_heps(self, selector: Selector) -> list[HepInfo]:
        return [h for h in self.heps.values() if selector.evaluate(h.labels)]

    def selector_members(self, selector: Selector) -> tuple[list[str], list[str], list[str]]:
        """(HostEndpoints with addresses, HostEndpoints without expectedIPs, network sets)
        whose labels match: the sources of the selector's IP set."""
        with_ips: list[str] = []
        without: list[str] = []
        sets: list[str] = []
        for hep in self.heps.values():
            if selector.evaluate(hep.labels):
                (with_ips if hep.cidrs else without).append(hep.name)
        for gns in self.network_sets.values():
            if selector.evaluate(gns.labels):
                sets.append(gns.name)
        return sorted(with_ips), sorted(without), sorted(sets)


def overlay(current: Sequence[Resource], incoming: Sequence[Resource]) -> list[Resource]:
    """`felis apply` semantics: incoming documents replace stored objects of the same kind and
    name (in place), new ones are added after."""
    merged: dict[tuple[str, str], Resource] = {key_of(r): r for r in current}
    for resource in incoming:
        merged[key_of(resource)] = resource
    return list(merged.values())
