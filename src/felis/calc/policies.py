"""Which policies apply to a host endpoint, in which class and order
(docs/calico-semantics.md#classes and #ordering)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from felis.calc.inputs import HepInfo, PolicyInfo, TierInfo, builtin_or_missing_tier


@dataclass(frozen=True, slots=True)
class TierGroup:
    tier: TierInfo
    policies: tuple[PolicyInfo, ...]
    end_of_tier_drop: bool
    """True when falling off the end of the tier drops (default action Deny, tracked classes)."""


Groups = tuple[TierGroup, ...]


@dataclass(frozen=True, slots=True)
class EndpointPolicies:
    """The ordered tiers of one HEP, per class and direction."""

    untracked_in: Groups = ()
    untracked_out: Groups = ()
    pre_dnat_in: Groups = ()
    normal_in: Groups = ()
    normal_out: Groups = ()
    forward_in: Groups = ()
    forward_out: Groups = ()

    @property
    def has_untracked(self) -> bool:
        return bool(self.untracked_in or self.untracked_out)

    @property
    def has_forward(self) -> bool:
        return bool(self.forward_in or self.forward_out)

    def names(self) -> set[str]:
        """Every policy in any class and direction."""
        return {
            policy.name
            for groups in (
                self.untracked_in,
                self.untracked_out,
                self.pre_dnat_in,
                self.normal_in,
                self.normal_out,
                self.forward_in,
                self.forward_out,
            )
            for group in groups
            for policy in group.policies
        }


def sort_policies(
    policies: Iterable[PolicyInfo], tiers: Mapping[str, TierInfo]
) -> list[tuple[TierInfo, PolicyInfo]]:
    """Every policy with its tier, in evaluation order: tiers by (valid, order nil-last, name),
    then policies by (order nil = +inf, Calico's name key)."""
    pairs = [(tiers.get(p.tier) or builtin_or_missing_tier(p.tier), p) for p in policies]
    pairs.sort(key=lambda tp: (tp[0].sort_key(), tp[1].sort_key()))
    return pairs


def _group(pairs: list[tuple[TierInfo, PolicyInfo]], tracked: bool) -> Groups:
    groups: list[TierGroup] = []
    current: list[PolicyInfo] = []
    tier: TierInfo | None = None
    for t, p in pairs:
        if tier is not None and t.name != tier.name:
            groups.append(TierGroup(tier, tuple(current), _drops(tier, tracked)))
            current = []
        tier = t
        current.append(p)
    if tier is not None:
        groups.append(TierGroup(tier, tuple(current), _drops(tier, tracked)))
    return tuple(groups)


def _drops(tier: TierInfo, tracked: bool) -> bool:
    # Untracked and preDNAT tiers always end in Pass so unmatched traffic reaches normal policy.
    return tracked and tier.default_action != "Pass"


def classify(
    hep: HepInfo, ordered: list[tuple[TierInfo, PolicyInfo]], *, allow_untracked: bool = True
) -> EndpointPolicies:
    """Split the policies selecting `hep` into the four classes (first match wins: doNotTrack,
    then preDNAT, else normal, and normal applyOnForward ones also into forward)."""
    buckets: dict[str, list[tuple[TierInfo, PolicyInfo]]] = {
        k: []
        for k in (
            "untracked_in",
            "untracked_out",
            "pre_dnat_in",
            "normal_in",
            "normal_out",
            "forward_in",
            "forward_out",
        )
    }
    for tier, policy in ordered:
        if not policy.selector.evaluate(hep.labels):
            continue
        pair = (tier, policy)
        if policy.do_not_track:
            if not allow_untracked:
                continue
            if policy.ingress_type:
                buckets["untracked_in"].append(pair)
            if policy.egress_type:
                buckets["untracked_out"].append(pair)
        elif policy.pre_dnat:
            if policy.ingress_type:
                buckets["pre_dnat_in"].append(pair)
        else:
            for direction, listed in (("in", policy.ingress_type), ("out", policy.egress_type)):
                if not listed:
                    continue
                buckets[f"normal_{direction}"].append(pair)
                if policy.apply_on_forward:
                    buckets[f"forward_{direction}"].append(pair)
    return EndpointPolicies(
        **{
            key: _group(pairs, tracked=key.startswith(("normal", "forward")))
            for key, pairs in buckets.items()
        }
    )


def untracked_ignored(hep: HepInfo, ordered: list[tuple[TierInfo, PolicyInfo]]) -> list[str]:
    """doNotTrack policies selecting the all-interfaces HEP, which Calico (and felis) ignore."""
    return [p.name for _, p in ordered if p.do_not_track and p.selector.evaluate(hep.labels)]
