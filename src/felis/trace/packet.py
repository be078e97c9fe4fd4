"""The packet a trace follows: addresses, ports, interfaces and what conntrack would say."""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from felis.dataplane.spec import CtState, Family
from felis.errors import FelisError
from felis.model.constants import PORT_PROTOCOLS, PROTOCOL_NAMES, PROTOCOL_NUMBERS

ICMP_PROTOCOLS = frozenset({1, 58})
LOOKUP_STATES = frozenset({CtState.NEW, CtState.ESTABLISHED, CtState.RELATED, CtState.INVALID})


class TraceError(FelisError):
    """A packet or spec the tracer cannot walk; one line, like every FelisError."""


class Direction(StrEnum):
    INGRESS = "ingress"
    """Arrives on `in_iface`, delivered to a local process."""
    EGRESS = "egress"
    """Sent by a local process, leaves through `out_iface`."""
    FORWARD = "forward"
    """Arrives on `in_iface`, routed out of `out_iface`."""


@dataclass(frozen=True, slots=True)
class Packet:
    src: str
    dst: str
    protocol: int
    direction: Direction = Direction.INGRESS
    sport: int | None = None
    dport: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    in_iface: str | None = None
    out_iface: str | None = None
    ct_state: CtState = CtState.NEW
    """What a conntrack lookup yields if the packet is tracked (never `untracked`: that is
    decided by the raw table's NOTRACK, not by the packet)."""
    dnat: bool = False
    """The packet's connection was DNAT'd (only seen when the packet is tracked)."""
    mark: int = 0

    def __post_init__(self) -> None:
        try:
            src = ipaddress.ip_address(self.src)
            dst = ipaddress.ip_address(self.dst)
        except ValueError as err:
            raise TraceError(f"packet: {err}") from None
        if src.version != dst.version:
            raise TraceError(f"packet: {self.src} and {self.dst} are of different IP families")
        if not 0 <= self.protocol <= 255:
            raise TraceError(f"packet: protocol {self.protocol} is not 0-255")
        if self.ct_state not in LOOKUP_STATES:
            raise TraceError(
                f"packet: ct state {self.ct_state} is not a conntrack lookup result "
                "(new, established, related, invalid)"
            )
        for name, port in (("source", self.sport), ("destination", self.dport)):
            if port is not None and not 0 <= port <= 65535:
                raise TraceError(f"packet: {name} port {port} is not 0-65535")
        if self.protocol in PORT_PROTOCOLS and (self.sport is None or self.dport is None):
            raise TraceError(f"packet: {protocol_text(self.protocol)} needs both ports")

    @property
    def family(self) -> Family:
        return Family(ipaddress.ip_address(self.src).version)

    @property
    def has_ports(self) -> bool:
        return self.protocol in PORT_PROTOCOLS

    @property
    def is_icmp(self) -> bool:
        return self.protocol in ICMP_PROTOCOLS

    def reply(self, ct_state: CtState) -> Packet:
        """The packet going the other way on the same flow, as seen on this host."""
        direction = {
            Direction.INGRESS: Direction.EGRESS,
            Direction.EGRESS: Direction.INGRESS,
            Direction.FORWARD: Direction.FORWARD,
        }[self.direction]
        return dataclasses.replace(
            self,
            src=self.dst,
            dst=self.src,
            sport=self.dport,
            dport=self.sport,
            direction=direction,
            in_iface=self.out_iface,
            out_iface=self.in_iface,
            ct_state=ct_state,
            mark=0,
        )

    def describe(self) -> str:
        proto = protocol_text(self.protocol)
        src, dst = self.src, self.dst
        if self.has_ports:
            src, dst = join_host_port(src, self.sport), join_host_port(dst, self.dport)
        text = f"IPv{int(self.family)} {proto} {src} -> {dst}"
        if self.is_icmp and self.icmp_type is not None:
            code = f"/{self.icmp_code}" if self.icmp_code is not None else ""
            text += f" type {self.icmp_type}{code}"
        where = []
        if self.in_iface is not None:
            where.append(f"in {self.in_iface}")
        if self.out_iface is not None:
            where.append(f"out {self.out_iface}")
        text += f", {self.direction}" + (f" ({', '.join(where)})" if where else "")
        text += f", ct state {self.ct_state}" + (" dnat" if self.dnat else "")
        return text


def protocol_text(number: int) -> str:
    return PROTOCOL_NAMES.get(number, str(number))


def parse_protocol(text: str) -> int:
    value = text.strip().lower()
    if value in PROTOCOL_NUMBERS:
        return PROTOCOL_NUMBERS[value]
    if value.isdigit() and 0 <= int(value) <= 255:
        return int(value)
    raise TraceError(f"--proto: {text!r} is not tcp, udp, icmp, icmpv6, sctp or a number 0-255")


def join_host_port(address: str, port: int | None) -> str:
    if port is None:
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def parse_host_port(text: str, option: str) -> tuple[str, int | None]:
    """`IP`, `IP:PORT`, `[IPv6]:PORT` or a bare IPv6 address → (address, port or None)."""
    value = text.strip()
    host, port = value, None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise TraceError(f"{option}: {text!r} has no closing ']'")
        host, rest = value[1:end], value[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise TraceError(f"{option}: {text!r}: expected ':PORT' after ']'")
            port = _port(rest[1:], text, option)
    elif value.count(":") == 1:
        host, port_text = value.split(":")
        port = _port(port_text, text, option)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise TraceError(
            f"{option}: {text!r} is not an IP address (IP, IP:PORT, [IPv6]:PORT)"
        ) from None
    return str(address), port


def _port(text: str, whole: str, option: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise TraceError(f"{option}: {whole!r}: port must be a number 0-65535")
    return int(text)
