"""The resource kinds felis handles, their etcd plurals and calicoctl's aliases for them."""

from __future__ import annotations

from dataclasses import dataclass

from felis.errors import FelisError
from felis.model.resources import (
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    HostEndpoint,
    Profile,
    Resource,
    Tier,
)


@dataclass(frozen=True, slots=True)
class KindInfo:
    kind: str
    plural: str
    aliases: tuple[str, ...]
    model: type[Resource]

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
