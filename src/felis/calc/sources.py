"""What each IP set stands for; the membership engine turns these into members."""

from __future__ import annotations

from dataclasses import dataclass

from felis.dataplane.spec import SetKind
from felis.selector import Selector


@dataclass(frozen=True, slots=True)
class SelectorSource:
    """Addresses of every host endpoint (expectedIPs, all nodes) and global network set (nets)
    whose labels match the selector."""

    selector: Selector

    @property
    def kind(self) -> SetKind:
        return SetKind.NET

    @property
    def comment(self) -> str:
        return self.selector.canonical


@dataclass(frozen=True, slots=True)
class NamedPortSource:
    """`ip,proto:port` of every host endpoint matching the selector that declares the port."""

    set_id: str
    selector: Selector
    protocol: str
    """`tcp`, `udp`, `sctp`, or `any` (the rule names no protocol)."""
    port_name: str

    @property
    def kind(self) -> SetKind:
        return SetKind.IP_PORT

    @property
    def comment(self) -> str:
        return f"{self.protocol}:{self.port_name} of {self.selector.canonical}"


@dataclass(frozen=True, slots=True)
class NetsSource:
    """A literal list of CIDRs from a rule's nets/notNets."""

    cidrs: frozenset[str]

    @property
    def kind(self) -> SetKind:
        return SetKind.NET

    @property
    def comment(self) -> str:
        return ("nets " + ",".join(sorted(self.cidrs)))[:200]


AddressSource = SelectorSource | NetsSource


@dataclass(frozen=True, slots=True)
class FlowPart:
    """One lifted Allow rule as flows: remote addresses × protocol × local ports."""

    addresses: AddressSource
    protocol: str
    """`tcp`, `udp` or `sctp`."""
    ports: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class NetPortSource:
    """`net,proto:port` for every (remote network, local port) pair of a run of untracked Allow
    rules: the fast path checks them all with one lookup (felis.calc.fastpath)."""

    parts: tuple[FlowPart, ...]

    @property
    def kind(self) -> SetKind:
        return SetKind.NET_PORT

    @property
    def comment(self) -> str:
        return f"fast path of {len(self.parts)} untracked Allow rules"


SetSource = SelectorSource | NamedPortSource | NetsSource | NetPortSource
