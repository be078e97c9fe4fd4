"""The resource kinds felis handles, their etcd plurals and calicoctl's aliases for them."""

from __future__ import annotations

from dataclasses import dataclass

from felis.errors import FelisError
from felis.model.resources import (
    FelixConfiguration,
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    HostEndpoint,
    NetworkPolicy,
    NetworkSet,
    Profile,
    Resource,
    StagedGlobalNetworkPolicy,
    StagedKubernetesNetworkPolicy,
    StagedNetworkPolicy,
    Tier,
)


@dataclass(frozen=True, slots=True)
class KindInfo:
    kind: str
    plural: str
    aliases: tuple[str, ...]
    model: type[Resource]
    namespaced: bool = False

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


KINDS: dict[str, KindInfo] = {
    info.kind: info
    for info in (
        KindInfo(
            "HostEndpoint",
            "hostendpoints",
            ("hostendpoint", "hostendpoints", "hep", "heps"),
            HostEndpoint,
        ),
        KindInfo(
            "GlobalNetworkPolicy",
            "globalnetworkpolicies",
            ("globalnetworkpolicy", "globalnetworkpolicies", "gnp", "gnps"),
            GlobalNetworkPolicy,
        ),
        KindInfo(
            "GlobalNetworkSet",
            "globalnetworksets",
            ("globalnetworkset", "globalnetworksets", "gnetsets", "gns"),
            GlobalNetworkSet,
        ),
        KindInfo("Tier", "tiers", ("tier", "tiers"), Tier),
        KindInfo("Profile", "profiles", ("profile", "profiles", "pro", "pros"), Profile),
        KindInfo(
            "NetworkPolicy",
            "networkpolicies",
            ("networkpolicy", "networkpolicies", "policy", "np", "policies", "pol", "pols"),
            NetworkPolicy,
            namespaced=True,
        ),
        KindInfo(
            "NetworkSet",
            "networksets",
            ("networkset", "networksets", "netsets"),
            NetworkSet,
            namespaced=True,
        ),
        KindInfo(
            "StagedGlobalNetworkPolicy",
            "stagedglobalnetworkpolicies",
            ("stagedglobalnetworkpolicy", "stagedglobalnetworkpolicies", "sgnp", "sgnps"),
            StagedGlobalNetworkPolicy,
        ),
        KindInfo(
            "StagedNetworkPolicy",
            "stagednetworkpolicies",
            (
                "stagednetworkpolicy",
                "stagednetworkpolicies",
                "stagedpolicy",
                "snp",
                "stagedpolicies",
                "spol",
                "spols",
            ),
            StagedNetworkPolicy,
            namespaced=True,
        ),
        KindInfo(
            "StagedKubernetesNetworkPolicy",
            "stagedkubernetesnetworkpolicies",
            (
                "stagedkubernetesnetworkpolicy",
                "stagedkubernetesnetworkpolicies",
                "stagedkubernetespolicy",
                "sknp",
                "stagedkubernetespolicies",
                "skpol",
                "skpols",
            ),
            StagedKubernetesNetworkPolicy,
            namespaced=True,
        ),
        KindInfo(
            "FelixConfiguration",
            "felixconfigurations",
            ("felixconfiguration", "felixconfigurations", "felixconfig", "felixconfigs"),
            FelixConfiguration,
        ),
    )
}

LIST_KINDS: dict[str, KindInfo] = {info.list_kind: info for info in KINDS.values()}

_BY_ALIAS: dict[str, KindInfo] = {alias: info for info in KINDS.values() for alias in info.aliases}


def resolve_kind(alias: str) -> KindInfo:
    """Map a calicoctl-style kind argument (any case, singular, plural or short) to its kind."""
    info = _BY_ALIAS.get(alias.lower())
    if info is None:
        shown = alias if alias.isprintable() else repr(alias)
        raise FelisError(f"resource type '{shown}' is not supported")
    return info
