"""Hand-built dataplane IR shared by the renderer, read-back and trace tests.

A plain module with a unique name, imported via sys.path: this folder is on it for the tests
here (pytest puts each test file's folder there), and tests/unit/trace/test_trace_walk.py puts
it there itself. Changing a ruleset here changes the renderers' golden files.
"""

from __future__ import annotations

import dataclasses

from felis.dataplane.spec import (
    Accept,
    Action,
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

MARKS = MarkBits.from_mask()
ACCEPT = MARKS.accept
PASS = MARKS.pass_
ALL = MARKS.all
TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58

PI = "felis-pi-gnp/memcached"
PO = "felis-po-gnp/memcached"


# ---------------------------------------------------------------------------------------------
# Builders.


def ruleset(
    tables: dict[Table, TableSpec],
    sets: dict[str, IpSet] | None = None,
    family: Family = Family.V4,
) -> Ruleset:
    return Ruleset(family, tables, sets or {})


def table(t: Table, hooks: list[Hook], **chains: list[Rule]) -> TableSpec:
    """A table whose chains are named by the keywords (names that are Python identifiers)."""
    return TableSpec(t, {name: Chain(name, tuple(r)) for name, r in chains.items()}, tuple(hooks))


def hook(chain: str, rule: Rule, position: HookPosition = HookPosition.INSERT) -> Hook:
    return Hook(chain, position, rule)


def chain(name: str, *rules: Rule) -> tuple[str, Chain]:
    """A (name, chain) item, for `dict([...])` of chains with any names."""
    return name, Chain(name, tuple(rules))


def ports(*items: int | tuple[int, int]) -> tuple[PortRange, ...]:
    return tuple(
        PortRange(item, item) if isinstance(item, int) else PortRange(*item) for item in items
    )


def with_chain(rs: Ruleset, t: Table, new: Chain) -> Ruleset:
    """The ruleset with one chain of a table added or replaced."""
    spec = rs.tables[t]
    tables = dict(rs.tables)
    tables[t] = dataclasses.replace(spec, chains={**spec.chains, new.name: new})
    return dataclasses.replace(rs, tables=tables)


def without_ingress_policy(rs: Ruleset) -> Ruleset:
    """The seed with its raw ingress policy chain removed, and the jump to it."""
    raw = rs.tables[Table.RAW]
    fh = raw.chains["felis-fh-eth0"]
    chains = {n: c for n, c in raw.chains.items() if n != PI}
    chains["felis-fh-eth0"] = Chain(fh.name, tuple(r for r in fh.rules if r.action != Jump(PI)))
    return dataclasses.replace(
        rs, tables={**rs.tables, Table.RAW: dataclasses.replace(raw, chains=chains)}
    )


# ---------------------------------------------------------------------------------------------
# The seed.


def client_set(family: Family) -> str:
    return f"felis{int(family)}-s-j0651QXPU3OWTryyoQJxg8d"[:31]


def _mark(value: int, mask: int, comment: str = "", **match: object) -> Rule:
    return Rule(Match(**match), SetMark(value, mask), comment)  # type: ignore[arg-type]


def _if_accepted(action: Action, comment: str = "") -> Rule:
    return Rule(Match(mark_set=ACCEPT), action, comment)


def _failsafe(pairs: list[tuple[int, int]], field: str, action: Action) -> list[Rule]:
    return [
        Rule(Match(protocol=proto, **{field: (PortRange(port, port),)}), action)  # type: ignore[arg-type]
        for proto, port in pairs
    ]


def _dispatch(name: str, target: str, **iface: str) -> tuple[str, Chain]:
    """A chain sending eth0's packets (`in_iface` or `out_iface`) to its endpoint chain."""
    return chain(name, Rule(Match(**iface), Goto(target)))  # type: ignore[arg-type]


def _top(name: str, dispatch: str) -> tuple[str, Chain]:
    """The raw table's top-level chain: clear our bits, run the endpoints, accept on the bit."""
    return chain(name, _mark(0, ALL), Rule(action=Jump(dispatch)), _if_accepted(Accept()))


def _untracked_endpoint(name: str, failsafe: str, policy: str) -> tuple[str, Chain]:
    return chain(
        name,
        Rule(action=Jump(failsafe)),
        _mark(0, ACCEPT | PASS),
        _mark(0, PASS, "Start of tier default"),
        Rule(Match(mark_clear=PASS), Jump(policy)),
        _if_accepted(NoTrack()),
        _if_accepted(Return(), "Return if policy accepted"),
    )


def _filter_endpoint(name: str, failsafe: str, endpoint: list[Rule]) -> tuple[str, Chain]:
    return chain(
        name,
        *endpoint,
        Rule(action=Jump(failsafe)),
        _mark(0, ACCEPT | PASS),
        Rule(action=Drop(), comment="Drop if no policy matched"),
    )


def _policy(name: str, comment: str, **match: object) -> tuple[str, Chain]:
    rule = Rule(Match(protocol=TCP, **match), SetMark(ACCEPT, ACCEPT), comment)  # type: ignore[arg-type]
    return chain(name, rule)


FAILSAFE_IN = [(TCP, 22), (UDP, 68), (TCP, 179), (TCP, 2379), (TCP, 6443)]
FAILSAFE_OUT = [(UDP, 53), (UDP, 67), (TCP, 179), (TCP, 2379), (TCP, 6443)]


def seed_ruleset(family: Family = Family.V4) -> Ruleset:
    """The memcached seed (reference §5.13) with felis' names and marks, trimmed a little."""
    cset = client_set(family)
    member = "10.128.0.50/32" if family is Family.V4 else "fd00::50/128"
    memcached = (PortRange(12211, 12211),)
    raw = TableSpec(
        Table.RAW,
        dict(
            [
                _top("felis-PREROUTING", "felis-from-host-endpoint"),
                _top("felis-OUTPUT", "felis-to-host-endpoint"),
                _dispatch("felis-from-host-endpoint", "felis-fh-eth0", in_iface="eth0"),
                _dispatch("felis-to-host-endpoint", "felis-th-eth0", out_iface="eth0"),
                _untracked_endpoint("felis-fh-eth0", "felis-failsafe-in", PI),
                _untracked_endpoint("felis-th-eth0", "felis-failsafe-out", PO),
                chain(
                    "felis-failsafe-in",
                    *_failsafe(FAILSAFE_IN, "dst_ports", Accept()),
                    *_failsafe(FAILSAFE_OUT, "src_ports", Accept()),
                ),
                chain(
                    "felis-failsafe-out",
                    *_failsafe(FAILSAFE_OUT, "dst_ports", Accept()),
                    *_failsafe(FAILSAFE_IN, "src_ports", Accept()),
                ),
                _policy(
                    PI,
                    "gnp/memcached-server ingress rule 0",
                    src_sets=(cset,),
                    dst_ports=memcached,
                ),
                _policy(
                    PO,
                    "gnp/memcached-server egress rule 0",
                    src_ports=memcached,
                    dst_sets=(cset,),
                ),
            ]
        ),
        (
            hook("PREROUTING", Rule(action=Jump("felis-PREROUTING"))),
            hook("OUTPUT", Rule(action=Jump("felis-OUTPUT"))),
        ),
    )
    tracked_failsafe_out = chain(
        "felis-failsafe-out", *_failsafe(FAILSAFE_OUT, "dst_ports", Accept())
    )
    ct_est = frozenset({CtState.ESTABLISHED, CtState.RELATED})
    ct_invalid = frozenset({CtState.INVALID})
    accepted = "Host endpoint policy accepted packet."
    mangle = TableSpec(
        Table.MANGLE,
        dict(
            [
                chain(
                    "felis-PREROUTING",
                    Rule(Match(ct_states=ct_est), Accept()),
                    _if_accepted(Accept()),
                    Rule(action=Jump("felis-from-host-endpoint")),
                    _if_accepted(Accept(), accepted),
                ),
                chain("felis-from-host-endpoint"),
                chain(
                    "felis-POSTROUTING",
                    _if_accepted(Return()),
                    _mark(0, ALL),
                    Rule(Match(ct_dnat=True), Jump("felis-to-host-endpoint")),
                    _if_accepted(Return(), accepted),
                ),
                _dispatch("felis-to-host-endpoint", "felis-th-eth0", out_iface="eth0"),
                chain(
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
            hook("PREROUTING", Rule(action=Jump("felis-PREROUTING"))),
            hook("POSTROUTING", Rule(action=Jump("felis-POSTROUTING"))),
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
                chain(
                    "felis-INPUT",
                    _if_accepted(Accept()),
                    _mark(0, ALL),
                    Rule(action=Jump("felis-from-host-endpoint")),
                    _if_accepted(Accept(), accepted),
                ),
                chain(
                    "felis-FORWARD",
                    _mark(0, ALL & ~ACCEPT),
                    Rule(Match(mark_clear=ACCEPT), Jump("felis-from-hep-forward")),
                    Rule(action=Jump("felis-to-hep-forward")),
                ),
                chain(
                    "felis-OUTPUT",
                    _if_accepted(Accept()),
                    _mark(0, ALL),
                    Rule(Match(ct_dnat=True), Return(), "DNAT egress is policed in mangle"),
                    Rule(action=Jump("felis-to-host-endpoint")),
                    _if_accepted(Accept(), accepted),
                ),
                _dispatch("felis-from-host-endpoint", "felis-fh-eth0", in_iface="eth0"),
                _dispatch("felis-to-host-endpoint", "felis-th-eth0", out_iface="eth0"),
                _dispatch("felis-from-hep-forward", "felis-fhfw-eth0", in_iface="eth0"),
                _dispatch("felis-to-hep-forward", "felis-thfw-eth0", out_iface="eth0"),
                _filter_endpoint("felis-fh-eth0", "felis-failsafe-in", endpoint),
                _filter_endpoint("felis-th-eth0", "felis-failsafe-out", endpoint),
                chain("felis-fhfw-eth0", *forward_default),
                chain("felis-thfw-eth0", *forward_default),
                chain("felis-failsafe-in", *_failsafe(FAILSAFE_IN, "dst_ports", Accept())),
                tracked_failsafe_out,
            ]
        ),
        (
            hook("INPUT", Rule(action=Jump("felis-INPUT"))),
            hook("FORWARD", Rule(action=Jump("felis-FORWARD"))),
            hook("OUTPUT", Rule(action=Jump("felis-OUTPUT"))),
            hook(
                "FORWARD",
                _if_accepted(Accept(), "Policy explicitly accepted packet."),
                HookPosition.APPEND,
            ),
            hook("FORWARD", _mark(ACCEPT, ACCEPT), HookPosition.APPEND),
        ),
    )
    return ruleset(
        {Table.RAW: raw, Table.MANGLE: mangle, Table.FILTER: filt},
        {cset: IpSet(cset, SetKind.NET, frozenset({member}), "memcached == 'client'")},
        family,
    )


# ---------------------------------------------------------------------------------------------
# Every field and action.


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
    many = ports(*range(1000, 1028, 2), (2000, 2010), 3000, (4000, 4100), 5000)  # 20 slots
    rules = (
        Rule(comment="gnp/empty ingress"),
        Rule(
            Match(
                protocol=TCP,
                src_net=net_a,
                src_sets=(sa,),
                src_ports=ports(1, (10, 20)),
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
                not_src_ports=ports(7),
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
        Rule(Match(protocol=132, dst_ports=ports((1, 65535))), Jump("felis-sub")),
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
            hook("INPUT", Rule(action=Jump("felis-all"))),
            hook("INPUT", Rule(Match(in_iface="lo"), Accept(), "lo")),
            hook("OUTPUT", Rule(action=Jump("felis-sub")), HookPosition.APPEND),
        ),
    )
    raw = TableSpec(
        Table.RAW,
        {
            "felis-nt": Chain(
                "felis-nt",
                (
                    Rule(Match(protocol=TCP, dst_ports=ports(11211)), NoTrack()),
                    Rule(Match(in_iface="eth0"), Accept()),
                ),
            )
        },
        (hook("PREROUTING", Rule(action=Jump("felis-nt"))),),
    )
    return ruleset({Table.FILTER: filt, Table.RAW: raw}, sets, family)


def all_rulesets() -> dict[str, Ruleset]:
    return {
        f"{name}-v{int(family)}": build(family)
        for name, build in (("seed", seed_ruleset), ("everything", everything_ruleset))
        for family in (Family.V4, Family.V6)
    }
