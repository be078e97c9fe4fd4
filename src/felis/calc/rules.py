"""One policy direction → one policy chain, per IP family (docs/dataplane.md#policy-chains).

Calico's iptables renderer needs "match blocks" of scratch-mark rules because one iptables rule
holds one source net and one multiport match. The IR has no such limits (a list of nets becomes
an IP set, port lists are ORed within a field), so a rule only splits when its alternatives live
in different fields: numeric ports versus each named-port set. Each alternative becomes one IR
rule setting the verdict bit, followed by one rule acting on the bit, which keeps them ORed.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from felis.calc import names
from felis.calc.inputs import RuleSource
from felis.calc.selectors import rule_side_selector
from felis.calc.sources import NamedPortSource, NetsSource, SelectorSource, SetSource
from felis.dataplane.spec import (
    Drop,
    Family,
    Goto,
    IcmpMatch,
    Log,
    MarkBits,
    Match,
    PortRange,
    Return,
    Rule,
    SetMark,
    safe_comment,
)
from felis.model.constants import PORT_PROTOCOL_NAMES
from felis.model.resources import EntityRule, ICMPFields
from felis.model.resources import Rule as ApiRule
from felis.selector import Selector, parse


@dataclass(frozen=True, slots=True)
class RenderedChain:
    """A policy chain plus what its rules refer to."""

    chain_rules: tuple[Rule, ...]
    sets: Mapping[str, SetSource]
    warnings: tuple[str, ...] = ()


@dataclass(slots=True)
class _Side:
    """One side (source or destination) of one API rule, for one family."""

    net: str | None = None
    not_net: str | None = None
    sets: list[str] = field(default_factory=list)
    not_sets: list[str] = field(default_factory=list)
    not_ports: tuple[PortRange, ...] = ()
    not_port_sets: list[str] = field(default_factory=list)
    alternatives: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    """ORed choices for this side (numeric ports + selector set, or one named-port set)."""


class _Skip(Exception):
    """This rule cannot match anything in this family (or at all)."""

    def __init__(self, why: str | None = None) -> None:
        super().__init__(why)
        self.why = why


def _nets(values: list[str], family: Family, negated: bool) -> list[str]:
    if not values:
        return []
    result: list[str] = []
    for value in values:
        net = ipaddress.ip_network(value, strict=False)
        if negated and net.prefixlen == 0:
            raise _Skip("notNets holds a catch-all CIDR, the rule matches nothing")
        if net.version == int(family):
            result.append(str(net))
    if values and not result:
        raise _Skip()
    return sorted(set(result))


def entity_selector(entity: EntityRule) -> Selector | None:
    """The selector for the positive match of a rule side (`felis.calc.selectors`).

    Raises _Skip when the side matches Kubernetes services, which felis never sees.
    """
    if entity.services is not None:
        raise _Skip("matches Kubernetes services, which are never host endpoints")
    return rule_side_selector(entity)


def named_port_protocol(protocol: int | None) -> str:
    if protocol is None:
        return "any"
    return PORT_PROTOCOL_NAMES.get(protocol, "any")


class _Builder:
    def __init__(self, family: Family) -> None:
        self.family = family
        self.sets: dict[str, SetSource] = {}

    def selector_set(self, selector: Selector) -> str:
        name = names.selector_set(self.family, selector.unique_id)
        self.sets[name] = SelectorSource(selector)
        return name

    def nets_set(self, cidrs: list[str]) -> str:
        name = names.nets_set(self.family, cidrs)
        self.sets[name] = NetsSource(frozenset(cidrs))
        return name

    def named_port_set(self, selector: Selector, protocol: str, port: str) -> str:
        set_id = names.named_port_id(selector.unique_id, protocol, port)
        name = names.named_port_set(self.family, set_id)
        self.sets[name] = NamedPortSource(set_id, selector, protocol, port)
        return name

    def side(self, entity: EntityRule, protocol: int | None) -> _Side:
        side = _Side()
        positive = _nets(entity.nets, self.family, negated=False)
        negative = _nets(entity.not_nets, self.family, negated=True)
        selector = entity_selector(entity)
        if len(positive) == 1:
            side.net = positive[0]
        elif positive:
            side.sets.append(self.nets_set(positive))
        if len(negative) == 1:
            side.not_net = negative[0]
        elif negative:
            side.not_sets.append(self.nets_set(negative))
        if entity.not_selector:
            side.not_sets.insert(0, self.selector_set(parse(entity.not_selector)))

        selector_sets = [self.selector_set(selector)] if selector is not None else []
        if not entity.ports and not entity.not_ports:
            side.alternatives = [{"sets": selector_sets}]
            return side
        numeric = tuple(PortRange(p.min_port, p.max_port) for p in entity.ports if not p.is_named)
        named = list(dict.fromkeys(p.name for p in entity.ports if p.is_named))
        side.not_ports = tuple(
            PortRange(p.min_port, p.max_port) for p in entity.not_ports if not p.is_named
        )
        not_named = list(dict.fromkeys(p.name for p in entity.not_ports if p.is_named))
        np_protocol = named_port_protocol(protocol)
        # A named port is looked up among the endpoints the positive selector picks (or all).
        np_selector = selector if selector is not None else parse("all()")
        side.not_port_sets = [self.named_port_set(np_selector, np_protocol, n) for n in not_named]

        if not named:
            side.alternatives = [{"sets": selector_sets, "ports": numeric}]
        else:
            # The named-port set already holds only the selected endpoints, so those
            # alternatives need no separate selector set.
            alternatives: list[dict[str, Any]] = []
            if numeric:
                alternatives.append({"sets": selector_sets, "ports": numeric})
            alternatives += [
                {"sets": [], "port_set": self.named_port_set(np_selector, np_protocol, n)}
                for n in named
            ]
            side.alternatives = alternatives
        return side


def _icmp(fields: ICMPFields | None) -> IcmpMatch | None:
    if fields is None or fields.type is None:
        return None
    return IcmpMatch(fields.type, fields.code)


def rule_matches(rule: ApiRule, family: Family, builder: _Builder) -> list[Match]:
    """The ORed list of IR matches for one API rule; raises _Skip when it cannot match."""
    if rule.ip_version is not None and rule.ip_version != int(family):
        raise _Skip()
    protocol = rule.protocol.number if rule.protocol is not None else None
    if (protocol == 1 and family is Family.V6) or (protocol == 58 and family is Family.V4):
        raise _Skip()
    not_protocol = rule.not_protocol.number if rule.not_protocol is not None else None
    src = builder.side(rule.source, protocol)
    dst = builder.side(rule.destination, protocol)
    base: dict[str, Any] = {
        "protocol": protocol,
        "not_protocol": not_protocol,
        "src_net": src.net,
        "not_src_net": src.not_net,
        "dst_net": dst.net,
        "not_dst_net": dst.not_net,
        "not_src_sets": tuple(src.not_sets),
        "not_dst_sets": tuple(dst.not_sets),
        "not_src_ports": src.not_ports,
        "not_dst_ports": dst.not_ports,
        "not_src_port_sets": tuple(src.not_port_sets),
        "not_dst_port_sets": tuple(dst.not_port_sets),
        "icmp": _icmp(rule.icmp),
        "not_icmp": _icmp(rule.not_icmp),
    }
    matches = []
    for s_alt, d_alt in itertools.product(src.alternatives, dst.alternatives):
        matches.append(
            Match(
                **base,
                src_sets=tuple(s_alt.get("sets", [])) + tuple(src.sets),
                dst_sets=tuple(d_alt.get("sets", [])) + tuple(dst.sets),
                src_ports=s_alt.get("ports", ()),
                dst_ports=d_alt.get("ports", ()),
                src_port_set=s_alt.get("port_set"),
                dst_port_set=d_alt.get("port_set"),
            )
        )
    return matches


MAX_LOG_PREFIX = 29
"""iptables' LOG prefix limit; nft accepts more, but both backends must log the same text."""


def log_prefix(template: str, policy: RuleSource) -> str:
    text = (
        template.replace("%t", policy.tier)
        .replace("%k", policy.short_kind)
        .replace("%n", policy.name)
        .replace("%p", policy.name)
    )
    return safe_comment(text, MAX_LOG_PREFIX).rstrip() or "felis-packet"


def _action_rules(
    action: str,
    matches: list[Match],
    marks: MarkBits,
    prefix: str,
    comment: str,
    deny_chain: str | None,
) -> list[Rule]:
    if action == "Log":
        if len(matches) == 1:
            return [Rule(matches[0], Log(prefix), comment)]
        # Log must fire once even when several alternatives match: collect them in a scratch bit.
        bit = marks.scratch0
        out = [Rule(Match(), SetMark(0, bit), comment)]
        out += [Rule(m, SetMark(bit, bit), comment) for m in matches]
        out.append(Rule(Match(mark_set=bit), Log(prefix), comment))
        return out
    bit = {"Allow": marks.accept, "Pass": marks.pass_, "Deny": marks.drop}[action]
    out = [Rule(m, SetMark(bit, bit), comment) for m in matches]
    verdict: Drop | Goto | Return = Return()
    if action == "Deny":
        verdict = Drop() if deny_chain is None else Goto(deny_chain)
    out.append(Rule(Match(mark_set=bit), verdict, comment))
    return out


def direction_word(ingress: bool) -> str:
    return "ingress" if ingress else "egress"


def render_policy_chain(
    policy: RuleSource, ingress: bool, family: Family, marks: MarkBits, log_template: str
) -> RenderedChain:
    builder = _Builder(family)
    # An untracked Deny goes through the failsafe check before it drops (docs/dataplane.md,
    # "Failsafe ports and untracked policy"): failsafe ports must still pass it, but only then,
    # so that an untracked Allow is never overridden by a failsafe port.
    deny_chain = names.untracked_deny_chain(ingress) if policy.do_not_track else None
    direction = direction_word(ingress)
    prefix = log_prefix(log_template, policy)
    rules: list[Rule] = []
    warnings: list[str] = []
    for index, api_rule in enumerate(policy.rules(ingress)):
        comment = safe_comment(f"{policy.short_kind}/{policy.name} {direction} rule {index}")
        try:
            matches = rule_matches(api_rule, family, builder)
        except _Skip as skip:
            if skip.why:
                warnings.append(
                    f"{policy.kind} {policy.name} {direction} rule {index}: {skip.why}; skipped"
                )
            continue
        rules += _action_rules(api_rule.action, matches, marks, prefix, comment, deny_chain)
    # A RETURN at the very end of a chain changes nothing.
    while rules and isinstance(rules[-1].action, Return):
        rules.pop()
    if not rules:
        rules = [
            Rule(comment=safe_comment(f"{policy.short_kind}/{policy.name} {direction} no rules"))
        ]
    # Keep only the sets the surviving rules use (a skipped rule may have registered some).
    used = _sets_used(rules)
    sets = {name: src for name, src in builder.sets.items() if name in used}
    return RenderedChain(tuple(rules), sets, tuple(dict.fromkeys(warnings)))


def _sets_used(rules: Iterable[Rule]) -> set[str]:
    used: set[str] = set()
    for rule in rules:
        used.update(match_sets(rule.match))
    return used


def match_sets(match: Match) -> Iterable[str]:
    yield from match.src_sets
    yield from match.not_src_sets
    yield from match.dst_sets
    yield from match.not_dst_sets
    yield from match.not_src_port_sets
    yield from match.not_dst_port_sets
    if match.src_port_set is not None:
        yield match.src_port_set
    if match.dst_port_set is not None:
        yield match.dst_port_set
    if match.src_port_in_set is not None:
        yield match.src_port_in_set
    if match.dst_port_in_set is not None:
        yield match.dst_port_in_set
