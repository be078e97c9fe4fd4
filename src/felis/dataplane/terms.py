"""A rule's match as an ordered sequence of typed terms: the one walk both renderers print.

Both backends print a match in the same order, Calico's (docs/calico-semantics.md#match-order):
interfaces, mark, conntrack; then the positive tests (protocol; per side source then destination:
net, address sets, ports, named-port set; ICMP); then the same tests negated, in the same order.
`match_terms` is that walk, made once; a renderer only says how it spells each kind of term, in a
`TermText` table, so the two backends cannot drift apart in which fields they print or in what
order.

Only the fields a match sets become terms: an empty match has none. A term is pure data (no
backend syntax, no checks); identifiers are checked by the renderers' spellings and by the
`identifiers` module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from felis.dataplane.spec import CtState, Family, Match, PortRange

CT_STATES_ORDER: tuple[CtState, ...] = (
    CtState.INVALID,
    CtState.ESTABLISHED,
    CtState.RELATED,
    CtState.NEW,
    CtState.UNTRACKED,
)
"""The order ct states are printed in (both tools accept any order)."""


class Side(StrEnum):
    SRC = "src"
    """The packet's source; for an interface, the one it came in on."""
    DST = "dst"
    """The packet's destination; for an interface, the one it leaves by."""


# Terms are named tuples: the walk makes a few per distinct match on every cold render, and a
# tuple is built at half the cost of a frozen dataclass. Compare them together with their type
# (`Net` and `AddrSet` hold the same kinds of values).


class Iface(NamedTuple):
    side: Side
    name: str
    """As in the IR: a trailing `+` matches every name with that prefix."""


class Mark(NamedTuple):
    """(mark & mask) == value."""

    value: int
    mask: int


class CtStates(NamedTuple):
    states: tuple[CtState, ...]
    """Any of these, in `CT_STATES_ORDER`."""


class CtDnat(NamedTuple):
    negated: bool


class Protocol(NamedTuple):
    negated: bool
    number: int


class Net(NamedTuple):
    side: Side
    negated: bool
    cidr: str


class AddrSet(NamedTuple):
    """The address is in (negated: not in) a `net` set."""

    side: Side
    negated: bool
    name: str


class Ports(NamedTuple):
    """The port is in (negated: in none of) these ranges, as the IR lists them."""

    side: Side
    negated: bool
    ports: tuple[PortRange, ...]
    protocol: int | None
    """The match's (positive) protocol: nft names the port by it (`tcp dport`)."""


class PortSet(NamedTuple):
    """(address, protocol, port) is in (negated: not in) an `ip,port` set: a named port."""

    side: Side
    negated: bool
    name: str


class PortNumberSet(NamedTuple):
    """The port of `side` is in a `port` set (the ports of many rules in one lookup)."""

    side: Side
    name: str
    protocol: int | None
    """The match's protocol: nft names the port by it (`tcp dport`)."""


class Icmp(NamedTuple):
    negated: bool
    type: int
    code: int | None


Term = (
    Iface
    | Mark
    | CtStates
    | CtDnat
    | Protocol
    | Net
    | AddrSet
    | Ports
    | PortSet
    | PortNumberSet
    | Icmp
)


def _side(
    append: Callable[[Term], None],
    side: Side,
    negated: bool,
    net: str | None,
    sets: tuple[str, ...],
    ports: tuple[PortRange, ...],
    port_sets: tuple[str, ...],
    protocol: int | None,
) -> None:
    if net is not None:
        append(Net(side, negated, net))
    for name in sets:
        append(AddrSet(side, negated, name))
    if ports:
        append(Ports(side, negated, ports, protocol))
    for name in port_sets:
        append(PortSet(side, negated, name))


_SRC, _DST = Side.SRC, Side.DST
"""Plain globals for the walk: reading a member through its enum class costs a descriptor call
each time, more than the test it guards."""


def match_terms(match: Match) -> tuple[Term, ...]:
    """The terms of a match, in the order both backends print them."""
    terms: list[Term] = []
    append = terms.append
    if match.in_iface is not None:
        append(Iface(_SRC, match.in_iface))
    if match.out_iface is not None:
        append(Iface(_DST, match.out_iface))
    if match.mark_set or match.mark_clear:
        append(Mark(match.mark_set, match.mark_set | match.mark_clear))
    if match.ct_states:
        append(CtStates(tuple([s for s in CT_STATES_ORDER if s in match.ct_states])))
    if match.ct_dnat is not None:
        append(CtDnat(not match.ct_dnat))
    protocol = match.protocol
    if protocol is not None:
        append(Protocol(False, protocol))
    port_set = match.src_port_set
    _side(
        append,
        _SRC,
        False,
        match.src_net,
        match.src_sets,
        match.src_ports,
        () if port_set is None else (port_set,),
        protocol,
    )
    port_set = match.dst_port_set
    _side(
        append,
        _DST,
        False,
        match.dst_net,
        match.dst_sets,
        match.dst_ports,
        () if port_set is None else (port_set,),
        protocol,
    )
    if match.src_port_in_set is not None:
        append(PortNumberSet(_SRC, match.src_port_in_set, protocol))
    if match.dst_port_in_set is not None:
        append(PortNumberSet(_DST, match.dst_port_in_set, protocol))
    if match.icmp is not None:
        append(Icmp(False, match.icmp.type, match.icmp.code))
    if match.not_protocol is not None:
        append(Protocol(True, match.not_protocol))
    _side(
        append,
        _SRC,
        True,
        match.not_src_net,
        match.not_src_sets,
        match.not_src_ports,
        match.not_src_port_sets,
        protocol,
    )
    _side(
        append,
        _DST,
        True,
        match.not_dst_net,
        match.not_dst_sets,
        match.not_dst_ports,
        match.not_dst_port_sets,
        protocol,
    )
    if match.not_icmp is not None:
        append(Icmp(True, match.not_icmp.type, match.not_icmp.code))
    return tuple(terms)


@dataclass(frozen=True, slots=True)
class TermText:
    """How one backend spells each kind of term, for a rule of the given IP family.

    One entry per term class: a new kind of term cannot be added without every backend saying
    how it prints it.
    """

    iface: Callable[[Iface, Family], str]
    mark: Callable[[Mark, Family], str]
    ct_states: Callable[[CtStates, Family], str]
    ct_dnat: Callable[[CtDnat, Family], str]
    protocol: Callable[[Protocol, Family], str]
    net: Callable[[Net, Family], str]
    addr_set: Callable[[AddrSet, Family], str]
    ports: Callable[[Ports, Family], str]
    port_set: Callable[[PortSet, Family], str]
    port_number_set: Callable[[PortNumberSet, Family], str]
    icmp: Callable[[Icmp, Family], str]
    _by_type: dict[type, Callable[[Any, Family], str]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        by_type: dict[type, Callable[[Any, Family], str]] = {
            Iface: self.iface,
            Mark: self.mark,
            CtStates: self.ct_states,
            CtDnat: self.ct_dnat,
            Protocol: self.protocol,
            Net: self.net,
            AddrSet: self.addr_set,
            Ports: self.ports,
            PortSet: self.port_set,
            PortNumberSet: self.port_number_set,
            Icmp: self.icmp,
        }
        object.__setattr__(self, "_by_type", by_type)

    def render(self, match: Match, family: Family) -> tuple[str, ...]:
        """The text of every term of the match, in order."""
        by_type = self._by_type
        return tuple([by_type[type(term)](term, family) for term in match_terms(match)])
