"""The XDP step of a trace: what felis' XDP program does to a packet before the raw table.

The program (docs/xdp.md) sees every packet arriving on an interface it is attached to, so
ingress and forwarded packets, never locally sent ones. It passes a TCP, UDP or SCTP packet to
a failsafe inbound port whatever its source (by protocol and port only: a failsafe entry's
network limit is for the chains behind it), then drops a packet whose source is in one of the
interface's blocklist networks. Everything else goes on to the raw table.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from felis.calc.failsafe import FailsafePort
from felis.model.constants import PORT_PROTOCOL_NUMBERS, PORT_PROTOCOLS
from felis.trace.packet import Direction, Packet


@dataclass(frozen=True, slots=True)
class XdpPrograms:
    """felis' XDP programs on a host, as the agent writes them."""

    blocklists: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Interface → the networks its program drops (`CalcResult.xdp`); an interface not listed
    has no program."""
    failsafe: frozenset[tuple[int, int]] = frozenset()
    """(protocol number, port) pairs passed first."""

    @classmethod
    def of(
        cls, blocklists: Mapping[str, frozenset[str]], failsafe_inbound: Iterable[FailsafePort]
    ) -> XdpPrograms:
        """From the calc's XDP section and the inbound failsafe ports, the way the agent fills
        the program's maps."""
        pairs = frozenset((PORT_PROTOCOL_NUMBERS[p.protocol], p.port) for p in failsafe_inbound)
        return cls(dict(blocklists), pairs)


@dataclass(frozen=True, slots=True)
class XdpDecision:
    iface: str
    entry: str | None
    """The blocklist network (longest prefix) that drops the packet; None: it passes."""
    failsafe: bool
    """Passed as a failsafe port (whether or not its source is listed)."""
    listed: str | None = None
    """The network the source is in, even when a failsafe port let it pass."""

    @property
    def dropped(self) -> bool:
        return self.entry is not None


def decide(programs: XdpPrograms, packet: Packet) -> XdpDecision | None:
    """What the program on the packet's input interface does with it; None when the packet
    meets no felis XDP program (locally sent, or no program on that interface)."""
    if packet.direction is Direction.EGRESS or packet.in_iface is None:
        return None
    networks = programs.blocklists.get(packet.in_iface)
    if not networks:
        return None
    failsafe = (
        packet.protocol in PORT_PROTOCOLS and (packet.protocol, packet.dport) in programs.failsafe
    )
    listed = longest_match(networks, packet.src)
    if failsafe:
        return XdpDecision(packet.in_iface, None, True, listed)
    return XdpDecision(packet.in_iface, listed, False, listed)


def longest_match(networks: Iterable[str], address: str) -> str | None:
    ip = ipaddress.ip_address(address)
    best: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    for text in networks:
        net = ipaddress.ip_network(text, strict=False)
        if net.version != ip.version or ip not in net:
            continue
        if best is None or net.prefixlen > best.prefixlen:
            best = net
    return None if best is None else str(best)
