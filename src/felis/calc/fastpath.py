"""The untracked fast path: Allow rules lifted out of the raw chains into the raw hook itself.

Every packet of an untracked flow walks the raw table: the dispatch by interface, the endpoint
chain, the tiers, each policy chain and the verdict rules after it. For the flows doNotTrack
exists for (tens of thousands of new connections a second) that walk is most of felis' cost.

The walk before the first Allow that matches is, in most policies, a run of other Allow rules:
nothing in it can decide anything but "accept, untracked". So the same Allow rules, each with
the endpoint's interface added, can sit in front of the walk, in the raw hook, with the action
the walk would end in (set the accept mark, NOTRACK, ACCEPT). A packet matching one of them gets
exactly the verdict and mark the walk would give; a packet matching none takes the walk as
before. `leading_allows` finds that run by walking the endpoint chain under the one assumption
every packet meets it with: no verdict bit set yet. It stops at the first rule that could decide
otherwise (a Deny, a Pass, a Log, a failsafe accept, anything it does not recognise), so it can
only ever lift fewer rules than it might, never one that would change a verdict.

Any order of lifted rules gives the same result: each one is an Allow ending in the same
action, so a packet matching several of them is accepted, untracked, whichever matches first
(the walk too accepts it at the first it meets). That is what lets any subset of the run be
lifted, and the flow-shaped ones (`flow_shape`: a protocol, one remote address condition, local
ports) that share a protocol and a remote address condition be merged into one rule whose local
ports are one port-set lookup (nft `inet_service` hash set, ipset `bitmap:port`).

With hundreds of services allowed to the same clients in front of the one a flow needs, the
flow still meets one rule. (A set of remote address × port pairs would serve different clients
per service too, but nft looks such a concatenated interval set up in time that grows with its
size: 1,000 elements cost more than the walk, docs/benchmarks-lab.md.)
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping

from felis.calc import names
from felis.calc.sources import PortsSource
from felis.dataplane.spec import (
    Chain,
    Family,
    Jump,
    MarkBits,
    Match,
    Return,
    Rule,
    SetMark,
    safe_comment,
)
from felis.model.constants import PORT_PROTOCOLS

MAX_LIFTED_RULES = 32
"""Lifted rules kept as rules, per endpoint and direction. Lifted rules are crossed by every
packet before the walk, so a policy with hundreds of leading Allows that do not fit a flow set
keeps most of them in the walk, where only the packets of that interface meet them."""
MAX_WALKED_RULES = 4096
"""Leading Allows collected per endpoint and direction (most become one flow-set lookup)."""
MIN_PORT_SET_RULES = 4
"""Fewer flow-shaped Allows with one protocol and remote address condition stay rules: a set
lookup costs about what a few rules cost, and a rule names its policy rule in `felis trace`."""
MAX_FLOW_PORTS = 64
"""A rule with more local ports (ranges counted port by port) stays a rule."""


class _Stop(Exception):
    """A rule that could decide something other than "accept, untracked" was reached."""


def _any_match(match: Match) -> bool:
    return True


@dataclasses.dataclass
class _Walk:
    chains: Mapping[str, Chain]
    marks: MarkBits
    limit: int
    collect: int
    """The verdict bit of the rules collected (accept: Allows; drop: Denies)."""
    eligible: Callable[[Match], bool] = _any_match
    """Which of those rules are collected; an ineligible one stops the walk, unless it sets
    a bit that only ever drops (`collect` is the drop bit): then it is stepped over."""
    assumed_clear: int = 0
    """Bits besides `MarkBits.all` taken as clear: the deny walk assumes the drop bit clear, as
    a packet carrying it (set by a Deny, or on entry) is dropped whichever way it goes."""
    found: list[Rule] = dataclasses.field(default_factory=list)
    depth: int = 0

    def mark_test(self, match: Match) -> bool | None:
        """The outcome of the match's mark test while every bit of `MarkBits.all` is clear (the
        state the walk assumes), or None when the match tests more than marks."""
        marks_only = dataclasses.replace(match, mark_set=0, mark_clear=0).is_empty()
        if not marks_only:
            return None
        known = self.marks.all | self.assumed_clear
        if (match.mark_set | match.mark_clear) & ~known:
            raise _Stop  # a bit whose value the walk does not know
        return not match.mark_set

    def chain(self, name: str) -> None:
        chain = self.chains.get(name)
        if chain is None or self.depth > 8:
            raise _Stop
        self.depth += 1
        try:
            for rule in chain.rules:
                if not self.rule(rule):
                    return
        finally:
            self.depth -= 1

    def rule(self, rule: Rule) -> bool:
        """Walk one rule; False when the current chain returns here."""
        action = rule.action
        bit = self.collect
        if isinstance(action, SetMark) and action == SetMark(bit, bit):
            if rule.match.mark_set or rule.match.mark_clear:
                raise _Stop
            if not self.eligible(rule.match):
                if bit == self.marks.drop:
                    return True  # another Deny: it can only drop too
                raise _Stop
            if len(self.found) >= self.limit:
                raise _Stop
            self.found.append(rule)
            return True
        test = self.mark_test(rule.match)
        if test is None:
            raise _Stop
        if not test:
            return True
        match action:
            case None:
                return True
            case SetMark(value=0, mask=mask) if not mask & ~self.marks.all:
                return True  # clears bits that are clear already
            case Jump(target=target):
                self.chain(target)
                return True
            case Return():
                return False
        raise _Stop


def leading_allows(
    endpoint_chain: str, chains: Mapping[str, Chain], marks: MarkBits
) -> tuple[Rule, ...]:
    """The Allow rules (each setting the accept bit) a packet meets in `endpoint_chain` and the
    chains it jumps to, before any rule that could decide otherwise, in the order it meets
    them."""
    walk = _Walk(chains, marks, MAX_WALKED_RULES, marks.accept)
    with contextlib.suppress(_Stop):
        walk.chain(endpoint_chain)
    return tuple(walk.found)


def source_only(match: Match) -> bool:
    """A match on the source address alone: one CIDR or one address set, nothing else."""
    rest = dataclasses.replace(match, src_net=None, src_sets=())
    return rest.is_empty() and (match.src_net is None) == (len(match.src_sets) == 1)


def leading_denies(
    endpoint_chain: str, chains: Mapping[str, Chain], marks: MarkBits
) -> tuple[Rule, ...]:
    """The source-only Deny rules (each setting the drop bit) a packet meets in the raw
    `endpoint_chain` before any rule that could decide anything but a drop: for a packet from
    one of their sources, dropping it before the walk (XDP, felis.xdp) gives the verdict the
    walk gives, failsafe ports aside, which XDP passes first as the walk's Deny does."""
    walk = _Walk(chains, marks, MAX_WALKED_RULES, marks.drop, source_only, marks.drop)
    with contextlib.suppress(_Stop):
        walk.chain(endpoint_chain)
    return tuple(walk.found)


@dataclasses.dataclass(frozen=True, slots=True)
class FlowShape:
    """What a flow-shaped Allow matches: the remote end's addresses (a CIDR or a set), the
    protocol, and the local ports."""

    net: str | None
    address_set: str | None
    protocol: int
    ports: tuple[int, ...]


def flow_shape(match: Match, ingress: bool) -> FlowShape | None:
    """The flow shape of an Allow's match, when it tests exactly a protocol with ports, one
    remote address condition and the local ports (ingress: source address, destination ports;
    egress: destination address, source ports), and nothing else; else None."""
    if match.protocol not in PORT_PROTOCOLS:
        return None
    if ingress:
        net, sets, ports = match.src_net, match.src_sets, match.dst_ports
        rest = dataclasses.replace(match, src_net=None, src_sets=(), dst_ports=(), protocol=None)
    else:
        net, sets, ports = match.dst_net, match.dst_sets, match.src_ports
        rest = dataclasses.replace(match, dst_net=None, dst_sets=(), src_ports=(), protocol=None)
    if not rest.is_empty() or not ports or (net is None) == (len(sets) != 1):
        return None
    if sum(p.last - p.first + 1 for p in ports) > MAX_FLOW_PORTS:
        return None
    numbers = tuple(sorted({n for p in ports for n in range(p.first, p.last + 1)}))
    return FlowShape(net, sets[0] if sets else None, match.protocol, numbers)


@dataclasses.dataclass
class FastPath:
    """The lifted rules of one raw hook, and the port sets they use."""

    family: Family
    marks: MarkBits
    chains: Mapping[str, Chain]
    sets: dict[str, PortsSource] = dataclasses.field(default_factory=dict)

    def rules(self, iface: str, endpoint_chain: str, ingress: bool) -> list[Rule]:
        """The fast-path rules of one endpoint and direction (each with the interface): one
        rule per protocol and remote address condition shared by enough flow-shaped Allows,
        with their local ports in one port set, then the other Allows as they are."""
        singles: list[Rule] = []
        groups: dict[tuple[int, str | None, str | None], list[tuple[Rule, FlowShape]]] = {}
        for allow in leading_allows(endpoint_chain, self.chains, self.marks):
            shape = flow_shape(allow.match, ingress)
            if shape is None:
                singles.append(allow)
            else:
                key = (shape.protocol, shape.net, shape.address_set)
                groups.setdefault(key, []).append((allow, shape))
        out: list[Rule] = []
        for (protocol, net, address_set), members in groups.items():
            if len(members) < MIN_PORT_SET_RULES:
                singles += [allow for allow, _ in members]
                continue
            ports = tuple(sorted({port for _, shape in members for port in shape.ports}))
            name = names.port_set(self.family, ports)
            self.sets[name] = PortsSource(ports)
            remote = (address_set,) if address_set is not None else ()
            match = (
                Match(protocol=protocol, src_net=net, src_sets=remote, dst_port_in_set=name)
                if ingress
                else Match(protocol=protocol, dst_net=net, dst_sets=remote, src_port_in_set=name)
            )
            comment = f"Fast path of {len(members)} untracked Allow rules"
            out.append(self._lifted(match, iface, ingress, comment))
        # The policy rule's own comment: counters by rule sum over both paths.
        out += [self._lifted(allow.match, iface, ingress, allow.comment) for allow in singles]
        return out[:MAX_LIFTED_RULES]

    @staticmethod
    def _lifted(match: Match, iface: str, ingress: bool, comment: str) -> Rule:
        where = (
            dataclasses.replace(match, in_iface=iface)
            if ingress
            else dataclasses.replace(match, out_iface=iface)
        )
        return Rule(where, Jump(names.UNTRACKED_ACCEPT), safe_comment(comment))
