"""Failsafe ports (docs/calico-semantics.md#failsafe-ports): traffic that no policy can block, so
a bad policy can never lock the operator out of a host.

Entries come from configuration, in Calico's env-style form (`tcp:22, udp:68, tcp:10.0.0.0/8:22`,
`tcp:[fd00::/8]:22`, a bare port meaning TCP, `none` for no entries), or from a FelixConfiguration
(`felis.calc.felixconfig`). SCTP is accepted as well: Calico's resource allows it, although
Felix's own string parser only knows tcp and udp.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from felis.dataplane.spec import Accept, Family, Match, PortRange, Rule, safe_comment
from felis.errors import FelisError
from felis.model.constants import PORT_PROTOCOL_NUMBERS


class FailsafeError(FelisError, ValueError):
    """A failsafe port list that cannot be understood."""


@dataclass(frozen=True, slots=True)
class FailsafePort:
    protocol: str
    """`tcp`, `udp` or `sctp`."""
    port: int
    net: str | None = None
    """Remote network the entry is limited to (the source for inbound entries, the destination
    for outbound ones); None means any address."""

    def __post_init__(self) -> None:
        if self.protocol not in PORT_PROTOCOL_NUMBERS:
            raise FailsafeError(
                f"failsafe port protocol must be tcp, udp or sctp, not {self.protocol!r}"
            )
        if not 0 < self.port <= 65535:
            raise FailsafeError(f"failsafe port {self.port} is not in 1-65535")
        if self.net is not None:
            try:
                ipaddress.ip_network(self.net, strict=False)
            except ValueError:
                raise FailsafeError(f"failsafe net {self.net!r} is not a CIDR") from None

    @property
    def family(self) -> Family | None:
        if self.net is None:
            return None
        return Family(ipaddress.ip_network(self.net, strict=False).version)

    def __str__(self) -> str:
        if self.net is None:
            return f"{self.protocol}:{self.port}"
        net = f"[{self.net}]" if ":" in self.net else self.net
        return f"{self.protocol}:{net}:{self.port}"


def _defaults(text: str) -> tuple[FailsafePort, ...]:
    return tuple(
        FailsafePort(proto, int(port))
        for proto, port in (item.strip().split(":") for item in text.split(","))
    )


DEFAULT_FAILSAFE_INBOUND = _defaults(
    "tcp:22, udp:68, tcp:179, tcp:2379, tcp:2380, tcp:5473, tcp:6443, tcp:6666, tcp:6667"
)
DEFAULT_FAILSAFE_OUTBOUND = _defaults(
    "udp:53, udp:67, tcp:179, tcp:2379, tcp:2380, tcp:5473, tcp:6443, tcp:6666, tcp:6667"
)


def _parse_port(text: str, entry: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= 65535:
        raise FailsafeError(f"failsafe entry {entry!r}: port {text!r} is not a number in 1-65535")
    return int(text)


def _parse_entry(entry: str) -> FailsafePort:
    if entry.isdigit():
        return FailsafePort("tcp", _parse_port(entry, entry))
    proto, sep, rest = entry.partition(":")
    proto = proto.lower()
    if not sep:
        raise FailsafeError(
            f"failsafe entry {entry!r}: expected port, proto:port or proto:net:port"
        )
    if proto not in PORT_PROTOCOL_NUMBERS:
        raise FailsafeError(f"failsafe entry {entry!r}: protocol must be tcp, udp or sctp")
    net: str | None = None
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0 or rest[close + 1 : close + 2] != ":":
            raise FailsafeError(f"failsafe entry {entry!r}: expected [v6-net]:port")
        net, port_text = rest[1:close], rest[close + 2 :]
    elif ":" in rest:
        net, _, port_text = rest.rpartition(":")
    else:
        port_text = rest
    if net is not None:
        try:
            net = str(ipaddress.ip_network(net, strict=False))
        except ValueError:
            raise FailsafeError(f"failsafe entry {entry!r}: {net!r} is not a CIDR") from None
    return FailsafePort(proto, _parse_port(port_text, entry), net)


def parse_failsafe_ports(text: str, *, skip_empty: bool = False) -> tuple[FailsafePort, ...]:
    """Parse Calico's env-style failsafe list (`FailsafeInboundHostPorts` syntax).

    `skip_empty` passes over empty entries (`tcp:22,,udp:68`) as Felix does with a `FELIX_…`
    variable; felis' own options refuse them, since they are usually a typo."""
    stripped = text.strip()
    if stripped.lower() in ("", "none", "[]"):
        return ()
    entries = [item.strip() for item in stripped.split(",")]
    if skip_empty:
        entries = [item for item in entries if item]
    elif any(not item for item in entries):
        raise FailsafeError(f"failsafe port list {text!r} has an empty entry")
    return tuple(_parse_entry(item) for item in entries)


def _grouped(entries: tuple[FailsafePort, ...], family: Family) -> list[list[FailsafePort]]:
    """Entries of this family grouped by (protocol, net), in order of first appearance.

    Every untracked packet crosses the raw failsafe chains, so one rule per protocol with a port
    list (a multiport match, an nft anonymous set) instead of one rule per port: 4 rules per raw
    chain instead of 18 with the defaults, on every packet of an untracked flow.
    """
    groups: dict[tuple[str, str | None], list[FailsafePort]] = {}
    for entry in entries:
        if entry.family is None or entry.family is family:
            groups.setdefault((entry.protocol, entry.net), []).append(entry)
    return list(groups.values())


def _rule(group: list[FailsafePort], *, source_port: bool, net_is_source: bool, label: str) -> Rule:
    numbers = sorted({entry.port for entry in group})
    ports = tuple(PortRange(port, port) for port in numbers)
    first = group[0]
    match = Match(
        protocol=PORT_PROTOCOL_NUMBERS[first.protocol],
        src_ports=ports if source_port else (),
        dst_ports=() if source_port else ports,
        src_net=first.net if net_is_source else None,
        dst_net=None if net_is_source else first.net,
    )
    where = (
        "" if first.net is None else (f"[{first.net}]:" if ":" in first.net else f"{first.net}:")
    )
    text = f"failsafe {label.format(f'{first.protocol}:{where}' + ','.join(map(str, numbers)))}"
    return Rule(match, Accept(), safe_comment(text))


def _chain_rules(
    family: Family,
    own: tuple[FailsafePort, ...],
    other: tuple[FailsafePort, ...],
    *,
    inbound: bool,
    raw: bool,
) -> tuple[Rule, ...]:
    """One failsafe chain: the entries of its own direction, and in raw (where no conntrack
    state exists yet to recognise them) the replies of the other direction's flows. The
    entry's net is the remote end: the source inbound, the destination outbound."""
    here, there = ("in", "out") if inbound else ("out", "in")
    rules = [
        _rule(group, source_port=False, net_is_source=inbound, label=f"{here} {{}}")
        for group in _grouped(own, family)
    ]
    if raw:
        rules += [
            _rule(group, source_port=True, net_is_source=inbound, label=f"{there} {{}} reply")
            for group in _grouped(other, family)
        ]
    return tuple(rules)


def failsafe_in_rules(
    family: Family,
    inbound: tuple[FailsafePort, ...],
    outbound: tuple[FailsafePort, ...],
    *,
    raw: bool,
) -> tuple[Rule, ...]:
    """Rules of `felis-failsafe-in`. The raw variant also lets in the replies of outbound
    failsafe flows, because in raw no conntrack state exists yet to recognise them."""
    return _chain_rules(family, inbound, outbound, inbound=True, raw=raw)


def failsafe_out_rules(
    family: Family,
    inbound: tuple[FailsafePort, ...],
    outbound: tuple[FailsafePort, ...],
    *,
    raw: bool,
) -> tuple[Rule, ...]:
    """Rules of `felis-failsafe-out`; the raw variant also lets out inbound-failsafe replies."""
    return _chain_rules(family, outbound, inbound, inbound=False, raw=raw)
