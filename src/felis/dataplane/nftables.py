"""The nftables renderer: IR → one `nft -f` transaction for `table ip felis` / `table ip6 felis`.

Pure: the kernel layer runs `nft -f`. Each iptables table becomes a layer of our one table: IR chain
`felis-x` of the raw table is nft chain `raw-felis-x`, and hooks into kernel chain X of table T are
the rules of base chain `T-X` (inserts first, then appends). Rules are `<match> counter <action>
comment "felis:<hash>; <origin>"`, with the same hashes as the iptables backend (see rule_identity).

A render is a delta against the state read back with `nftables_readback.parse_nft_json`, in one
transaction:

    add table; add chain (base chains, idempotent); add set + add element (new sets, missing
    members); add chain (new chains); flush chain (changed and obsolete chains); add rule (all
    rules of new and changed chains); delete element (surplus members); delete chain (obsolete,
    now unreferenced); delete set (obsolete)

`render_full` replaces the whole table atomically (`add table; delete table;` then everything), so
it is correct whatever the kernel holds; `render_cleanup` deletes the table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from felis.dataplane import terms
from felis.dataplane.identifiers import DataplaneRenderError, check_iface, protocol_name
from felis.dataplane.ir_checks import check_ruleset
from felis.dataplane.kernel_state import (
    ChainState,
    KernelRule,
    SetState,
    TableState,
    chain_state,
    dirty_chains,
    set_kind_conflicts,
)
from felis.dataplane.memo import PerObject, PerValue, RenderCache, by_value, cache_or_new
from felis.dataplane.nftables_readback import NftState, nft_family
from felis.dataplane.rule_identity import (
    chain_hashes,
    chain_kernel_rules,
    expand_rules,
    hook_hash_seed,
    normalise_ports,
    rule_comment,
)
from felis.dataplane.set_members import (
    net_bounds,
    normalise_members,
    sorted_members,
    sorted_normal_members,
)
from felis.dataplane.spec import (
    EMPTY_TABLES,
    NFT_TABLE,
    TABLE_ORDER,
    Accept,
    Chain,
    Drop,
    Family,
    Goto,
    HookPosition,
    IpSet,
    Jump,
    Log,
    Match,
    NoTrack,
    PortRange,
    Rule,
    Ruleset,
    SetKind,
    SetMark,
    Table,
    TableSpec,
    bare_action_word,
)
from felis.dataplane.terms import Side

__all__ = [
    "base_chain",
    "layer_chain",
    "render_cleanup",
    "render_delta",
    "render_full",
    "render_rule",
]

LOG_LEVEL = "notice"
"""syslog level 5, what the iptables backend writes as `--log-level 5`."""

_HOOKS: Mapping[str, str] = {
    "PREROUTING": "prerouting",
    "INPUT": "input",
    "FORWARD": "forward",
    "OUTPUT": "output",
    "POSTROUTING": "postrouting",
}


def layer_chain(table: Table, name: str) -> str:
    """nft name of an IR chain, or of the base chain standing for a kernel chain."""
    return f"{table.value}-{name}"


base_chain = layer_chain


def _base_chain_spec(table: Table, kernel_chain: str) -> str:
    # mangle OUTPUT must re-route after a mark change, as iptables' mangle OUTPUT does.
    kind = "route" if (table, kernel_chain) == (Table.MANGLE, "OUTPUT") else "filter"
    return f"{{ type {kind} hook {_HOOKS[kernel_chain]} priority {table.value}; policy accept; }}"


# ---------------------------------------------------------------------------------------------
# One rule.


def _port_list(items: tuple[PortRange, ...]) -> str:
    parts = (str(p.first) if p.first == p.last else f"{p.first}-{p.last}" for p in items)
    return "{ " + ", ".join(parts) + " }"


_NE = ("", "!= ")
"""Indexed by a term's `negated`."""
_IFACE = {Side.SRC: "iifname", Side.DST: "oifname"}
_PORT = {Side.SRC: "sport", Side.DST: "dport"}
_ADDR = {
    (family, side): f"{nft_family(family)} {word}"
    for family in Family
    for side, word in ((Side.SRC, "saddr"), (Side.DST, "daddr"))
}
"""`ip saddr` and the like, per (family, side)."""
_ADDR_PORT = {
    (family, side): f"{_ADDR[family, side]} . meta l4proto . th {_PORT[side]}"
    for family, side in _ADDR
}


def _iface(term: terms.Iface, family: Family) -> str:
    check_iface(term.name)
    name = term.name[:-1] + "*" if term.name.endswith("+") else term.name
    return f'{_IFACE[term.side]} "{name}"'


def _mark(term: terms.Mark, family: Family) -> str:
    return f"meta mark & {term.mask:#x} == {term.value:#x}"


def _ct_states(term: terms.CtStates, family: Family) -> str:
    return "ct state " + ",".join(s.value for s in term.states)


def _ct_dnat(term: terms.CtDnat, family: Family) -> str:
    if term.negated:
        # `ct status != dnat` never matches an untracked packet, unlike iptables'
        # `! --ctstate DNAT`; calc must express it as dnat → return
        # (docs/calico-semantics.md#untracked-packets-and-dnat-tests).
        raise DataplaneRenderError(
            "a `not DNAT` match cannot be rendered identically in nftables "
            "(untracked packets); use ct_dnat=True with Return followed by the rule"
        )
    return "ct status dnat"


def _protocol(term: terms.Protocol, family: Family) -> str:
    return f"meta l4proto {_NE[term.negated]}{protocol_name(term.number)}"


def _net(term: terms.Net, family: Family) -> str:
    return f"{_ADDR[family, term.side]} {_NE[term.negated]}{term.cidr}"


def _addr_set(term: terms.AddrSet, family: Family) -> str:
    return f"{_ADDR[family, term.side]} {_NE[term.negated]}@{term.name}"


def _ports(term: terms.Ports, family: Family) -> str:
    proto = protocol_name(term.protocol) if term.protocol is not None else None
    ports = _port_list(normalise_ports(term.ports))
    return f"{proto} {_PORT[term.side]} {_NE[term.negated]}{ports}"


def _port_set(term: terms.PortSet, family: Family) -> str:
    return f"{_ADDR_PORT[family, term.side]} {_NE[term.negated]}@{term.name}"


def _port_number_set(term: terms.PortNumberSet, family: Family) -> str:
    proto = protocol_name(term.protocol) if term.protocol is not None else "th"
    return f"{proto} {_PORT[term.side]} @{term.name}"


def _icmp(term: terms.Icmp, family: Family) -> str:
    proto = "icmp" if family is Family.V4 else "icmpv6"
    if term.code is None:
        return f"{proto} type {_NE[term.negated]}{term.type}"
    if not term.negated:
        return f"{proto} type {term.type} {proto} code {term.code}"
    # "not (type T and code C)" in one expression: the pair against a one-element set.
    return f"{proto} type . {proto} code != {{ {term.type} . {term.code} }}"


_TEXT = terms.TermText(
    _iface,
    _mark,
    _ct_states,
    _ct_dnat,
    _protocol,
    _net,
    _addr_set,
    _ports,
    _port_set,
    _port_number_set,
    _icmp,
)


def render_match(
    match: Match, family: Family, table: Table, cache: RenderCache | None = None
) -> list[str]:
    """Match text in the same order as the iptables renderer (the order of `match_terms`)."""
    return list(by_value(cache, _MATCH_TEXT)(match, family))


def _render_match(match: Match, family: Family) -> tuple[str, ...]:
    return _TEXT.render(match, family)


_MATCH_TEXT = PerValue(_render_match, 1 << 16)
"""By value: a ruleset has far fewer distinct matches than rules."""


def render_action(rule: Rule, table: Table) -> list[str]:
    if rule.action is None:
        return []
    if word := bare_action_word(rule.action):
        return [word]
    match rule.action:
        case Jump(target=target):
            return [f"jump {layer_chain(table, target)}"]
        case Goto(target=target):
            return [f"goto {layer_chain(table, target)}"]
        case SetMark(value=value, mask=mask):
            keep = ~mask & 0xFFFFFFFF
            text = f"meta mark set meta mark & {keep:#010x}"
            return [text + f" | {value:#x}" if value else text]
        case Log(prefix=prefix):
            return [f'log prefix "{prefix}" level {LOG_LEVEL}']
    raise DataplaneRenderError(f"unknown action {rule.action!r}")


def render_rule(
    rule: Rule,
    rule_hash: str,
    family: Family,
    table: Table,
    chains: Mapping[str, Chain] | None = None,
    cache: RenderCache | None = None,
) -> str:
    """`<match> counter <action> comment "…"` for an already expanded, checked kernel rule.

    With `chains`, a jump to a straight-line chain is printed as that chain's statements (see
    `straight_line`)."""
    return _rule_text(rule, rule_hash, family, table, chains, by_value(cache, _MATCH_TEXT))


def _rule_text(
    rule: Rule,
    rule_hash: str,
    family: Family,
    table: Table,
    chains: Mapping[str, Chain] | None,
    match_text: Callable[[Match, Family], tuple[str, ...]],
) -> str:
    comment = rule_comment(rule_hash, rule.comment)
    inline = straight_line(rule, chains) if chains is not None else None
    if inline is None:
        action = render_action(rule, table)
    else:
        action = [text for step in inline for text in render_action(step, table)]
    parts = [*match_text(rule.match, family), "counter", *action]
    return " ".join([*parts, f'comment "{comment}"'])


def straight_line(rule: Rule, chains: Mapping[str, Chain]) -> tuple[Rule, ...] | None:
    """The rules of the chain `rule` jumps to, when that chain is statements (set mark,
    NOTRACK, log) without matches, ending in ACCEPT or DROP; else None.

    nft runs several statements and a verdict in one rule, so such a jump from a hook (crossed
    by every packet) is printed inline: the same effect, without the jump and three more rules.
    The chain itself stays in the table as the IR has it, so read-back and diffs are unchanged.
    """
    action = rule.action
    if not isinstance(action, Jump | Goto):
        return None
    chain = chains.get(action.target)
    if chain is None or not chain.rules:
        return None
    *steps, last = chain.rules
    if not isinstance(last.action, Accept | Drop) or not last.match.is_empty():
        return None
    for step in steps:
        if not step.match.is_empty() or not isinstance(step.action, SetMark | NoTrack | Log):
            return None
    return chain.rules


# ---------------------------------------------------------------------------------------------
# Transactions.


def _set_decl(ipset: IpSet, family: Family) -> str:
    addr = "ipv4_addr" if family is Family.V4 else "ipv6_addr"
    if ipset.kind is SetKind.NET:
        return f"{{ type {addr}; flags interval; }}"
    if ipset.kind is SetKind.PORT:
        return "{ type inet_service; }"
    return f"{{ type {addr} . inet_proto . inet_service; }}"


def _element_list(kind: SetKind, ordered: tuple[str, ...] | list[str]) -> str:
    if kind is SetKind.NET or kind is SetKind.PORT:
        return "{ " + ", ".join(ordered) + " }"
    forms = []
    for member in ordered:
        addr, rest = member.rsplit(",", 1)
        proto, port = rest.split(":", 1)
        forms.append(f"{addr} . {proto} . {port}")
    return "{ " + ", ".join(forms) + " }"


def _elements(kind: SetKind, members: frozenset[str]) -> str:
    return _element_list(kind, sorted_members(kind, members))


_SET_ELEMENTS: PerObject[Family, str] = PerObject(1 << 13)
"""The element list of a whole set, per members object (what a new set is filled with)."""


def _all_elements(ipset: IpSet, family: Family, cache: RenderCache) -> str:
    members = ipset.members
    return cache.objects(_SET_ELEMENTS).get(
        members,
        family,
        lambda: _element_list(
            ipset.kind, sorted_normal_members(ipset.kind, members, family, cache)
        ),
    )


@dataclass
class _Tx:
    """The statements of one transaction, in the groups the kernel needs them ordered by."""

    base: list[str] = field(default_factory=list)
    sets: list[str] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)
    flushes: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    element_deletes: list[str] = field(default_factory=list)
    chain_deletes: list[str] = field(default_factory=list)
    set_deletes: list[str] = field(default_factory=list)

    def changes(self) -> bool:
        return any(
            (self.sets, self.chains, self.flushes, self.rules, self.element_deletes,
             self.chain_deletes, self.set_deletes)
        )  # fmt: skip

    def lines(self) -> list[str]:
        return [
            *self.base,
            *self.sets,
            *self.chains,
            *self.flushes,
            *self.rules,
            *self.element_deletes,
            *self.chain_deletes,
            *self.set_deletes,
        ]


_CHAIN_TEXT: PerObject[tuple[str, Table, str, Family], str] = PerObject()
"""The `add rule` lines of a chain, per chain object: an unchanged chain is printed once."""


def _chain_text(
    prefix: str, table: Table, name: str, chain: Chain, family: Family, cache: RenderCache
) -> str:
    def compute() -> str:
        kernel = chain_kernel_rules(chain, name, cache)
        head = f"add rule {prefix} {layer_chain(table, name)} "
        match_text = cache.values(_MATCH_TEXT)
        return "\n".join(
            head + _rule_text(rule, rule_hash, family, table, None, match_text)
            for rule, rule_hash in zip(kernel.rules, kernel.hashes, strict=True)
        )

    return cache.objects(_CHAIN_TEXT).get(chain, (prefix, table, name, family), compute)


def _layer_delta(
    tx: _Tx,
    prefix: str,
    spec: TableSpec,
    current: TableState | None,
    family: Family,
    cache: RenderCache,
) -> None:
    table = spec.table
    new, changed, obsolete = dirty_chains(spec, current, cache)
    for name in new:
        tx.chains.append(f"add chain {prefix} {layer_chain(table, name)}")
    for name in (*changed, *obsolete):
        tx.flushes.append(f"flush chain {prefix} {layer_chain(table, name)}")
    for name in (*new, *changed):
        text = _chain_text(prefix, table, name, spec.chains[name], family, cache)
        if text:
            tx.rules.append(text)
    for name in obsolete:
        tx.chain_deletes.append(f"delete chain {prefix} {layer_chain(table, name)}")

    have = current.chains if current is not None else {}
    wanted = spec.kernel_chains
    for kernel_chain in wanted:
        nft_name = base_chain(table, kernel_chain)
        tx.base.append(f"add chain {prefix} {nft_name} {_base_chain_spec(table, kernel_chain)}")
        pairs: list[tuple[Rule, str]] = []
        for position in (HookPosition.INSERT, HookPosition.APPEND):
            rules = expand_rules(spec.hooks_for(kernel_chain, position))
            seed = hook_hash_seed(kernel_chain, position)
            pairs.extend(zip(rules, chain_hashes(seed, rules, cache), strict=True))
        state = have.get(kernel_chain)
        if state is not None and state.hashes == tuple(h for _, h in pairs):
            continue
        if state is not None:
            tx.flushes.append(f"flush chain {prefix} {nft_name}")
        for rule, rule_hash in pairs:
            text = render_rule(rule, rule_hash, family, table, spec.chains, cache)
            tx.rules.append(f"add rule {prefix} {nft_name} {text}")
    for name in have:
        if not name.startswith("felis-") and name not in wanted:
            tx.flushes.append(f"flush chain {prefix} {base_chain(table, name)}")
            tx.chain_deletes.append(f"delete chain {prefix} {base_chain(table, name)}")


def _interval_rewrite(have: frozenset[str], want: frozenset[str], family: Family) -> bool:
    """Whether element-by-element changes of an interval set could meet nft's merged listing:
    a surplus member wider than one address may stand for several kernel elements, and a new
    member touching or overlapping another would be refused as an overlap."""
    host = 32 if family is Family.V4 else 128
    if any(not member.endswith(f"/{host}") for member in have - want):
        return True
    missing = [net_bounds(member, family) for member in want - have]
    if not missing:
        return False
    for other in have | want:
        first, last = net_bounds(other, family)
        for start, end in missing:
            if (start, end) != (first, last) and first <= end + 1 and start <= last + 1:
                return True
    return False


def _transaction(ruleset: Ruleset, current: NftState, cache: RenderCache) -> _Tx:
    check_ruleset(ruleset, cache)
    family = ruleset.family
    prefix = f"{nft_family(family)} {NFT_TABLE}"
    set_kind_conflicts(ruleset.sets, current.sets)
    tx = _Tx(base=[f"add table {prefix}"])
    for name in sorted(ruleset.sets):
        ipset = ruleset.sets[name]
        want = normalise_members(ipset.kind, ipset.members, family, cache)
        have = current.sets.get(name)
        if have is None:
            tx.sets.append(f"add set {prefix} {name} {_set_decl(ipset, family)}")
            if want:
                elements = _all_elements(ipset, family, cache)
                tx.sets.append(f"add element {prefix} {name} {elements}")
            continue
        if have.members is want or have.members == want:
            continue
        if ipset.kind is SetKind.NET and _interval_rewrite(have.members, want, family):
            # nft lists adjacent interval elements merged (.0/32 and .1/32 read back as .0/31),
            # so what we read need not be the elements the kernel holds: deleting a merged one
            # fails ("does not exist") and adding one that touches another overlaps. Rewrite
            # the set instead; inside the one transaction packets never see it empty.
            tx.sets.append(f"flush set {prefix} {name}")
            if want:
                elements = _all_elements(ipset, family, cache)
                tx.sets.append(f"add element {prefix} {name} {elements}")
            continue
        missing = want - have.members
        if missing:
            tx.sets.append(f"add element {prefix} {name} {_elements(ipset.kind, missing)}")
        surplus = have.members - want
        if surplus:
            tx.element_deletes.append(
                f"delete element {prefix} {name} {_elements(ipset.kind, surplus)}"
            )
    for name in sorted(set(current.sets) - set(ruleset.sets)):
        tx.set_deletes.append(f"delete set {prefix} {name}")
    for table in TABLE_ORDER:
        spec = ruleset.tables.get(table) or EMPTY_TABLES[table]
        _layer_delta(tx, prefix, spec, current.tables.get(table), family, cache)
    for name in current.stray_chains:
        tx.flushes.append(f"flush chain {prefix} {name}")
        tx.chain_deletes.append(f"delete chain {prefix} {name}")
    return tx


def render_delta(
    ruleset: Ruleset, current: NftState, *, cache: RenderCache | None = None
) -> str | None:
    """One `nft -f` transaction from `current` to `ruleset`; None when nothing differs."""
    tx = _transaction(ruleset, current, cache_or_new(cache))
    return "\n".join([*tx.lines(), ""]) if tx.changes() else None


def render_full(ruleset: Ruleset, *, cache: RenderCache | None = None) -> str:
    """Replace our table atomically with `ruleset`, whatever the kernel holds now."""
    prefix = f"{nft_family(ruleset.family)} {NFT_TABLE}"
    tx = _transaction(ruleset, NftState(), cache_or_new(cache))
    return "\n".join([f"add table {prefix}", f"delete table {prefix}", *tx.lines(), ""])


def _table_state(spec: TableSpec, cache: RenderCache) -> TableState:
    chains: dict[str, ChainState] = {}
    for kernel_chain in spec.kernel_chains:
        hashes: list[str] = []
        for position in (HookPosition.INSERT, HookPosition.APPEND):
            rules = expand_rules(spec.hooks_for(kernel_chain, position))
            hashes.extend(chain_hashes(hook_hash_seed(kernel_chain, position), rules, cache))
        chains[kernel_chain] = ChainState(kernel_chain, tuple(KernelRule(h) for h in hashes))
    for name, chain in spec.chains.items():
        chains[name] = chain_state(chain, name, cache)
    return TableState(table=spec.table, chains=chains)


_TABLE_STATE: PerObject[None, TableState] = PerObject()


def state_after(ruleset: Ruleset, *, cache: RenderCache | None = None) -> NftState:
    """What `parse_nft_json` would read back once a delta to `ruleset` (or `render_full`) has
    been applied successfully: our table holds exactly the ruleset, whatever it held before.

    The kernel layer keeps this instead of re-reading the table after each of its own writes.
    Rules carry their hashes only (no handles or counters: deltas never use them).
    """
    cache = cache_or_new(cache)
    table_states = cache.objects(_TABLE_STATE)
    family = ruleset.family
    tables = {
        table: table_states.get(spec, None, _table_state, spec, cache)
        for table in TABLE_ORDER
        if (spec := ruleset.tables.get(table)) is not None
    }
    sets = {
        name: SetState(
            name=name,
            kind=ipset.kind,
            family=family,
            members=normalise_members(ipset.kind, ipset.members, family, cache),
        )
        for name, ipset in ruleset.sets.items()
    }
    return NftState(exists=True, tables=tables, sets=sets)


def render_cleanup(family: Family) -> str:
    """Remove felis' table (the `add` makes the delete succeed when it is already gone)."""
    prefix = f"{nft_family(family)} {NFT_TABLE}"
    return f"add table {prefix}\ndelete table {prefix}\n"
