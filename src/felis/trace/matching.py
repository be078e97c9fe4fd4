"""Does one IR `Match` hold for a packet at one point of its walk (fields as in spec.py)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from felis.dataplane.spec import (
    CtState,
    IcmpMatch,
    IpSet,
    Match,
    PortRange,
    SetKind,
)
from felis.model.constants import PROTOCOL_NUMBERS
from felis.trace.packet import Packet, TraceError

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class PacketState:
    """What the kernel knows about the packet when a rule looks at it."""

    mark: int
    ct_state: CtState
    """`invalid` before conntrack has run (no entry attached yet), `untracked` after NOTRACK."""
    dnat: bool


class SetIndex:
    """The Ruleset's IP sets, parsed once for lookups."""

    def __init__(self, sets: Mapping[str, IpSet]) -> None:
        self._sets = sets
        self._nets: dict[str, tuple[IpNetwork, ...]] = {}
        self._ports: dict[str, frozenset[tuple[IpAddress, int, int]]] = {}
        self._port_numbers: dict[str, frozenset[int]] = {}

    def _get(self, name: str) -> IpSet:
        try:
            return self._sets[name]
        except KeyError:
            raise TraceError(f"a rule refers to IP set {name}, which the ruleset lacks") from None

    def contains(self, name: str, address: IpAddress) -> bool:
        nets = self._nets.get(name)
        if nets is None:
            ipset = self._get(name)
            if ipset.kind is not SetKind.NET:
                raise TraceError(f"IP set {name} is an {ipset.kind} set, used as an address set")
            nets = tuple(ipaddress.ip_network(m, strict=False) for m in ipset.members)
            self._nets[name] = nets
        return any(address.version == net.version and address in net for net in nets)

    def contains_port(self, name: str, address: IpAddress, protocol: int, port: int) -> bool:
        members = self._ports.get(name)
        if members is None:
            ipset = self._get(name)
            if ipset.kind is not SetKind.IP_PORT:
                raise TraceError(f"IP set {name} is a {ipset.kind} set, used as an ip,port set")
            members = frozenset(_ip_port(name, m) for m in ipset.members)
            self._ports[name] = members
        return (address, protocol, port) in members

    def contains_port_number(self, name: str, port: int) -> bool:
        numbers = self._port_numbers.get(name)
        if numbers is None:
            ipset = self._get(name)
            if ipset.kind is not SetKind.PORT:
                raise TraceError(f"IP set {name} is a {ipset.kind} set, used as a port set")
            numbers = frozenset(int(member) for member in ipset.members)
            self._port_numbers[name] = numbers
        return port in numbers


def _ip_port(set_name: str, member: str) -> tuple[IpAddress, int, int]:
    ip, _, rest = member.partition(",")
    proto, _, port = rest.partition(":")
    number = PROTOCOL_NUMBERS.get(proto)
    if number is None or not port.isdigit():
        raise TraceError(f"IP set {set_name}: member {member!r} is not ip,proto:port")
    return ipaddress.ip_address(ip), number, int(port)


@dataclass(slots=True)
class PacketView:
    """The packet with its addresses parsed, plus the set index, for repeated rule checks."""

    packet: Packet
    sets: SetIndex
    _src: IpAddress = field(init=False)
    _dst: IpAddress = field(init=False)

    def __post_init__(self) -> None:
        self._src = ipaddress.ip_address(self.packet.src)
        self._dst = ipaddress.ip_address(self.packet.dst)

    def matches(self, match: Match, state: PacketState) -> bool:
        # Cheap fields first: most rules are told apart by protocol, interface or mark.
        p = self.packet
        if match.protocol is not None and p.protocol != match.protocol:
            return False
        if match.not_protocol is not None and p.protocol == match.not_protocol:
            return False
        if match.in_iface is not None and not iface_matches(match.in_iface, p.in_iface):
            return False
        if match.out_iface is not None and not iface_matches(match.out_iface, p.out_iface):
            return False
        if match.mark_set and state.mark & match.mark_set != match.mark_set:
            return False
        if match.mark_clear and state.mark & match.mark_clear:
            return False
        if match.ct_states and state.ct_state not in match.ct_states:
            return False
        if match.ct_dnat is not None and match.ct_dnat != state.dnat:
            return False
        return (
            self._addresses(match) and self._ports(match) and self._icmp(match.icmp, match.not_icmp)
        )

    def _addresses(self, match: Match) -> bool:
        src, dst = self._src, self._dst
        if match.src_net is not None and not _in_net(src, match.src_net):
            return False
        if match.not_src_net is not None and _in_net(src, match.not_src_net):
            return False
        if match.dst_net is not None and not _in_net(dst, match.dst_net):
            return False
        if match.not_dst_net is not None and _in_net(dst, match.not_dst_net):
            return False
        if not all(self.sets.contains(name, src) for name in match.src_sets):
            return False
        if any(self.sets.contains(name, src) for name in match.not_src_sets):
            return False
        if not all(self.sets.contains(name, dst) for name in match.dst_sets):
            return False
        return not any(self.sets.contains(name, dst) for name in match.not_dst_sets)

    def _ports(self, match: Match) -> bool:
        p = self.packet
        uses_ports = (
            match.src_ports
            or match.not_src_ports
            or match.dst_ports
            or match.not_dst_ports
            or match.src_port_set is not None
            or match.dst_port_set is not None
            or match.not_src_port_sets
            or match.not_dst_port_sets
            or match.src_port_in_set is not None
            or match.dst_port_in_set is not None
        )
        if not uses_ports:
            return True
        # Port matches need a transport header with ports (iptables' `-p tcp --dport`, nft's
        # `tcp dport`): a packet without ports fails positive and negated matches alike.
        if not p.has_ports or p.sport is None or p.dport is None:
            return False
        sport, dport = p.sport, p.dport
        if match.src_ports and not _in_ports(sport, match.src_ports):
            return False
        if match.not_src_ports and _in_ports(sport, match.not_src_ports):
            return False
        if match.dst_ports and not _in_ports(dport, match.dst_ports):
            return False
        if match.not_dst_ports and _in_ports(dport, match.not_dst_ports):
            return False
        sets, proto = self.sets, p.protocol
        if match.src_port_set is not None and not sets.contains_port(
            match.src_port_set, self._src, proto, sport
        ):
            return False
        if match.dst_port_set is not None and not sets.contains_port(
            match.dst_port_set, self._dst, proto, dport
        ):
            return False
        if any(sets.contains_port(n, self._src, proto, sport) for n in match.not_src_port_sets):
            return False
        src_set, dst_set = match.src_port_in_set, match.dst_port_in_set
        if src_set is not None and not sets.contains_port_number(src_set, sport):
            return False
        if dst_set is not None and not sets.contains_port_number(dst_set, dport):
            return False
        return not any(
            sets.contains_port(n, self._dst, proto, dport) for n in match.not_dst_port_sets
        )

    def _icmp(self, icmp: IcmpMatch | None, not_icmp: IcmpMatch | None) -> bool:
        if icmp is None and not_icmp is None:
            return True
        p = self.packet
        # Like ports, ICMP matches need an ICMP header; negated ones too.
        if not p.is_icmp or p.icmp_type is None:
            return False
        if icmp is not None and not _icmp_is(icmp, p.icmp_type, p.icmp_code):
            return False
        return not (not_icmp is not None and _icmp_is(not_icmp, p.icmp_type, p.icmp_code))


def iface_matches(pattern: str, name: str | None) -> bool:
    """iptables `-i eth+` / nft `iifname "eth*"`: a trailing `+` matches any suffix."""
    if name is None:
        return False
    if pattern.endswith("+"):
        return name.startswith(pattern[:-1])
    return name == pattern


def _in_net(address: IpAddress, cidr: str) -> bool:
    net = ipaddress.ip_network(cidr, strict=False)
    return address.version == net.version and address in net


def _in_ports(port: int, ranges: tuple[PortRange, ...]) -> bool:
    return any(r.contains(port) for r in ranges)


def _icmp_is(icmp: IcmpMatch, icmp_type: int, code: int | None) -> bool:
    return icmp.type == icmp_type and (icmp.code is None or icmp.code == code)
