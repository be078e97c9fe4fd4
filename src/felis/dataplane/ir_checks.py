"""IR checks common to both backends: refuse a ruleset no backend can print faithfully."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from felis.dataplane.identifiers import (
    DataplaneRenderError,
    check_chain,
    check_comment,
    check_iface,
    check_kernel_chain,
    check_log_prefix,
    check_net,
    check_set_name,
    protocol_name,
)
from felis.dataplane.memo import PerObject, PerValue, RenderCache, by_value, cache_or_new
from felis.dataplane.rule_identity import canonical_rule
from felis.dataplane.set_members import normalise_members
from felis.dataplane.spec import (
    Chain,
    Family,
    Goto,
    IpSet,
    Jump,
    Log,
    Match,
    NoTrack,
    Rule,
    Ruleset,
    SetKind,
    SetMark,
    Table,
    TableSpec,
)
from felis.model.constants import PORT_PROTOCOLS, PROTOCOL_NAMES, PROTOCOL_NUMBERS


def _where(rule: Rule) -> str:
    return f"rule {rule.comment or canonical_rule(rule)!r}"


class _MatchProblem(Exception):
    """A match refused by `_check_match`; the caller names the rule."""


def _check_match(match: Match, family: Family) -> None:
    """The checks of a rule's match that need nothing else."""
    for proto in (match.protocol, match.not_protocol):
        if proto is not None:
            protocol_name(proto)
    has_ports = match.src_ports or match.dst_ports or match.not_src_ports or match.not_dst_ports
    if has_ports and match.protocol not in PORT_PROTOCOLS:
        raise _MatchProblem("port match needs protocol tcp, udp or sctp")
    for icmp in (match.icmp, match.not_icmp):
        if icmp is None:
            continue
        want = PROTOCOL_NUMBERS["icmp" if family is Family.V4 else "icmpv6"]
        if match.protocol != want:
            need = PROTOCOL_NAMES[want]
            raise _MatchProblem(f"ICMP type match needs protocol {need} in IPv{int(family)}")
        if not 0 <= icmp.type <= 255 or not (icmp.code is None or 0 <= icmp.code <= 255):
            raise _MatchProblem("ICMP type/code out of range")
    for net in (match.src_net, match.not_src_net, match.dst_net, match.not_dst_net):
        if net is not None:
            check_net(net, family)
    for name in (
        *match.src_sets,
        *match.not_src_sets,
        *match.dst_sets,
        *match.not_dst_sets,
        *match.not_src_port_sets,
        *match.not_dst_port_sets,
    ):
        check_set_name(name)
    for opt in (
        match.src_port_set,
        match.dst_port_set,
        match.src_port_in_set,
        match.dst_port_in_set,
    ):
        if opt is not None:
            check_set_name(opt)
    in_set = match.src_port_in_set is not None or match.dst_port_in_set is not None
    if in_set and match.protocol not in PORT_PROTOCOLS:
        raise _MatchProblem("port set match needs protocol tcp, udp or sctp")
    for iface in (match.in_iface, match.out_iface):
        if iface is not None:
            check_iface(iface)
    for bits in (match.mark_set, match.mark_clear):
        if not 0 <= bits <= 0xFFFFFFFF:
            raise _MatchProblem(f"mark bits {bits:#x} out of 32 bits")
    if match.mark_set & match.mark_clear:
        raise _MatchProblem("mark bits both set and clear")


_CHECKED_MATCH = PerValue(_check_match, 1 << 16)
"""By value (a refused match raises, so only good ones are remembered)."""


def _check_rule_alone(
    rule: Rule, table: Table, family: Family, check_match: Callable[[Match, Family], None]
) -> None:
    """Every check of `check_rule` that does not depend on the other chains of the table."""
    check_comment(rule.comment)
    try:
        check_match(rule.match, family)
    except _MatchProblem as problem:
        raise DataplaneRenderError(f"{_where(rule)}: {problem}") from None
    action = rule.action
    if isinstance(action, Jump | Goto):
        check_chain(action.target)
    elif isinstance(action, SetMark):
        if not 0 <= action.mask <= 0xFFFFFFFF or action.value & ~action.mask:
            raise DataplaneRenderError(
                f"{_where(rule)}: mark value {action.value:#x} outside its mask {action.mask:#x}"
            )
    elif isinstance(action, NoTrack):
        if table is not Table.RAW:
            raise DataplaneRenderError(f"{_where(rule)}: notrack is only valid in the raw table")
    elif isinstance(action, Log):
        check_log_prefix(action.prefix)


def _check_target(rule: Rule, table: Table, chains: Mapping[str, Chain]) -> None:
    action = rule.action
    if isinstance(action, Jump | Goto) and action.target not in chains:
        raise DataplaneRenderError(
            f"{_where(rule)}: target chain {action.target!r} is not in table {table.value}"
        )


def check_rule(
    rule: Rule,
    table: Table,
    family: Family,
    chains: Mapping[str, Chain],
    cache: RenderCache | None = None,
) -> None:
    """Refuse a rule no backend can print faithfully; `chains` are the table's chains."""
    _check_rule_alone(rule, table, family, by_value(cache, _CHECKED_MATCH))
    _check_target(rule, table, chains)


@dataclass(frozen=True, slots=True)
class _ChainRefs:
    """What a checked chain needs from the rest of its ruleset."""

    jumps: tuple[Rule, ...]
    """Rules whose target must be a chain of the table."""
    sets: tuple[tuple[Rule, str, SetKind], ...]
    """(first rule naming it, set name, kind the set must have)."""


_CHECKED: PerObject[tuple[Table, Family], _ChainRefs] = PerObject()


def _chain_refs(
    chain: Chain, table: Table, family: Family, check_match: Callable[[Match, Family], None]
) -> _ChainRefs:
    """Check a chain's rules on their own; return its references."""
    jumps: list[Rule] = []
    sets: dict[tuple[str, SetKind], Rule] = {}
    for rule in chain.rules:
        _check_rule_alone(rule, table, family, check_match)
        if isinstance(rule.action, Jump | Goto):
            jumps.append(rule)
        for ref in _set_refs(rule.match):
            sets.setdefault(ref, rule)
    return _ChainRefs(
        tuple(jumps), tuple((rule, name, kind) for (name, kind), rule in sets.items())
    )


def _checked_chains(cache: RenderCache) -> Callable[[Chain, Table, Family], _ChainRefs]:
    """`_chain_refs` memoised per chain object in `cache` (the memos looked up once, for the
    many chains of a table)."""
    memo = cache.objects(_CHECKED)
    check_match = cache.values(_CHECKED_MATCH)

    def checked(chain: Chain, table: Table, family: Family) -> _ChainRefs:
        return memo.get(chain, (table, family), _chain_refs, chain, table, family, check_match)

    return checked


def check_chain_alone(
    chain: Chain, table: Table, family: Family, cache: RenderCache | None = None
) -> None:
    """Every check of the chain's rules that needs nothing outside the chain (calc runs it per
    policy, so that a policy the renderers would refuse is left out on its own).

    Without a cache nothing is remembered: calc checks each chain object once, so a memo would
    only keep superseded chains alive."""
    if cache is None:
        _chain_refs(chain, table, family, _check_match)
    else:
        _checked_chains(cache)(chain, table, family)


def check_table(spec: TableSpec, family: Family, cache: RenderCache | None = None) -> None:
    cache = cache_or_new(cache)
    checked = _checked_chains(cache)
    for name, chain in spec.chains.items():
        check_chain(name)
        if chain.name != name:
            raise DataplaneRenderError(f"chain {chain.name!r} is filed under {name!r}")
        for rule in checked(chain, spec.table, family).jumps:
            _check_target(rule, spec.table, spec.chains)
    for hook in spec.hooks:
        check_kernel_chain(spec.table, hook.kernel_chain)
        check_rule(hook.rule, spec.table, family, spec.chains, cache)


def _set_refs(match: Match) -> Iterator[tuple[str, SetKind]]:
    for name in (*match.src_sets, *match.not_src_sets, *match.dst_sets, *match.not_dst_sets):
        yield name, SetKind.NET
    for opt in (match.src_port_set, match.dst_port_set):
        if opt is not None:
            yield opt, SetKind.IP_PORT
    for name in (*match.not_src_port_sets, *match.not_dst_port_sets):
        yield name, SetKind.IP_PORT
    for opt in (match.src_port_in_set, match.dst_port_in_set):
        if opt is not None:
            yield opt, SetKind.PORT


def _check_set_ref(rule: Rule, name: str, kind: SetKind, sets: Mapping[str, IpSet]) -> None:
    ipset = sets.get(name)
    if ipset is None or ipset.kind is not kind:
        raise DataplaneRenderError(
            f"rule {rule.comment or canonical_rule(rule)!r} refers to IP set "
            f"{name!r}, which is not a {kind.value} set of the ruleset"
        )


_CHECKED_TABLES: PerObject[Family, tuple[tuple[Rule, str, SetKind], ...]] = PerObject()


def _checked_table(
    spec: TableSpec, family: Family, cache: RenderCache
) -> tuple[tuple[Rule, str, SetKind], ...]:
    """`check_table` once per table object; the table's set references, each once."""

    def compute() -> tuple[tuple[Rule, str, SetKind], ...]:
        check_table(spec, family, cache)
        checked = _checked_chains(cache)
        refs: dict[tuple[str, SetKind], Rule] = {}
        for chain in spec.chains.values():
            for rule, name, kind in checked(chain, spec.table, family).sets:
                refs.setdefault((name, kind), rule)
        for hook in spec.hooks:
            for ref in _set_refs(hook.rule.match):
                refs.setdefault(ref, hook.rule)
        return tuple((rule, name, kind) for (name, kind), rule in refs.items())

    return cache.objects(_CHECKED_TABLES).get(spec, family, compute)


def check_ruleset(ruleset: Ruleset, cache: RenderCache | None = None) -> None:
    cache = cache_or_new(cache)
    family = ruleset.family
    for table, spec in ruleset.tables.items():
        if spec.table is not table:
            raise DataplaneRenderError(f"table {spec.table.value} filed under {table.value}")
        for rule, name, kind in _checked_table(spec, family, cache):
            _check_set_ref(rule, name, kind, ruleset.sets)
    for name, ipset in ruleset.sets.items():
        check_set_name(name)
        if ipset.name != name:
            raise DataplaneRenderError(f"IP set {ipset.name!r} is filed under {name!r}")
        normalise_members(ipset.kind, ipset.members, family, cache)
