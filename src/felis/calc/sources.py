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


@dataclass(frozen=True, slots=True)
class PortsSource:
    """A literal list of port numbers: the local ports of a run of untracked Allows that share a
    protocol and a remote address condition (the fast path, felis.calc.fastpath)."""

    ports: tuple[int, ...]

    @property
    def kind(self) -> SetKind:
        return SetKind.PORT

    @property
    def comment(self) -> str:
        return ("ports " + ",".join(map(str, self.ports)))[:200]


SetSource = SelectorSource | NamedPortSource | NetsSource | PortsSource
