"""What `felis trace` assumes about a host it cannot see: its interfaces and the packet's path.

A trace runs anywhere (a laptop, CI), so the node's interfaces are not read. Instead:
- every HostEndpoint of the node with a concrete `interfaceName` has its interface, holding the
  HEP's `expectedIPs`;
- the `--iface` interface exists; for ingress and egress it holds the local side's address
  (ingress: the destination, egress: the source), so a HEP bound only by `expectedIPs` binds
  to it when it lists that address; `--out-iface` (forward only) exists without addresses;
- without `--iface`, the packet uses the interface of the first HEP (by name) of the node that
  has a concrete `interfaceName` and lists the local address in `expectedIPs`;
- without `--direction`: egress when only the source is an expected IP of one of the node's
  HEPs, otherwise ingress.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from felis.calc import HostInterface
from felis.dataplane.spec import CtState
from felis.model.resources import HostEndpoint, Resource
from felis.trace.packet import Direction, Packet, TraceError

ALL_INTERFACES = "*"


@dataclass(frozen=True, slots=True)
class PacketRequest:
    """What the user asked for on the command line."""

    src: str
    dst: str
    protocol: int
    sport: int | None = None
    dport: int | None = None
    direction: Direction | None = None
    iface: str | None = None
    out_iface: str | None = None
    ct_state: CtState = CtState.NEW
    dnat: bool = False
    icmp_type: int | None = None
    icmp_code: int | None = None


@dataclass(frozen=True, slots=True)
class TraceSetup:
    packet: Packet
    interfaces: list[HostInterface]
    notes: list[str] = field(default_factory=list)
    """The assumptions this trace made, one line each, for the user."""


def _same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b.partition("/")[0])
    except ValueError:
        return False


def _node_heps(resources: Sequence[Resource], node: str) -> list[HostEndpoint]:
    heps = [r for r in resources if isinstance(r, HostEndpoint) and r.spec.node == node]
    return sorted(heps, key=lambda h: h.metadata.name)


def _owners(heps: list[HostEndpoint], address: str) -> list[HostEndpoint]:
    return [h for h in heps if any(_same_ip(address, ip) for ip in h.spec.expected_ips)]


def setup(resources: Sequence[Resource], node: str, request: PacketRequest) -> TraceSetup:
    heps = _node_heps(resources, node)
    notes: list[str] = []
    direction = request.direction
    if direction is None:
        src_local, dst_local = _owners(heps, request.src), _owners(heps, request.dst)
        direction = Direction.EGRESS if src_local and not dst_local else Direction.INGRESS
        notes.append(f"direction {direction} (pass --direction to choose)")

    interfaces: dict[str, list[str]] = {}
    for hep in heps:
        name = hep.spec.interface_name
        if name and name != ALL_INTERFACES:
            interfaces.setdefault(name, []).extend(hep.spec.expected_ips)

    in_iface: str | None = None
    out_iface: str | None = None
    if direction is Direction.FORWARD:
        if request.iface is None:
            raise TraceError("--direction forward needs --iface (the input interface)")
        in_iface, out_iface = request.iface, request.out_iface
        interfaces.setdefault(in_iface, [])
        if out_iface is not None:
            interfaces.setdefault(out_iface, [])
        else:
            notes.append("output interface: one no host endpoint names (pass --out-iface)")
    else:
        if request.out_iface is not None:
            raise TraceError("--out-iface is only for --direction forward")
        local = request.dst if direction is Direction.INGRESS else request.src
        iface = request.iface or _iface_of(heps, local, node)
        interfaces.setdefault(iface, []).append(local)
        if request.iface is None:
            notes.append(f"interface {iface}: its HostEndpoint lists {local}")
        if direction is Direction.INGRESS:
            in_iface = iface
        else:
            out_iface = iface

    packet = Packet(
        src=request.src,
        dst=request.dst,
        protocol=request.protocol,
        direction=direction,
        sport=request.sport,
        dport=request.dport,
        icmp_type=request.icmp_type,
        icmp_code=request.icmp_code,
        in_iface=in_iface,
        out_iface=out_iface,
        ct_state=request.ct_state,
        dnat=request.dnat,
    )
    host = [
        HostInterface(name, tuple(dict.fromkeys(addrs)))
        for name, addrs in sorted(interfaces.items())
    ]
    return TraceSetup(packet, host, notes)


def _iface_of(heps: list[HostEndpoint], address: str, node: str) -> str:
    for hep in _owners(heps, address):
        name = hep.spec.interface_name
        if name and name != ALL_INTERFACES:
            return name
    raise TraceError(
        f"cannot tell which interface of node {node} holds {address}: no HostEndpoint of the "
        "node with an interfaceName lists it in expectedIPs; pass --iface"
    )
