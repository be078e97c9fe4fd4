"""Hand-built IR fixtures shared by the renderer tests, and tests of the shared rule identity.

(The fixtures live in a test module because this folder has no conftest; the other test files
import them by module name.)
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib

import pytest

from felis.dataplane import rulehash
from felis.dataplane.spec import (
    Accept,
    Chain,
    CtState,
    Drop,
    Family,
    Goto,
    Hook,
    HookPosition,
    IcmpMatch,
    IpSet,
    Jump,
    Log,
    MarkBits,
    Match,
    NoTrack,
    PortRange,
    Return,
    Rule,
    Ruleset,
    SetKind,
    SetMark,
    Table,
    TableSpec,
)
from felis.errors import FelisError

MARKS = MarkBits.from_mask()
ACCEPT = MARKS.accept
PASS = MARKS.pass_
ALL = MARKS.all
TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58

PI = "felis-pi-gnp/memcached"
PO = "felis-po-gnp/memcached"


def client_set(family: Family) -> str:
    return f"felis{int(family)}-s-j0651QXPU3OWTryyoQJxg8d"[:31]


def _chain(name: str, *rules: Rule) -> tuple[str, Chain]:
    return name, Chain(name, tuple(rules))


def _mark(value: int, mask: int, comment: str = "", **match: object) -> Rule:
    return Rule(Match(**match), SetMark(value, mask), comment)  # type: ignore[arg-type]


def _if_accepted(action: object, comment: str = "") -> Rule:
    return Rule(Match(mark_set=ACCEPT), action, comment)  # type: ignore[arg-type]


def _failsafe(ports: list[tuple[int, int]], field: str, action: object) -> list[Rule]:
    return [
        Rule(Match(protocol=proto, **{field: (PortRange(port, port),)}), action)  # type: ignore[arg-type]
        for proto, port in ports
    ]


FAILSAFE_IN = [(TCP, 22), (UDP, 68), (TCP, 179), (TCP, 2379), (TCP, 6443)]
FAILSAFE_OUT = [(UDP, 53), (UDP, 67), (TCP, 179), (TCP, 2379), (TCP, 6443)]


def seed_ruleset(family: Family = Family.V4) -> Ruleset:
    """The memcached seed (reference §5.13) with felis' names and marks, trimmed a little."""
    cset = client_set(family)
    member = "10.128.0.50/32" if family is Family.V4 else "fd00::50/128"
    raw = TableSpec(
        Table.RAW,
        dict(
            [
                _chain(
                    "felis-PREROUTING",
                    _mark(0, ALL),
                    Rule(action=Jump("felis-from-host-endpoint")),
                    _if_accepted(Accept()),
                ),
                _chain(
                    "felis-OUTPUT",
                    _mark(0, ALL),
                    Rule(action=Jump("felis-to-host-endpoint")),
                    _if_accepted(Accept()),
                ),
                _chain(
                    "felis-from-host-endpoint",
                    Rule(Match(in_iface="eth0"), Goto("felis-fh-eth0")),
                ),
                _chain(
                    "felis-to-host-endpoint",
                    Rule(Match(out_iface="eth0"), Goto("felis-th-eth0")),
                ),
                _chain(
                    "felis-fh-eth0",
                    Rule(action=Jump("felis-failsafe-in")),
                    _mark(0, ACCEPT | PASS),
                    _mark(0, PASS, "Start of tier default"),
                    Rule(Match(mark_clear=PASS), Jump(PI)),
                    _if_accepted(NoTrack()),
                    _if_accepted(Return(), "Return if policy accepted"),
                ),
                _chain(
                    "felis-th-eth0",
                    Rule(action=Jump("felis-failsafe-out")),
                    _mark(0, ACCEPT | PASS),
                    _mark(0, PASS, "Start of tier default"),
                    Rule(Match(mark_clear=PASS), Jump(PO)),
                    _if_accepted(NoTrack()),
                    _if_accepted(Return(), "Return if policy accepted"),
                ),
                _chain(
                    "felis-failsafe-in",
                    *_failsafe(FAILSAFE_IN, "dst_ports", Accept()),
                    *_failsafe(FAILSAFE_OUT, "src_ports", Accept()),
                ),
                _chain(
                    "felis-failsafe-out",
                    *_failsafe(FAILSAFE_OUT, "dst_ports", Accept()),
                    *_failsafe(FAILSAFE_IN, "src_ports", Accept()),
                ),
                _chain(
                    PI,
                    Rule(
                        Match(protocol=TCP, src_sets=(cset,), dst_ports=(PortRange(12211, 12211),)),
                        SetMark(ACCEPT, ACCEPT),
                        "gnp/memcached-server ingress rule 0",
                    ),
                ),
                _chain(
                    PO,
                    Rule(
                        Match(protocol=TCP, src_ports=(PortRange(12211, 12211),), dst_sets=(cset,)),
                        SetMark(ACCEPT, ACCEPT),
                        "gnp/memcached-server egress rule 0",
                    ),
                ),
            ]
        ),
        (
            Hook("PREROUTING", HookPosition.INSERT, Rule(action=Jump("felis-PREROUTING"))),
            Hook("OUTPUT", HookPosition.INSERT, Rule(action=Jump("felis-OUTPUT"))),
        ),
    )
    tracked_failsafe_out = _chain(
        "felis-failsafe-out", *_failsafe(FAILSAFE_OUT, "dst_ports", Accept())
    )
    ct_est = frozenset({CtState.ESTABLISHED, CtState.RELATED})
    ct_invalid = frozenset({CtState.INVALID})
    mangle = TableSpec(
        Table.MANGLE,
        dict(
            [
                _chain(
                    "felis-PREROUTING",
                    Rule(Match(ct_states=ct_est), Accept()),
                    _if_accepted(Accept()),
                    Rule(action=Jump("felis-from-host-endpoint")),
                    _if_accepted(Accept(), "Host endpoint policy accepted packet."),
                ),
                _chain("felis-from-host-endpoint"),
                _chain(
                    "felis-POSTROUTING",
                    _if_accepted(Return()),
                    _mark(0, ALL),
                    Rule(Match(ct_dnat=True), Jump("felis-to-host-endpoint")),
                    _if_accepted(Return(), "Host endpoint policy accepted packet."),
                ),
                _chain(
                    "felis-to-host-endpoint",
                    Rule(Match(out_iface="eth0"), Goto("felis-th-eth0")),
                ),
                _chain(
                    "felis-th-eth0",
                    _mark(ACCEPT, ACCEPT, ct_states=ct_est),
                    Rule(Match(ct_states=ct_est), Return()),
                    Rule(Match(ct_states=ct_invalid), Drop()),
                    Rule(action=Jump("felis-failsafe-out")),
                    _mark(0, ACCEPT | PASS),
                    Rule(action=Drop(), comment="Drop if no policy matched"),
                ),
                tracked_failsafe_out,
            ]
        ),
        (
            Hook("PREROUTING", HookPosition.INSERT, Rule(action=Jump("felis-PREROUTING"))),
            Hook("POSTROUTING", HookPosition.INSERT, Rule(action=Jump("felis-POSTROUTING"))),
        ),
    )
    endpoint = [
        Rule(Match(ct_states=ct_est), Accept()),
        Rule(Match(ct_states=ct_invalid), Drop()),
    ]
    forward_default = [
        *endpoint,
        _mark(0, ACCEPT | PASS),
        _mark(ACCEPT, ACCEPT, "Allow forwarded traffic by default"),
        Rule(action=Return(), comment="Return for accepted forward traffic"),
    ]
    filt = TableSpec(
        Table.FILTER,
        dict(
            [
                _chain(
                    "felis-INPUT",
                    _if_accepted(Accept()),
                    _mark(0, ALL),
                    Rule(action=Jump("felis-from-host-endpoint")),
                    _if_accepted(Accept(), "Host endpoint policy accepted packet."),
                ),
                _chain(
                    "felis-FORWARD",
                    _mark(0, ALL & ~ACCEPT),
                    Rule(Match(mark_clear=ACCEPT), Jump("felis-from-hep-forward")),
                    Rule(action=Jump("felis-to-hep-forward")),
                ),
                _chain(
                    "felis-OUTPUT",
                    _if_accepted(Accept()),
                    _mark(0, ALL),
                    Rule(Match(ct_dnat=True), Return(), "DNAT egress is policed in mangle"),
                    Rule(action=Jump("felis-to-host-endpoint")),
                    _if_accepted(Accept(), "Host endpoint policy accepted packet."),
                ),
                _chain(
                    "felis-from-host-endpoint",
                    Rule(Match(in_iface="eth0"), Goto("felis-fh-eth0")),
                ),
                _chain(
                    "felis-to-host-endpoint",
                    Rule(Match(out_iface="eth0"), Goto("felis-th-eth0")),
                ),
                _chain(
                    "felis-from-hep-forward",
                    Rule(Match(in_iface="eth0"), Goto("felis-fhfw-eth0")),
                ),
                _chain(
                    "felis-to-hep-forward",
                    Rule(Match(out_iface="eth0"), Goto("felis-thfw-eth0")),
                ),
                _chain(
                    "felis-fh-eth0",
                    *endpoint,
                    Rule(action=Jump("felis-failsafe-in")),
                    _mark(0, ACCEPT | PASS),
                    Rule(action=Drop(), comment="Drop if no policy matched"),
                ),
                _chain(
                    "felis-th-eth0",
                    *endpoint,
                    Rule(action=Jump("felis-failsafe-out")),
                    _mark(0, ACCEPT | PASS),
                    Rule(action=Drop(), comment="Drop if no policy matched"),
                ),
                _chain("felis-fhfw-eth0", *forward_default),
                _chain("felis-thfw-eth0", *forward_default),
                _chain("felis-failsafe-in", *_failsafe(FAILSAFE_IN, "dst_ports", Accept())),
                tracked_failsafe_out,
            ]
        ),
        (
            Hook("INPUT", HookPosition.INSERT, Rule(action=Jump("felis-INPUT"))),
            Hook("FORWARD", HookPosition.INSERT, Rule(action=Jump("felis-FORWARD"))),
            Hook("OUTPUT", HookPosition.INSERT, Rule(action=Jump("felis-OUTPUT"))),
            Hook(
                "FORWARD",
                HookPosition.APPEND,
                _if_accepted(Accept(), "Policy explicitly accepted packet."),
            ),
            Hook("FORWARD", HookPosition.APPEND, _mark(ACCEPT, ACCEPT)),
        ),
    )
    return Ruleset(
        family=family,
        tables={Table.RAW: raw, Table.MANGLE: mangle, Table.FILTER: filt},
        sets={cset: IpSet(cset, SetKind.NET, frozenset({member}), "memcached == 'client'")},
    )


def _ports(*items: int | tuple[int, int]) -> tuple[PortRange, ...]:
    return tuple(
        PortRange(item, item) if isinstance(item, int) else PortRange(*item) for item in items
    )


def everything_ruleset(family: Family = Family.V4) -> Ruleset:
    """Every Match field and every action at least once."""
    v4 = family is Family.V4
    net_a = "10.1.0.0/16" if v4 else "fd00:1::/64"
    net_b = "10.2.0.0/24" if v4 else "fd00:2::/64"
    host = "10.3.0.7/32" if v4 else "fd00:3::7/128"
    sets = {
        f"felis{int(family)}-s-a": IpSet(
            f"felis{int(family)}-s-a",
            SetKind.NET,
            frozenset({net_a, host, "10.1.2.0/24" if v4 else "fd00:1::/80"}),
        ),
        f"felis{int(family)}-s-b": IpSet(f"felis{int(family)}-s-b", SetKind.NET, frozenset()),
        f"felis{int(family)}-n-p": IpSet(
            f"felis{int(family)}-n-p",
            SetKind.IP_PORT,
            frozenset(
                {
                    ("10.3.0.7" if v4 else "fd00:3::7") + ",tcp:11211",
                    ("10.3.0.8" if v4 else "fd00:3::8") + ",udp:53",
                }
            ),
        ),
    }
    sa, sb, np_ = (f"felis{int(family)}-{s}" for s in ("s-a", "s-b", "n-p"))
    icmp_proto = ICMP if v4 else ICMPV6
    icmp_type = 8 if v4 else 128
    many = _ports(*range(1000, 1028, 2), (2000, 2010), 3000, (4000, 4100), 5000)  # 20 slots
    rules = (
        Rule(comment="gnp/empty ingress"),
        Rule(
            Match(
                protocol=TCP,
                src_net=net_a,
                src_sets=(sa,),
                src_ports=_ports(1, (10, 20)),
                dst_net=net_b,
                dst_sets=(sa, sb),
                dst_ports=many,
                in_iface="eth0",
                mark_set=ACCEPT,
                mark_clear=PASS,
                ct_states=frozenset({CtState.NEW, CtState.UNTRACKED}),
            ),
            SetMark(ACCEPT, ACCEPT),
            "gnp/all ingress rule 0",
        ),
        Rule(
            Match(
                protocol=UDP,
                not_src_net=net_b,
                not_dst_net=host,
                not_src_sets=(sb,),
                not_dst_sets=(sa,),
                not_src_ports=_ports(7),
                not_dst_ports=many,
                out_iface="veth+",
                ct_dnat=True,
            ),
            Drop(),
            "gnp/all ingress rule 1",
        ),
        Rule(
            Match(protocol=TCP, src_port_set=np_, not_dst_port_sets=(np_,)),
            Accept(),
            "named ports",
        ),
        Rule(
            Match(protocol=UDP, dst_port_set=np_, not_src_port_sets=(np_,)),
            Return(),
        ),
        Rule(Match(protocol=icmp_proto, icmp=IcmpMatch(icmp_type)), Log("felis-packet: ")),
        Rule(Match(protocol=icmp_proto, icmp=IcmpMatch(icmp_type, 0)), Accept()),
        Rule(Match(protocol=icmp_proto, not_icmp=IcmpMatch(icmp_type)), Drop()),
        Rule(Match(protocol=icmp_proto, not_icmp=IcmpMatch(3 if v4 else 1, 4)), Drop()),
        Rule(Match(not_protocol=TCP), Goto("felis-sub")),
        Rule(Match(protocol=132, dst_ports=_ports((1, 65535))), Jump("felis-sub")),
        Rule(Match(protocol=136), SetMark(0, ALL)),
        Rule(Match(mark_clear=ACCEPT | PASS), Accept()),
    )
    filt = TableSpec(
        Table.FILTER,
        {
            "felis-all": Chain("felis-all", rules),
            "felis-sub": Chain("felis-sub", (Rule(action=Return()),)),
            "felis-empty": Chain("felis-empty"),
        },
        (
            Hook("INPUT", HookPosition.INSERT, Rule(action=Jump("felis-all"))),
            Hook("INPUT", HookPosition.INSERT, Rule(Match(in_iface="lo"), Accept(), "lo")),
            Hook("OUTPUT", HookPosition.APPEND, Rule(action=Jump("felis-sub"))),
        ),
    )
    raw = TableSpec(
        Table.RAW,
        {
            "felis-nt": Chain(
                "felis-nt",
                (
                    Rule(Match(protocol=TCP, dst_ports=_ports(11211)), NoTrack()),
                    Rule(Match(in_iface="eth0"), Accept()),
                ),
            )
        },
        (Hook("PREROUTING", HookPosition.INSERT, Rule(action=Jump("felis-nt"))),),
    )
    return Ruleset(family=family, tables={Table.FILTER: filt, Table.RAW: raw}, sets=sets)


def all_rulesets() -> dict[str, Ruleset]:
    return {
        f"{name}-v{int(family)}": build(family)
        for name, build in (("seed", seed_ruleset), ("everything", everything_ruleset))
        for family in (Family.V4, Family.V6)
    }


# ---------------------------------------------------------------------------------------------
# Tests of rulehash itself.


def test_fixtures_pass_the_shared_checks() -> None:
    for ruleset in all_rulesets().values():
        rulehash.check_ruleset(ruleset)


def test_hash_depends_on_chain_position_and_content() -> None:
    rules = [Rule(action=Drop()), Rule(action=Accept()), Rule(action=Drop())]
    hashes = rulehash.chain_hashes("felis-x", rules)
    assert len(set(hashes)) == 3
    assert all(len(h) == 16 for h in hashes)
    assert rulehash.chain_hashes("felis-y", rules) != hashes
    changed = rulehash.chain_hashes("felis-x", [rules[0], Rule(action=Return()), rules[2]])
    assert changed[0] == hashes[0]
    assert changed[1] != hashes[1] and changed[2] != hashes[2]
    # Comments are part of the identity: a changed origin rewrites the rule.
    assert rulehash.chain_hashes("felis-x", [Rule(action=Drop(), comment="a")]) != (hashes[0],)


def test_hash_is_stable() -> None:
    # A fixed vector, so an accidental change of the canonical text shows up as a failure.
    assert rulehash.canonical_rule(Rule(action=Drop())) == " -> drop # "
    h0 = hashlib.sha224(b"FORWARD").digest()
    h1 = hashlib.sha224(h0 + b" -> drop # ").digest()
    expected = base64.urlsafe_b64encode(h1).decode()[:16]
    assert rulehash.chain_hashes("FORWARD", [Rule(action=Drop())]) == (expected,)
    assert expected == "HdYCBwBjb_h8l3m-"


def test_canonical_text_orders_sets_and_formats_marks() -> None:
    a = Rule(Match(ct_states=frozenset({CtState.NEW, CtState.ESTABLISHED}), mark_set=0x10))
    assert rulehash.canonical_match(a.match) == "mark_set=0x10 ct_states=established,new"


def test_port_lists_are_merged_then_split_into_15_slot_chunks() -> None:
    ports = _ports(5, 3, 4, (10, 12), (11, 20), *range(100, 130, 2))
    merged = rulehash.normalise_ports(ports)
    assert merged[:2] == (PortRange(3, 5), PortRange(10, 20))
    chunks = rulehash.port_chunks(merged)
    assert all(sum(p.slots for p in chunk) <= 15 for chunk in chunks)
    assert [p for chunk in chunks for p in chunk] == list(merged)
    rule = Rule(Match(protocol=TCP, src_ports=ports, dst_ports=ports), Accept())
    expanded = rulehash.expand_rule(rule)
    assert len(expanded) == len(chunks) ** 2
    assert {r.match.src_ports for r in expanded} == set(chunks)


def test_rule_comment_carries_hash_then_origin() -> None:
    text = rulehash.rule_comment("A" * 16, "gnp/x ingress rule 0")
    assert text == "felis:AAAAAAAAAAAAAAAA; gnp/x ingress rule 0"
    assert rulehash.extract_hash(text) == "A" * 16
    assert len(rulehash.rule_comment("A" * 16, "x" * 300)) == rulehash.MAX_COMMENT


@pytest.mark.parametrize("name", ["eth0", "eth+", "a.b-c_d", "x" * 15, "cali+", "enp0s31f6.100"])
def test_good_interface_names(name: str) -> None:
    assert rulehash.check_iface(name) == name


@pytest.mark.parametrize(
    "name", ["", "x" * 16, "eth0 -j ACCEPT", 'eth"', "eth++", "+", "eth*", "é0", "a;b"]
)
def test_bad_interface_names(name: str) -> None:
    with pytest.raises(FelisError, match="invalid interface name"):
        rulehash.check_iface(name)


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (rulehash.check_chain, "cali-x"),
        (rulehash.check_chain, "felis-" + "x" * 23),
        (rulehash.check_chain, "felis-a b"),
        (rulehash.check_chain, "felis-a:b"),
        (rulehash.check_set_name, "felis4-s-a:b"),
        (rulehash.check_set_name, "4felis"),
        (rulehash.check_set_name, "f" * 32),
        (rulehash.check_comment, 'say "hi"'),
        (rulehash.check_comment, "a\nb"),
        (rulehash.check_log_prefix, "x" * 30),
        (rulehash.check_log_prefix, 'a"b'),
    ],
)
def test_bad_identifiers_raise_one_line_errors(check: object, value: str) -> None:
    with pytest.raises(FelisError) as info:
        check(value)  # type: ignore[operator]
    assert "\n" not in str(info.value)


def _with_rule(rule: Rule, table: Table = Table.FILTER) -> Ruleset:
    return Ruleset(
        Family.V4,
        {table: TableSpec(table, {"felis-a": Chain("felis-a", (rule,))})},
        {},
    )


@pytest.mark.parametrize(
    ("rule", "table", "message"),
    [
        (Rule(Match(dst_ports=_ports(1)), Accept()), Table.FILTER, "needs protocol"),
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
def test_bad_rules_are_refused(rule: Rule, table: Table, message: str) -> None:
    with pytest.raises(FelisError, match=message):
        rulehash.check_ruleset(_with_rule(rule, table))


def test_set_members_are_normalised_and_collapsed() -> None:
    members = rulehash.normalise_members(
        SetKind.NET, ["10.0.0.1", "10.0.0.0/24", "10.0.1.5/24", "10.9.0.1/32"], Family.V4
    )
    assert members == frozenset({"10.0.0.0/23", "10.9.0.1/32"})
    ports = rulehash.normalise_members(SetKind.IP_PORT, ["10.0.0.1,TCP:80"], Family.V4)
    assert ports == frozenset({"10.0.0.1,tcp:80"})
    with pytest.raises(FelisError):
        rulehash.normalise_members(SetKind.IP_PORT, ["10.0.0.1,icmp:8"], Family.V4)


def test_hooks_in_place() -> None:
    assert rulehash.hooks_in_place(["a", None, None, "z"], ["a"], ["z"])
    assert rulehash.hooks_in_place(["a", "b"], ["a", "b"], [])
    assert not rulehash.hooks_in_place([None, "a"], ["a"], [])
    assert not rulehash.hooks_in_place(["a", "x", None], ["a"], [])
    assert not rulehash.hooks_in_place(["b", "a"], ["a", "b"], [])
    assert not rulehash.hooks_in_place([], ["a"], [])


def test_expansion_keeps_origin_and_is_identity_without_ports() -> None:
    rule = Rule(Match(protocol=TCP), Accept(), "c")
    assert rulehash.expand_rule(rule) == (rule,)
    big = dataclasses.replace(rule, match=Match(protocol=TCP, dst_ports=_ports(*range(1, 40, 2))))
    assert {r.comment for r in rulehash.expand_rule(big)} == {"c"}
