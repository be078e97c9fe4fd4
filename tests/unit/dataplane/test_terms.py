"""The one walk of a Match both renderers print (felis.dataplane.terms), and their memoisation."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from ir_fixtures import ACCEPT, PASS, TCP, UDP, all_rulesets, ports, seed_ruleset

from felis.dataplane import iptables, nftables, terms
from felis.dataplane.memo import RenderCache
from felis.dataplane.rule_identity import expand_rules
from felis.dataplane.spec import CtState, Family, IcmpMatch, Match, PortRange, Ruleset, Table
from felis.dataplane.terms import (
    AddrSet,
    CtDnat,
    CtStates,
    Icmp,
    Iface,
    Mark,
    Net,
    PortNumberSet,
    Ports,
    PortSet,
    Protocol,
    Side,
    match_terms,
)

SRC, DST = Side.SRC, Side.DST

# One value per Match field that makes the field count (not its default).
SAMPLES: dict[str, object] = {
    "protocol": TCP,
    "not_protocol": UDP,
    "src_net": "10.0.0.0/8",
    "not_src_net": "10.1.0.0/16",
    "dst_net": "10.2.0.0/16",
    "not_dst_net": "10.3.0.0/16",
    "src_sets": ("s1", "s2"),
    "not_src_sets": ("s3",),
    "dst_sets": ("s4",),
    "not_dst_sets": ("s5", "s6"),
    "src_ports": ports(1),
    "not_src_ports": ports(2),
    "dst_ports": ports((3, 4)),
    "not_dst_ports": ports(5),
    "src_port_set": "p1",
    "dst_port_set": "p2",
    "not_src_port_sets": ("p3",),
    "not_dst_port_sets": ("p4", "p5"),
    "icmp": IcmpMatch(8),
    "not_icmp": IcmpMatch(3, 4),
    "in_iface": "eth0",
    "out_iface": "veth+",
    "mark_set": ACCEPT,
    "mark_clear": PASS,
    "ct_states": frozenset({CtState.NEW, CtState.INVALID}),
    "ct_dnat": True,
    "src_port_in_set": "q1",
    "dst_port_in_set": "q2",
}


def typed(items: tuple[terms.Term, ...]) -> list[tuple[str, terms.Term]]:
    # Terms are named tuples: compare them with their type, or Net and AddrSet could pass
    # for each other.
    return [(type(term).__name__, term) for term in items]


def test_samples_cover_every_match_field() -> None:
    assert set(SAMPLES) == {f.name for f in dataclasses.fields(Match)}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_match_field_becomes_a_term(name: str) -> None:
    # A field the walk forgot would print nothing in either backend: the rule would match more.
    assert match_terms(Match(**{name: SAMPLES[name]})), name  # type: ignore[arg-type]


def test_empty_match_has_no_terms() -> None:
    assert match_terms(Match()) == ()


def test_order_of_the_terms() -> None:
    every = Match(**SAMPLES)  # type: ignore[arg-type]
    pos, neg = False, True  # values of `negated`
    # One line a step of the walk: interfaces, mark, conntrack; the positive tests (protocol,
    # source, destination, ICMP); then the negated ones in the same order.
    steps: list[tuple[terms.Term, ...]] = [
        (Iface(SRC, "eth0"), Iface(DST, "veth+"), Mark(ACCEPT, ACCEPT | PASS)),
        (CtStates((CtState.INVALID, CtState.NEW)), CtDnat(pos)),
        (Protocol(pos, TCP),),
        (Net(SRC, pos, "10.0.0.0/8"), AddrSet(SRC, pos, "s1"), AddrSet(SRC, pos, "s2")),
        (Ports(SRC, pos, ports(1), TCP), PortSet(SRC, pos, "p1")),
        (Net(DST, pos, "10.2.0.0/16"), AddrSet(DST, pos, "s4")),
        (Ports(DST, pos, (PortRange(3, 4),), TCP), PortSet(DST, pos, "p2")),
        (PortNumberSet(SRC, "q1", TCP), PortNumberSet(DST, "q2", TCP), Icmp(pos, 8, None)),
        (Protocol(neg, UDP), Net(SRC, neg, "10.1.0.0/16"), AddrSet(SRC, neg, "s3")),
        (Ports(SRC, neg, ports(2), TCP), PortSet(SRC, neg, "p3")),
        (Net(DST, neg, "10.3.0.0/16"), AddrSet(DST, neg, "s5"), AddrSet(DST, neg, "s6")),
        (Ports(DST, neg, ports(5), TCP), PortSet(DST, neg, "p4"), PortSet(DST, neg, "p5")),
        (Icmp(neg, 3, 4),),
    ]
    assert typed(match_terms(every)) == typed(tuple(term for step in steps for term in step))


def test_not_dnat_is_a_negated_term() -> None:
    assert typed(match_terms(Match(ct_dnat=False))) == typed((CtDnat(True),))


def test_every_term_kind_has_a_spelling_in_both_backends() -> None:
    kinds = set(typing.get_args(terms.Term))
    assert len(kinds) == len(dataclasses.fields(terms.TermText)) - 1  # all but the dispatch
    for text in (iptables._TEXT, nftables._TEXT):
        assert set(text._by_type) == kinds


def _kernel_matches(rs: Ruleset) -> set[tuple[Table, Match]]:
    found = set()
    for t, spec in rs.tables.items():
        rules = [rule for chain in spec.chains.values() for rule in chain.rules]
        rules += [hook.rule for hook in spec.hooks]
        found |= {(t, rule.match) for rule in expand_rules(rules)}
    return found


@pytest.mark.parametrize("name", sorted(all_rulesets()))
def test_both_backends_print_one_text_per_term(name: str) -> None:
    rs = all_rulesets()[name]
    for t, match in _kernel_matches(rs):
        n = len(match_terms(match))
        assert len(iptables.render_match(match, rs.family)) == n
        assert len(nftables.render_match(match, rs.family, t)) == n


def test_negated_ports_past_15_slots_are_two_multiport_matches_in_one_term() -> None:
    many = ports(*range(1, 40, 2))  # 20 single ports
    text = iptables.render_match(Match(protocol=TCP, not_dst_ports=many), Family.V4)
    assert len(text) == 2
    assert text[1].count("-m multiport ! --dports") == 2
    nft = nftables.render_match(Match(protocol=TCP, not_dst_ports=many), Family.V4, Table.FILTER)
    assert nft[1].startswith("tcp dport != { 1, 3, ") and nft[1].endswith(", 39 }")


@pytest.mark.parametrize("backend", [iptables, nftables], ids=["iptables", "nftables"])
def test_match_text_is_memoised_by_value_in_the_render_cache(backend: typing.Any) -> None:
    rs = seed_ruleset()
    distinct = len({match for _, match in _kernel_matches(rs)})
    cache = RenderCache()
    backend.render_full(rs, cache=cache)
    render = cache.values(backend._MATCH_TEXT)
    first = render.cache_info()
    assert first.misses == distinct  # each distinct match printed once
    assert first.hits > 0  # the seed repeats its mark and conntrack matches
    backend.render_full(rs, cache=cache)  # the same objects: nothing is printed anew
    assert render.cache_info().misses == first.misses
    backend.render_full(seed_ruleset(), cache=cache)  # equal matches in new objects: by value
    again = render.cache_info()
    assert again.misses == distinct and again.currsize == distinct
    assert again.hits > first.hits
    # Another cache shares nothing with this one.
    other = RenderCache()
    backend.render_full(rs, cache=other)
    assert other.values(backend._MATCH_TEXT).cache_info().misses == distinct
    assert render.cache_info() == again
