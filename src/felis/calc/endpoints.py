"""Which host endpoints are active on this node, and on which interface
(docs/calico-semantics.md#active-host-endpoints)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from felis.calc.config import HostInterface
from felis.calc.inputs import STAR_INTERFACE, HepInfo


@dataclass(frozen=True, slots=True)
class ActiveEndpoints:
    by_interface: tuple[tuple[str, HepInfo], ...]
    """(interface, HEP) pairs sorted by interface name."""
    star: HepInfo | None
    """The all-interfaces HEP (first by name among `interfaceName: "*"` HEPs)."""
    warnings: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        found = {hep.name for _, hep in self.by_interface}
        if self.star is not None:
            found.add(self.star.name)
        return tuple(sorted(found))


def _excluded(name: str, patterns: Sequence[str]) -> bool:
    for pattern in patterns:
        if len(pattern) > 2 and pattern.startswith("/") and pattern.endswith("/"):
            if re.search(pattern[1:-1], name):
                return True
        elif name == pattern:
            return True
    return False


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_interface(text.strip()).ip)
    except ValueError:
        return None


def resolve(
    heps: Iterable[HepInfo],
    interfaces: Sequence[HostInterface] | None,
    exclude: Sequence[str] = (),
) -> ActiveEndpoints:
    """Bind this node's HEPs to interfaces.

    For each interface the candidates are HEPs naming it and HEPs without a name that expect one
    of its addresses; the candidate whose name sorts first wins, whichever way it matched. A HEP
    for a missing interface binds to nothing. With `interfaces` None (no view of the host, as
    in `felis render`), every named interface is assumed to exist and IP-only HEPs are skipped.
    """
    ordered = sorted(heps, key=lambda h: h.name)
    stars = [h for h in ordered if h.interface_name == STAR_INTERFACE]
    named = [h for h in ordered if h.interface_name not in ("", STAR_INTERFACE)]
    by_ip = [h for h in ordered if not h.interface_name]
    warnings = [
        f"HostEndpoint {h.name}: another all-interfaces HostEndpoint ({stars[0].name}) sorts "
        "first; ignored"
        for h in stars[1:]
    ]

    if interfaces is None:
        iface_addrs = {h.interface_name: frozenset[str]() for h in named}
    else:
        iface_addrs = {
            iface.name: frozenset(a for a in map(_address, iface.addresses) if a)
            for iface in interfaces
        }
    bound: list[tuple[str, HepInfo]] = []
    used: set[str] = set()
    for iface in sorted(iface_addrs):
        if _excluded(iface, exclude):
            continue
        addrs = iface_addrs[iface]
        candidates = [h for h in named if h.interface_name == iface]
        candidates += [h for h in by_ip if addrs.intersection(h.expected_ips)]
        if not candidates:
            continue
        winner = min(candidates, key=lambda h: h.name)
        bound.append((iface, winner))
        used.add(winner.name)
        for loser in candidates:
            if loser.name != winner.name:
                warnings.append(
                    f"HostEndpoint {loser.name}: interface {iface} is taken by {winner.name} "
                    "(first by name)"
                )
    for hep in named:
        if hep.name not in used and interfaces is not None:
            warnings.append(
                f"HostEndpoint {hep.name}: interface {hep.interface_name} not found; inactive"
            )
    return ActiveEndpoints(tuple(bound), stars[0] if stars else None, tuple(warnings))
