"""The iptables renderer: IR → `iptables-restore --noflush` input (plus `ipset restore` input).

Pure: the kernel layer runs the commands. A render is always a delta against the kernel state
read back with `parse_iptables_save` / `parse_ipset_save`; rendering against an empty state is the
full programming of a fresh node. Per table the input is one transaction:

    *<table>
    :<chain> - -          every felis chain that is new, changed (flushed: whole-chain rewrite)
                          or obsolete (flushed now, deleted below)
    -A <chain> …          all rules of the new and changed chains
    -D <kernel chain> …   our hooks, by their exact text, when they are not exactly in place
    -I <kernel chain> n … our inserts again, at positions 1..n; `-A` for our appends
    COMMIT
    *<table>              only when chains are obsolete: once nothing refers to them
    -X <chain>
    COMMIT

Rules other programs own (no `felis:` comment) are never named, so `--noflush` leaves them alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from felis.dataplane import terms
from felis.dataplane.identifiers import DataplaneRenderError, check_iface, protocol_name
from felis.dataplane.ipset import (
    SET_NAME_PREFIX,
    obsolete_sets,
    parse_ipset_save,
    render_ipset_destroy,
    render_ipset_full,
    render_ipset_update,
)
from felis.dataplane.ir_checks import check_ruleset
from felis.dataplane.kernel_state import (
    ChainState,
    KernelRule,
    SetState,
    TableState,
    chain_state,
    desired_hooks,
    dirty_chains,
    hook_hashes,
    hooks_in_place,
)
from felis.dataplane.memo import PerObject, PerValue, RenderCache, by_value, cache_or_new
from felis.dataplane.rule_identity import (
    chain_kernel_rules,
    normalise_ports,
    port_chunks,
    rule_comment,
)
from felis.dataplane.set_members import normalise_members
from felis.dataplane.spec import (
    CHAIN_PREFIX,
    EMPTY_TABLES,
    TABLE_ORDER,
    Chain,
    Family,
    Goto,
    Jump,
    Log,
    Match,
    PortRange,
    Rule,
    Ruleset,
    SetMark,
    Table,
    TableSpec,
    bare_action_word,
)
from felis.dataplane.terms import Side

__all__ = [
    "IptablesPlan",
    "IptablesState",
    "parse_ipset_save",
    "parse_iptables_save",
    "render_cleanup",
    "render_delta",
    "render_full",
    "render_rule",
    "restore_command",
]

LOG_LEVEL = 5
"""syslog `notice`; the nft renderer writes `level notice` so both log alike."""


def restore_command(family: Family) -> str:
    return "iptables-restore" if family is Family.V4 else "ip6tables-restore"


# ---------------------------------------------------------------------------------------------
# One rule.


def _port_list(items: tuple[PortRange, ...]) -> str:
    return ",".join(f"{p.first}:{p.last}" if p.first != p.last else str(p.first) for p in items)


_BANG = ("", "! ")
"""Indexed by a term's `negated`."""
_IFACE_FLAG = {Side.SRC: "-i", Side.DST: "-o"}
_NET_FLAG = {Side.SRC: "-s", Side.DST: "-d"}
_PORTS_OPTION = {Side.SRC: "--sports", Side.DST: "--dports"}
"""iptables-save's spelling (so that a rendered rule reads back as the same text)."""


def _iface(term: terms.Iface, family: Family) -> str:
    return f"{_IFACE_FLAG[term.side]} {check_iface(term.name)}"


def _mark(term: terms.Mark, family: Family) -> str:
    return f"-m mark --mark {term.value:#x}/{term.mask:#x}"


def _ct_states(term: terms.CtStates, family: Family) -> str:
    return "-m conntrack --ctstate " + ",".join(s.value.upper() for s in term.states)


def _ct_dnat(term: terms.CtDnat, family: Family) -> str:
    return f"-m conntrack {_BANG[term.negated]}--ctstate DNAT"


def _protocol(term: terms.Protocol, family: Family) -> str:
    return f"{_BANG[term.negated]}-p {protocol_name(term.number)}"


def _net(term: terms.Net, family: Family) -> str:
    return f"{_BANG[term.negated]}{_NET_FLAG[term.side]} {term.cidr}"


def _addr_set(term: terms.AddrSet, family: Family) -> str:
    return f"-m set {_BANG[term.negated]}--match-set {term.name} {term.side.value}"


def _ports(term: terms.Ports, family: Family) -> str:
    option = _PORTS_OPTION[term.side]
    if not term.negated:
        # Already one chunk of at most 15 slots: expand_rules splits longer positive lists.
        return f"-m multiport {option} {_port_list(term.ports)}"
    # "In none of them" is one multiport match per chunk, all in the same rule.
    return " ".join(
        f"-m multiport ! {option} {_port_list(chunk)}"
        for chunk in port_chunks(normalise_ports(term.ports))
    )


def _port_set(term: terms.PortSet, family: Family) -> str:
    side = term.side.value
    return f"-m set {_BANG[term.negated]}--match-set {term.name} {side},{side}"


def _port_number_set(term: terms.PortNumberSet, family: Family) -> str:
    # bitmap:port: the flag names the side whose port is looked up.
    return f"-m set --match-set {term.name} {term.side.value}"


def _icmp(term: terms.Icmp, family: Family) -> str:
    value = str(term.type) if term.code is None else f"{term.type}/{term.code}"
    if family is Family.V4:
        return f"-m icmp {_BANG[term.negated]}--icmp-type {value}"
    return f"-m icmp6 {_BANG[term.negated]}--icmpv6-type {value}"


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


_IP_PART = (terms.Net, terms.Iface, terms.Protocol)
"""Terms iptables keeps in the rule's fixed header and prints first, in this order (`-s`, `-d`,
`-i`, `-o`, `-p`), before every `-m` match whatever order they were given in."""


def render_match(match: Match, family: Family, cache: RenderCache | None = None) -> list[str]:
    """Match text as iptables-save prints it: the fixed header (addresses, interfaces,
    protocol), then the `-m` matches in Calico's order (docs/calico-semantics.md#match-order)."""
    header, matches = by_value(cache, _MATCH_TEXT)(match, family)
    return [*header, *matches]


def _render_match(match: Match, family: Family) -> tuple[tuple[str, ...], tuple[str, ...]]:
    # In iptables-save's order, the text of a hook rule is the text read back, which is what a
    # `-D` of it (and `felis plan`'s prediction of that `-D`) is written with.
    found = terms.match_terms(match)
    texts = _TEXT.render(match, family)
    header = sorted(
        (i for i, term in enumerate(found) if isinstance(term, _IP_PART)),
        key=lambda i: (_IP_PART.index(type(found[i])), i),
    )
    rest = [i for i in range(len(found)) if i not in set(header)]
    return tuple(texts[i] for i in header), tuple(texts[i] for i in rest)


_MATCH_TEXT = PerValue(_render_match, 1 << 16)
"""By value: a ruleset has far fewer distinct matches than rules."""


_BARE_ACTION_TARGETS = {
    "accept": "-j ACCEPT",
    "drop": "-j DROP",
    "return": "-j RETURN",
    "notrack": "-j CT --notrack",
}


def render_action(rule: Rule) -> list[str]:
    if rule.action is None:
        return []
    if word := bare_action_word(rule.action):
        return [_BARE_ACTION_TARGETS[word]]
    match rule.action:
        case Jump(target=target):
            return [f"-j {target}"]
        case Goto(target=target):
            return [f"-g {target}"]
        case SetMark(value=value, mask=mask):
            return [f"-j MARK --set-xmark {value:#x}/{mask:#x}"]
        case Log(prefix=prefix):
            return [f'-j LOG --log-prefix "{prefix}" --log-level {LOG_LEVEL}']
    raise DataplaneRenderError(f"unknown action {rule.action!r}")


def render_rule(
    rule: Rule, rule_hash: str, family: Family, cache: RenderCache | None = None
) -> str:
    """The rule text after `-A <chain> ` (an already expanded, checked kernel rule)."""
    return _rule_text(rule, rule_hash, family, by_value(cache, _MATCH_TEXT))


def _rule_text(
    rule: Rule,
    rule_hash: str,
    family: Family,
    match_text: Callable[[Match, Family], tuple[tuple[str, ...], tuple[str, ...]]],
) -> str:
    comment = rule_comment(rule_hash, rule.comment)
    header, matches = match_text(rule.match, family)
    return " ".join([*header, f'-m comment --comment "{comment}"', *matches, *render_action(rule)])


# ---------------------------------------------------------------------------------------------
# Read back.


@dataclass(frozen=True, slots=True)
class IptablesState:
    """What the kernel holds for one family, as read back."""

    tables: Mapping[Table, TableState] = field(default_factory=dict)
    sets: Mapping[str, SetState] = field(default_factory=dict)


_TABLES = {table.value: table for table in Table}
_COUNTERS_RE = re.compile(r"^\[(\d+):(\d+)\]\s+")
_HASH_COMMENT_RE = re.compile(r"--comment\s+\"?felis:([A-Za-z0-9_-]{16})")


def parse_iptables_save(text: str) -> dict[Table, TableState]:
    """`iptables-save` (optionally `-c`) → per table, every chain's rules with our hashes.

    Only the raw, mangle and filter tables are kept. A rule's hash is the `felis:` value of its
    first comment; anything else is a foreign rule (hash None). The rule text is kept as printed,
    so our rules in kernel chains can be deleted by value.
    """
    if "is incompatible, use 'nft' tool" in text:
        raise DataplaneRenderError(
            "iptables-save cannot read a table written by nft; use the nftables backend"
        )
    tables: dict[Table, dict[str, list[KernelRule]]] = {}
    current: dict[str, list[KernelRule]] | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            name = line[1:].strip()
            current = tables.setdefault(_TABLES[name], {}) if name in _TABLES else None
            continue
        if line == "COMMIT" or current is None:
            continue
        packets = nbytes = None
        counters = _COUNTERS_RE.match(line)
        if counters:
            packets, nbytes = int(counters.group(1)), int(counters.group(2))
            line = line[counters.end() :]
        if line.startswith(":"):
            current.setdefault(line[1:].split()[0], [])
        elif line.startswith("-A "):
            parts = line.split(None, 2)
            if len(parts) < 2:
                raise DataplaneRenderError(f"iptables-save line {lineno}: rule without a chain")
            body = parts[2] if len(parts) > 2 else ""
            found = _HASH_COMMENT_RE.search(body)
            current.setdefault(parts[1], []).append(
                KernelRule(
                    hash=found.group(1) if found else None,
                    text=body,
                    packets=packets,
                    bytes=nbytes,
                )
            )
    return {
        table: TableState(
            table=table,
            chains={name: ChainState(name, tuple(rules)) for name, rules in chains.items()},
        )
        for table, chains in tables.items()
    }


# ---------------------------------------------------------------------------------------------
# Rendering a table, a family, a cleanup.


_CHAIN_TEXT: PerObject[tuple[str, Family], str] = PerObject()
"""The `-A` lines of a chain, per chain object: an unchanged chain is printed once."""


def _chain_text(name: str, chain: Chain, family: Family, cache: RenderCache) -> str:
    def compute() -> str:
        kernel = chain_kernel_rules(chain, name, cache)
        match_text = cache.values(_MATCH_TEXT)
        return "\n".join(
            f"-A {name} {_rule_text(rule, rule_hash, family, match_text)}"
            for rule, rule_hash in zip(kernel.rules, kernel.hashes, strict=True)
        )

    return cache.objects(_CHAIN_TEXT).get(chain, (name, family), compute)


def render_table(
    spec: TableSpec | None,
    family: Family,
    current: TableState | None,
    table: Table,
    cache: RenderCache | None = None,
) -> str | None:
    """`iptables-restore --noflush` input bringing one table from `current` to `spec`.

    `spec` None removes everything felis has in the table. None when nothing differs.
    """
    cache = cache_or_new(cache)
    spec = spec if spec is not None else EMPTY_TABLES[table]
    new, changed, obsolete = dirty_chains(spec, current, cache)
    body: list[str] = [f":{name} - -" for name in (*new, *changed, *obsolete)]
    for name in (*new, *changed):
        text = _chain_text(name, spec.chains[name], family, cache)
        if text:
            body.append(text)

    wanted = desired_hooks(spec, cache)
    have = current.chains if current is not None else {}
    with_ours = [
        name for name, chain in have.items() if not name.startswith(CHAIN_PREFIX) and chain.ours()
    ]
    for kernel_chain in dict.fromkeys([*wanted, *with_ours]):
        inserts, appends = wanted.get(kernel_chain, ((), ()))
        ins_hashes, app_hashes = hook_hashes(kernel_chain, inserts, appends, cache)
        chain_state = have.get(kernel_chain, ChainState(kernel_chain))
        if hooks_in_place(chain_state.hashes, ins_hashes, app_hashes):
            continue
        body.extend(f"-D {kernel_chain} {rule.text}" for _, rule in chain_state.ours())
        body.extend(
            f"-I {kernel_chain} {pos} {render_rule(rule, rule_hash, family, cache)}"
            for pos, (rule, rule_hash) in enumerate(zip(inserts, ins_hashes, strict=True), 1)
        )
        body.extend(
            f"-A {kernel_chain} {render_rule(rule, rule_hash, family, cache)}"
            for rule, rule_hash in zip(appends, app_hashes, strict=True)
        )
    if not body:
        return None
    lines = [f"*{table.value}", *body, "COMMIT"]
    if obsolete:
        lines += [f"*{table.value}", *(f"-X {name}" for name in obsolete), "COMMIT"]
    return "\n".join([*lines, ""])


@dataclass(frozen=True, slots=True)
class IptablesPlan:
    """What to run, in this order: `ipset restore` ← ipset_prepare; per table in TABLE_ORDER
    `iptables-restore --noflush` (ip6tables-restore for v6) ← tables[t]; `ipset restore` ←
    ipset_cleanup. Absent entries mean nothing to do."""

    family: Family
    ipset_prepare: str | None = None
    tables: Mapping[Table, str] = field(default_factory=dict)
    ipset_cleanup: str | None = None

    @property
    def empty(self) -> bool:
        return self.ipset_prepare is None and not self.tables and self.ipset_cleanup is None

    @property
    def ipset(self) -> str:
        """`ipset_prepare` or "" (for display)."""
        return self.ipset_prepare or ""

    @property
    def restore(self) -> str:
        """All tables as one `iptables-restore --noflush` input (one COMMIT block per table)."""
        return "".join(self.tables[t] for t in TABLE_ORDER if t in self.tables)


def render_delta(
    ruleset: Ruleset, current: IptablesState, *, cache: RenderCache | None = None
) -> IptablesPlan:
    """Commands bringing the kernel from `current` to `ruleset`; `plan.empty` when in sync."""
    cache = cache_or_new(cache)
    check_ruleset(ruleset, cache)
    return _delta(ruleset, current, cache)


def _delta(
    ruleset: Ruleset, current: IptablesState, cache: RenderCache, *, full: bool = False
) -> IptablesPlan:
    family = ruleset.family
    tables: dict[Table, str] = {}
    for table in TABLE_ORDER:
        text = render_table(
            ruleset.tables.get(table), family, current.tables.get(table), table, cache
        )
        if text is not None:
            tables[table] = text
    if full:
        prepare = render_ipset_full(ruleset.sets, family, cache)
        return IptablesPlan(family=family, ipset_prepare=prepare, tables=tables)
    family_sets = {n: s for n, s in current.sets.items() if s.family is family}
    return IptablesPlan(
        family=family,
        ipset_prepare=render_ipset_update(ruleset.sets, family, family_sets, cache),
        tables=tables,
        ipset_cleanup=render_ipset_destroy(obsolete_sets(ruleset.sets, family, family_sets)),
    )


def render_full(ruleset: Ruleset, *, cache: RenderCache | None = None) -> IptablesPlan:
    """Programming a node that has none of felis' state (the delta against nothing)."""
    cache = cache_or_new(cache)
    check_ruleset(ruleset, cache)
    return _delta(ruleset, IptablesState(), cache, full=True)


_FELIS_STATES: PerObject[None, dict[str, ChainState]] = PerObject()


def state_after(
    ruleset: Ruleset, before: IptablesState, *, cache: RenderCache | None = None
) -> IptablesState:
    """What `iptables-save` + `ipset save` would read back once `render_delta(ruleset, before)`
    has been applied successfully, in the shape `render_delta` compares against.

    The kernel layer keeps this instead of re-reading the kernel after each of its own writes.
    Our chains and hooks carry their hashes; our hook rules carry their rendered text (the
    iptables parser matches `-D` by rule spec, so it deletes them as well as the saved form);
    rules in our own chains carry no text (nothing deletes them by value). Foreign rules and
    sets are kept as they were read.
    """
    cache = cache_or_new(cache)
    felis_states = cache.objects(_FELIS_STATES)
    family = ruleset.family
    tables: dict[Table, TableState] = {}
    for table in TABLE_ORDER:
        spec = ruleset.tables.get(table) or EMPTY_TABLES[table]
        old = before.tables.get(table)
        have = old.chains if old is not None else {}
        chains: dict[str, ChainState] = {
            name: chain for name, chain in have.items() if not name.startswith(CHAIN_PREFIX)
        }
        wanted = desired_hooks(spec, cache)
        for kernel_chain in dict.fromkeys([*wanted, *chains]):
            inserts, appends = wanted.get(kernel_chain, ((), ()))
            ins_hashes, app_hashes = hook_hashes(kernel_chain, inserts, appends, cache)
            state = chains.get(kernel_chain, ChainState(kernel_chain))
            if hooks_in_place(state.hashes, ins_hashes, app_hashes):
                continue
            foreign = tuple(rule for rule in state.rules if rule.hash is None)
            ours = [
                KernelRule(hash=rule_hash, text=render_rule(rule, rule_hash, family, cache))
                for rule, rule_hash in zip(
                    (*inserts, *appends), (*ins_hashes, *app_hashes), strict=True
                )
            ]
            chains[kernel_chain] = ChainState(
                kernel_chain, (*ours[: len(inserts)], *foreign, *ours[len(inserts) :])
            )
        chains.update(felis_states.get(spec, None, _felis_states, spec, cache))
        if chains or old is not None:
            tables[table] = TableState(table=table, chains=chains)
    sets: dict[str, SetState] = {
        name: state
        for name, state in before.sets.items()
        if state.family is not family or not name.startswith(SET_NAME_PREFIX)
    }
    for name, ipset in ruleset.sets.items():
        members = normalise_members(ipset.kind, ipset.members, family, cache)
        sets[name] = SetState(name=name, kind=ipset.kind, family=family, members=members)
    return IptablesState(tables=tables, sets=sets)


def _felis_states(spec: TableSpec, cache: RenderCache) -> dict[str, ChainState]:
    return {name: chain_state(chain, name, cache) for name, chain in spec.chains.items()}


def render_cleanup(
    family: Family, current: IptablesState, *, cache: RenderCache | None = None
) -> IptablesPlan:
    """Remove every felis chain, hook and set of one family."""
    return render_delta(Ruleset(family=family, tables={}, sets={}), current, cache=cache)
