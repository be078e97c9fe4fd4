"""The identity, checks and kernel-state helpers both renderers share, on hand-built IR
(ir_fixtures)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib

import pytest
from ir_fixtures import ICMP, TCP, all_rulesets, ports, ruleset, table

from felis.dataplane import identifiers, ir_checks, kernel_state, rule_identity, set_members
from felis.dataplane.spec import (
    Accept,
    CtState,
    Drop,
    Family,
    IcmpMatch,
    Jump,
    Log,
    Match,
    NoTrack,
    PortRange,
    Return,
    Rule,
    Ruleset,
    SetKind,
    SetMark,
    Table,
)
from felis.errors import FelisError

# ---------------------------------------------------------------------------------------------
# Tests of the shared modules themselves.


def test_fixtures_pass_the_shared_checks() -> None:
    for rs in all_rulesets().values():
        ir_checks.check_ruleset(rs)


def test_hash_depends_on_chain_position_and_content() -> None:
    rules = [Rule(action=Drop()), Rule(action=Accept()), Rule(action=Drop())]
    hashes = rule_identity.chain_hashes("felis-x", rules)
    assert len(set(hashes)) == 3
    assert all(len(h) == 16 for h in hashes)
    assert rule_identity.chain_hashes("felis-y", rules) != hashes
    changed = rule_identity.chain_hashes("felis-x", [rules[0], Rule(action=Return()), rules[2]])
    assert changed[0] == hashes[0]
    assert changed[1] != hashes[1] and changed[2] != hashes[2]
    # Comments are part of the identity: a changed origin rewrites the rule.
    assert rule_identity.chain_hashes("felis-x", [Rule(action=Drop(), comment="a")]) != (hashes[0],)


def test_hash_is_stable() -> None:
    # A fixed vector, so an accidental change of the canonical text shows up as a failure.
    assert rule_identity.canonical_rule(Rule(action=Drop())) == " -> drop # "
    h0 = hashlib.sha224(b"FORWARD").digest()
    h1 = hashlib.sha224(h0 + b" -> drop # ").digest()
    expected = base64.urlsafe_b64encode(h1).decode()[:16]
    assert rule_identity.chain_hashes("FORWARD", [Rule(action=Drop())]) == (expected,)
    assert expected == "HdYCBwBjb_h8l3m-"


def test_canonical_text_orders_sets_and_formats_marks() -> None:
    a = Rule(Match(ct_states=frozenset({CtState.NEW, CtState.ESTABLISHED}), mark_set=0x10))
    assert rule_identity.canonical_match(a.match) == "mark_set=0x10 ct_states=established,new"


def test_port_lists_are_merged_then_split_into_15_slot_chunks() -> None:
    items = ports(5, 3, 4, (10, 12), (11, 20), *range(100, 130, 2))
    merged = rule_identity.normalise_ports(items)
    assert merged[:2] == (PortRange(3, 5), PortRange(10, 20))
    chunks = rule_identity.port_chunks(merged)
    assert all(sum(p.slots for p in chunk) <= 15 for chunk in chunks)
    assert [p for chunk in chunks for p in chunk] == list(merged)
    rule = Rule(Match(protocol=TCP, src_ports=items, dst_ports=items), Accept())
    expanded = rule_identity.expand_rule(rule)
    assert len(expanded) == len(chunks) ** 2
    assert {r.match.src_ports for r in expanded} == set(chunks)


def test_rule_comment_carries_hash_then_origin() -> None:
    text = rule_identity.rule_comment("A" * 16, "gnp/x ingress rule 0")
    assert text == "felis:AAAAAAAAAAAAAAAA; gnp/x ingress rule 0"
    assert rule_identity.extract_hash(text) == "A" * 16
    assert len(rule_identity.rule_comment("A" * 16, "x" * 300)) == rule_identity.MAX_COMMENT


@pytest.mark.parametrize("name", ["eth0", "eth+", "a.b-c_d", "x" * 15, "cali+", "enp0s31f6.100"])
def test_good_interface_names(name: str) -> None:
    assert identifiers.check_iface(name) == name


@pytest.mark.parametrize(
    "name", ["", "x" * 16, "eth0 -j ACCEPT", 'eth"', "eth++", "+", "eth*", "é0", "a;b"]
)
def test_bad_interface_names(name: str) -> None:
    with pytest.raises(FelisError, match="invalid interface name"):
        identifiers.check_iface(name)


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (identifiers.check_chain, "cali-x"),
        (identifiers.check_chain, "felis-" + "x" * 23),
        (identifiers.check_chain, "felis-a b"),
        (identifiers.check_chain, "felis-a:b"),
        (identifiers.check_set_name, "felis4-s-a:b"),
        (identifiers.check_set_name, "4felis"),
        (identifiers.check_set_name, "f" * 32),
        (identifiers.check_comment, 'say "hi"'),
        (identifiers.check_comment, "a\nb"),
        (identifiers.check_log_prefix, "x" * 30),
        (identifiers.check_log_prefix, 'a"b'),
    ],
)
def test_bad_identifiers_raise_one_line_errors(check: object, value: str) -> None:
    with pytest.raises(FelisError) as info:
        check(value)  # type: ignore[operator]
    assert "\n" not in str(info.value)


def _with_rule(rule: Rule, t: Table = Table.FILTER) -> Ruleset:
    return ruleset({t: table(t, [], **{"felis-a": [rule]})})


@pytest.mark.parametrize(
    ("rule", "t", "message"),
    [
        (Rule(Match(dst_ports=ports(1)), Accept()), Table.FILTER, "needs protocol"),
        (Rule(Match(protocol=ICMP, icmp=IcmpMatch(300)), Accept()), Table.FILTER, "range"),
        (Rule(Match(protocol=TCP, icmp=IcmpMatch(8)), Accept()), Table.FILTER, "ICMP"),
        (Rule(action=NoTrack()), Table.FILTER, "raw"),
        (Rule(action=Jump("felis-missing")), Table.FILTER, "not in table"),
        (Rule(action=SetMark(0x3, 0x1)), Table.FILTER, "outside its mask"),
        (Rule(Match(mark_set=1, mark_clear=1)), Table.FILTER, "both set and clear"),
        (Rule(Match(src_net="fd00::/8")), Table.FILTER, "not IPv4"),
        (Rule(Match(src_net="10.0.0.0/33")), Table.FILTER, "invalid CIDR"),
        (Rule(action=Log('x" -j ACCEPT')), Table.FILTER, "log prefix"),
        (Rule(Match(src_sets=("felis4-s-nope",))), Table.FILTER, "not a net set"),
    ],
)
def test_bad_rules_are_refused(rule: Rule, t: Table, message: str) -> None:
    with pytest.raises(FelisError, match=message):
        ir_checks.check_ruleset(_with_rule(rule, t))


def test_set_members_are_normalised_and_collapsed() -> None:
    members = set_members.normalise_members(
        SetKind.NET, ["10.0.0.1", "10.0.0.0/24", "10.0.1.5/24", "10.9.0.1/32"], Family.V4
    )
    assert members == frozenset({"10.0.0.0/23", "10.9.0.1/32"})
    ports = set_members.normalise_members(SetKind.IP_PORT, ["10.0.0.1,TCP:80"], Family.V4)
    assert ports == frozenset({"10.0.0.1,tcp:80"})
    with pytest.raises(FelisError):
        set_members.normalise_members(SetKind.IP_PORT, ["10.0.0.1,icmp:8"], Family.V4)


def test_hooks_in_place() -> None:
    assert kernel_state.hooks_in_place(["a", None, None, "z"], ["a"], ["z"])
    assert kernel_state.hooks_in_place(["a", "b"], ["a", "b"], [])
    assert not kernel_state.hooks_in_place([None, "a"], ["a"], [])
    assert not kernel_state.hooks_in_place(["a", "x", None], ["a"], [])
    assert not kernel_state.hooks_in_place(["b", "a"], ["a", "b"], [])
    assert not kernel_state.hooks_in_place([], ["a"], [])


def test_expansion_keeps_origin_and_is_identity_without_ports() -> None:
    rule = Rule(Match(protocol=TCP), Accept(), "c")
    assert rule_identity.expand_rule(rule) == (rule,)
    big = dataclasses.replace(rule, match=Match(protocol=TCP, dst_ports=ports(*range(1, 40, 2))))
    assert {r.comment for r in rule_identity.expand_rule(big)} == {"c"}
