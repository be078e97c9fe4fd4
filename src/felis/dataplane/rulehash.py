"""What both renderers share: rule identity (hashes), comments, identifier checks, kernel state.

A rule's identity is a chained hash, like Calico's (reference §7.2) but over felis' own input: for
chain C, h0 = SHA-224(C) and hi = SHA-224(h(i-1) || canonical(rule i)), written into the rule's
comment as `felis:<first 16 chars of base64url(hi)>`. `canonical` is a text form of the IR rule
itself, not of any backend's syntax, and C is the IR chain name (not the nft layer-prefixed one),
so a chain has the same hash list in iptables and in nftables. A kernel-chain hook is hashed with
the kernel chain's name (`PREROUTING`), an appended one with `PREROUTING*appends*`.

Before hashing, an IR rule is expanded into the kernel rules both backends print (`expand_rules`):
a positive port list longer than iptables' 15 multiport slots becomes several rules, one per chunk.
Both backends use the same expansion so that their hash lists stay identical.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from felis.dataplane.spec import (
    CHAIN_PREFIX,
    MAX_CHAIN_NAME,
    MAX_IPSET_NAME,
    PORT_PROTOCOLS,
    PROTOCOL_NAMES,
    PROTOCOL_NUMBERS,
    Accept,
    Action,
    Chain,
    CtState,
    Drop,
    Family,
    Goto,
    HookPosition,
    IcmpMatch,
    IpSet,
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
    TableSpec,
)
from felis.errors import FelisError

HASH_PREFIX = "felis:"
HASH_LENGTH = 16
APPENDS_SUFFIX = "*appends*"
MAX_COMMENT = 128
"""nft keeps at most 128 bytes of rule comment; iptables takes 255. One limit for both."""
MAX_MULTIPORT_SLOTS = 15
MAX_LOG_PREFIX = 29
"""iptables' LOG target limit (nft allows more; one limit keeps both identical)."""

HASH_RE = re.compile(r"felis:([A-Za-z0-9_-]{16})")

KERNEL_CHAINS: Mapping[Table, tuple[str, ...]] = {
    Table.RAW: ("PREROUTING", "OUTPUT"),
    Table.MANGLE: ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    Table.FILTER: ("INPUT", "FORWARD", "OUTPUT"),
}
"""Kernel chains a hook may name, per table."""


class DataplaneRenderError(FelisError):
    """The IR (or a kernel dump) holds something the renderers refuse to put on a command line."""


# ---------------------------------------------------------------------------------------------
# Identifier checks: everything that reaches a command line or an nft file passes one of these.

_IFACE_RE = re.compile(r"^[a-zA-Z0-9_.-]{1,15}\+?$")
_CHAIN_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_./-]*$")
_SET_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
_COMMENT_RE = re.compile(r"^[A-Za-z0-9_ @%+=:,./\[\]-]*$")
_LOG_RE = re.compile(r"^[A-Za-z0-9_ @%+=:,./\[\]-]+$")


def check_iface(name: str) -> str:
    if not _IFACE_RE.match(name):
        raise DataplaneRenderError(f"invalid interface name {name!r}: want 1-15 of [A-Za-z0-9_.-]")
    return name


def check_chain(name: str) -> str:
    """A felis chain name: our prefix, at most 28 characters, nft-identifier safe."""
    if not name.startswith(CHAIN_PREFIX) or len(name) > MAX_CHAIN_NAME or not _CHAIN_RE.match(name):
        raise DataplaneRenderError(
            f"invalid chain name {name!r}: want {CHAIN_PREFIX!r} + [A-Za-z0-9_./-], "
            f"at most {MAX_CHAIN_NAME} characters"
        )
    return name


def check_kernel_chain(table: Table, name: str) -> str:
    if name not in KERNEL_CHAINS[table]:
        raise DataplaneRenderError(
            f"hook into unsupported kernel chain {name!r} of table {table.value}"
        )
    return name


def check_set_name(name: str) -> str:
    if len(name) > MAX_IPSET_NAME or not _SET_RE.match(name):
        raise DataplaneRenderError(
            f"invalid IP set name {name!r}: want a letter then [A-Za-z0-9_.-], "
            f"at most {MAX_IPSET_NAME} characters"
        )
    return name


def check_comment(text: str) -> str:
    if not _COMMENT_RE.match(text):
        raise DataplaneRenderError(
            f"rule comment {text!r} has characters outside [A-Za-z0-9_ @%+=:,./[]-]"
        )
    return text


def check_log_prefix(text: str) -> str:
    if len(text) > MAX_LOG_PREFIX or not _LOG_RE.match(text):
        raise DataplaneRenderError(
            f"invalid log prefix {text!r}: want 1-{MAX_LOG_PREFIX} of [A-Za-z0-9_ @%+=:,./[]-]"
        )
    return text


def check_net(text: str, family: Family) -> str:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise DataplaneRenderError(f"invalid CIDR {text!r}") from None
    if net.version != int(family):
        raise DataplaneRenderError(f"CIDR {text!r} is not IPv{int(family)}")
    return str(net)


def protocol_name(number: int) -> str:
    """iptables/nft spelling of a protocol: a name both tools know, else the number."""
    if not 0 <= number <= 255:
        raise DataplaneRenderError(f"invalid IP protocol number {number}")
    return PROTOCOL_NAMES.get(number, str(number))


# ---------------------------------------------------------------------------------------------
# Canonical text and hashes.


def _canon_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, PortRange):
        return str(value)
    if isinstance(value, IcmpMatch):
        return str(value.type) if value.code is None else f"{value.type}/{value.code}"
    if isinstance(value, frozenset):
        return ",".join(sorted(_canon_value(item) for item in value))
    if isinstance(value, tuple):
        return ",".join(_canon_value(item) for item in value)
    return str(value)


def canonical_match(match: Match) -> str:
    """Non-default fields of the match in declaration order, `name=value` joined by spaces."""
    parts = []
    for fld in dataclasses.fields(Match):
        value = getattr(match, fld.name)
        if value == fld.default or value in ((), frozenset(), None):
            continue
        if fld.name in ("mark_set", "mark_clear"):
            parts.append(f"{fld.name}={value:#x}")
        else:
            parts.append(f"{fld.name}={_canon_value(value)}")
    return " ".join(parts)


def canonical_action(action: Action | None) -> str:
    match action:
        case None:
            return "none"
        case Accept():
            return "accept"
        case Drop():
            return "drop"
        case Return():
            return "return"
        case NoTrack():
            return "notrack"
        case Jump(target=target):
            return f"jump {target}"
        case Goto(target=target):
            return f"goto {target}"
        case SetMark(value=value, mask=mask):
            return f"setmark {value:#x}/{mask:#x}"
        case Log(prefix=prefix):
            return f"log {prefix}"
    raise DataplaneRenderError(f"unknown action {action!r}")


def canonical_rule(rule: Rule) -> str:
    """The backend-independent text a rule's hash is computed over."""
    return f"{canonical_match(rule.match)} -> {canonical_action(rule.action)} # {rule.comment}"


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def chain_hashes(chain_name: str, rules: Sequence[Rule]) -> tuple[str, ...]:
    """The hash of each (already expanded) rule of a chain, in order."""
    digest = hashlib.sha224(chain_name.encode()).digest()
    out = []
    for rule in rules:
        digest = hashlib.sha224(digest + canonical_rule(rule).encode()).digest()
        out.append(_b64(digest)[:HASH_LENGTH])
    return tuple(out)


def hook_hash_seed(kernel_chain: str, position: HookPosition) -> str:
    return kernel_chain if position is HookPosition.INSERT else kernel_chain + APPENDS_SUFFIX


def rule_comment(rule_hash: str, comment: str) -> str:
    """`felis:<hash>` or `felis:<hash>; <origin>`, cut to the comment limit of both backends."""
    text = f"{HASH_PREFIX}{rule_hash}"
    if comment:
        text += "; " + check_comment(comment)
    return text[:MAX_COMMENT].rstrip()


def extract_hash(comment: str) -> str | None:
    found = HASH_RE.search(comment)
    return found.group(1) if found else None


# ---------------------------------------------------------------------------------------------
# Expansion: IR rules → kernel rules (shared so both backends print the same rules).


def normalise_ports(ports: Iterable[PortRange]) -> tuple[PortRange, ...]:
    """Sorted, with overlapping or touching ranges merged: the chunks cut from it are disjoint."""
    merged: list[PortRange] = []
    for item in sorted(ports, key=lambda p: (p.first, p.last)):
        if merged and item.first <= merged[-1].last + 1:
            last = merged[-1]
            merged[-1] = PortRange(last.first, max(last.last, item.last))
        else:
            merged.append(item)
    return tuple(merged)


def port_chunks(ports: Iterable[PortRange]) -> tuple[tuple[PortRange, ...], ...]:
    """Groups of at most 15 multiport slots (a port is one slot, a range two)."""
    chunks: list[tuple[PortRange, ...]] = []
    current: list[PortRange] = []
    used = 0
    for item in ports:
        if used + item.slots > MAX_MULTIPORT_SLOTS:
            chunks.append(tuple(current))
            current, used = [], 0
        current.append(item)
        used += item.slots
    if current:
        chunks.append(tuple(current))
    return tuple(chunks)


def expand_rule(rule: Rule) -> tuple[Rule, ...]:
    """One IR rule as the kernel rules that implement it (usually just itself)."""
    match = rule.match
    if not (match.src_ports or match.dst_ports):
        return (rule,)
    src = port_chunks(normalise_ports(match.src_ports)) or ((),)
    dst = port_chunks(normalise_ports(match.dst_ports)) or ((),)
    return tuple(
        dataclasses.replace(
            rule, match=dataclasses.replace(match, src_ports=src_chunk, dst_ports=dst_chunk)
        )
        for src_chunk in src
        for dst_chunk in dst
    )


def expand_rules(rules: Iterable[Rule]) -> tuple[Rule, ...]:
    return tuple(kernel_rule for rule in rules for kernel_rule in expand_rule(rule))


# ---------------------------------------------------------------------------------------------
# IR checks common to both backends.


def check_rule(rule: Rule, table: Table, family: Family, chains: Mapping[str, Chain]) -> None:
    """Refuse a rule no backend can print faithfully; `chains` are the table's chains."""
    match = rule.match
    check_comment(rule.comment)
    where = f"rule {rule.comment or canonical_rule(rule)!r}"
    for proto in (match.protocol, match.not_protocol):
        if proto is not None:
            protocol_name(proto)
    has_ports = match.src_ports or match.dst_ports or match.not_src_ports or match.not_dst_ports
    if has_ports and match.protocol not in PORT_PROTOCOLS:
        raise DataplaneRenderError(f"{where}: port match needs protocol tcp, udp or sctp")
    for icmp in (match.icmp, match.not_icmp):
        if icmp is None:
            continue
        want = PROTOCOL_NUMBERS["icmp" if family is Family.V4 else "icmpv6"]
        if match.protocol != want:
            need = PROTOCOL_NAMES[want]
            raise DataplaneRenderError(
                f"{where}: ICMP type match needs protocol {need} in IPv{int(family)}"
            )
        if not 0 <= icmp.type <= 255 or not (icmp.code is None or 0 <= icmp.code <= 255):
            raise DataplaneRenderError(f"{where}: ICMP type/code out of range")
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
    for opt in (match.src_port_set, match.dst_port_set):
        if opt is not None:
            check_set_name(opt)
    for iface in (match.in_iface, match.out_iface):
        if iface is not None:
            check_iface(iface)
    for bits in (match.mark_set, match.mark_clear):
        if not 0 <= bits <= 0xFFFFFFFF:
            raise DataplaneRenderError(f"{where}: mark bits {bits:#x} out of 32 bits")
    if match.mark_set & match.mark_clear:
        raise DataplaneRenderError(f"{where}: mark bits both set and clear")
    action = rule.action
    if isinstance(action, Jump | Goto):
        check_chain(action.target)
        if action.target not in chains:
            raise DataplaneRenderError(
                f"{where}: target chain {action.target!r} is not in table {table.value}"
            )
    elif isinstance(action, SetMark):
        if not 0 <= action.mask <= 0xFFFFFFFF or action.value & ~action.mask:
            raise DataplaneRenderError(
                f"{where}: mark value {action.value:#x} outside its mask {action.mask:#x}"
            )
    elif isinstance(action, NoTrack):
        if table is not Table.RAW:
            raise DataplaneRenderError(f"{where}: notrack is only valid in the raw table")
    elif isinstance(action, Log):
        check_log_prefix(action.prefix)


def check_table(spec: TableSpec, family: Family) -> None:
    for name, chain in spec.chains.items():
        check_chain(name)
        if chain.name != name:
            raise DataplaneRenderError(f"chain {chain.name!r} is filed under {name!r}")
        for rule in chain.rules:
            check_rule(rule, spec.table, family, spec.chains)
    for hook in spec.hooks:
        check_kernel_chain(spec.table, hook.kernel_chain)
        check_rule(hook.rule, spec.table, family, spec.chains)


def _set_refs(match: Match) -> Iterator[tuple[str, SetKind]]:
    for name in (*match.src_sets, *match.not_src_sets, *match.dst_sets, *match.not_dst_sets):
        yield name, SetKind.NET
    for opt in (match.src_port_set, match.dst_port_set):
        if opt is not None:
            yield opt, SetKind.IP_PORT
    for name in (*match.not_src_port_sets, *match.not_dst_port_sets):
        yield name, SetKind.IP_PORT


def check_ruleset(ruleset: Ruleset) -> None:
    for table, spec in ruleset.tables.items():
        if spec.table is not table:
            raise DataplaneRenderError(f"table {spec.table.value} filed under {table.value}")
        check_table(spec, ruleset.family)
        rules = [r for c in spec.chains.values() for r in c.rules] + [h.rule for h in spec.hooks]
        for rule in rules:
            for name, kind in _set_refs(rule.match):
                ipset = ruleset.sets.get(name)
                if ipset is None or ipset.kind is not kind:
                    raise DataplaneRenderError(
                        f"rule {rule.comment or canonical_rule(rule)!r} refers to IP set "
                        f"{name!r}, which is not a {kind.value} set of the ruleset"
                    )
    for name, ipset in ruleset.sets.items():
        check_set_name(name)
        if ipset.name != name:
            raise DataplaneRenderError(f"IP set {ipset.name!r} is filed under {name!r}")
        normalise_members(ipset.kind, ipset.members, ruleset.family)


# ---------------------------------------------------------------------------------------------
# Set members, normalised so that desired and read-back sets compare equal.

_SET_PORT_PROTOCOLS = frozenset({"tcp", "udp", "sctp"})


def normalise_member(kind: SetKind, member: str, family: Family) -> str:
    """`net`: `addr/len` with host bits cleared; `ip,port`: `addr,proto:port`."""
    if kind is SetKind.NET:
        return check_net(member, family)
    try:
        addr_text, rest = member.rsplit(",", 1)
        proto, port_text = rest.split(":", 1)
        addr = ipaddress.ip_address(addr_text)
        port = int(port_text)
    except ValueError:
        raise DataplaneRenderError(f"invalid ip,port set member {member!r}") from None
    proto = proto.lower()
    if proto.isdigit() and int(proto) in PROTOCOL_NAMES:
        proto = PROTOCOL_NAMES[int(proto)]
    if proto not in _SET_PORT_PROTOCOLS or not 0 <= port <= 65535 or addr.version != family:
        raise DataplaneRenderError(f"invalid IPv{int(family)} ip,port set member {member!r}")
    return f"{addr},{proto}:{port}"


def normalise_members(kind: SetKind, members: Iterable[str], family: Family) -> frozenset[str]:
    """Normalised members; CIDRs are also collapsed (no overlaps: nft interval sets refuse them)."""
    normal = [normalise_member(kind, member, family) for member in members]
    if kind is SetKind.IP_PORT:
        return frozenset(normal)
    v4 = [n for n in map(ipaddress.ip_network, normal) if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in map(ipaddress.ip_network, normal) if isinstance(n, ipaddress.IPv6Network)]
    collapsed = [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]
    return frozenset(str(net) for net in collapsed)


def sorted_members(kind: SetKind, members: Iterable[str]) -> list[str]:
    """A stable order for printing (addresses numerically)."""

    def key(member: str) -> tuple[int, int, str]:
        addr = member.split(",", maxsplit=1)[0].split("/", maxsplit=1)[0]
        parsed = ipaddress.ip_address(addr)
        return (parsed.version, int(parsed), member)

    return sorted(members, key=key)


# ---------------------------------------------------------------------------------------------
# Kernel state as read back, the same shape for both backends.


@dataclass(frozen=True, slots=True)
class KernelRule:
    hash: str | None
    """felis hash from the rule's comment; None for a rule that is not ours."""
    text: str = ""
    """iptables: the rule as `iptables-save` prints it after `-A <chain> ` (for `-D` by value)."""
    handle: int | None = None
    """nft rule handle (for deleting one rule)."""
    packets: int | None = None
    bytes: int | None = None


@dataclass(frozen=True, slots=True)
class ChainState:
    name: str
    rules: tuple[KernelRule, ...] = ()

    @property
    def hashes(self) -> tuple[str | None, ...]:
        return tuple(rule.hash for rule in self.rules)

    def ours(self) -> tuple[tuple[int, KernelRule], ...]:
        """Our rules with their 1-based positions (what `-D <chain> <n>` would use)."""
        return tuple((i, rule) for i, rule in enumerate(self.rules, 1) if rule.hash is not None)


@dataclass(frozen=True, slots=True)
class TableState:
    """One table (iptables) or one layer (nft) as read back.

    `chains` holds felis chains under their IR names and kernel chains (nft: base chains) under
    the kernel chain name, e.g. `PREROUTING`.
    """

    table: Table
    chains: Mapping[str, ChainState] = field(default_factory=dict)

    def felis_chains(self) -> tuple[str, ...]:
        return tuple(name for name in self.chains if name.startswith(CHAIN_PREFIX))


@dataclass(frozen=True, slots=True)
class SetState:
    name: str
    kind: SetKind
    family: Family
    members: frozenset[str]
    """Normalised like `normalise_members`."""


# ---------------------------------------------------------------------------------------------
# Per-chain comparison shared by both backends' delta renderers.


def desired_hooks(spec: TableSpec) -> dict[str, tuple[tuple[Rule, ...], tuple[Rule, ...]]]:
    """kernel chain → (expanded inserts, expanded appends)."""
    return {
        chain: (
            expand_rules(spec.hooks_for(chain, HookPosition.INSERT)),
            expand_rules(spec.hooks_for(chain, HookPosition.APPEND)),
        )
        for chain in spec.kernel_chains
    }


def hook_hashes(
    kernel_chain: str, inserts: Sequence[Rule], appends: Sequence[Rule]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return (
        chain_hashes(hook_hash_seed(kernel_chain, HookPosition.INSERT), inserts),
        chain_hashes(hook_hash_seed(kernel_chain, HookPosition.APPEND), appends),
    )


def hooks_in_place(
    current: Sequence[str | None], inserts: Sequence[str], appends: Sequence[str]
) -> bool:
    """True when our rules are exactly: the inserts at the top, the appends at the bottom."""
    n_in, n_app = len(inserts), len(appends)
    if len(current) < n_in + n_app:
        return False
    if tuple(current[:n_in]) != tuple(inserts):
        return False
    if n_app and tuple(current[len(current) - n_app :]) != tuple(appends):
        return False
    middle = current[n_in : len(current) - n_app]
    return all(item is None for item in middle)


def dirty_chains(
    spec: TableSpec, current: TableState | None
) -> tuple[list[str], list[str], list[str]]:
    """(new chains, changed chains, obsolete felis chains) of one table, in a stable order."""
    have = current.chains if current is not None else {}
    new, changed = [], []
    for name, chain in spec.chains.items():
        if name not in have:
            new.append(name)
        elif have[name].hashes != chain_hashes(name, expand_rules(chain.rules)):
            changed.append(name)
    obsolete = sorted(
        name
        for name in (current.felis_chains() if current is not None else ())
        if name not in spec.chains
    )
    return new, changed, obsolete


def set_kind_conflicts(desired: Mapping[str, IpSet], current: Mapping[str, SetState]) -> None:
    for name, ipset in desired.items():
        have = current.get(name)
        if have is not None and have.kind is not ipset.kind:
            raise DataplaneRenderError(
                f"IP set {name!r} exists in the kernel as {have.kind.value} but is wanted as "
                f"{ipset.kind.value}; remove felis' dataplane state (felis cleanup) and retry"
            )


CT_STATES_ORDER: tuple[CtState, ...] = (
    CtState.INVALID,
    CtState.ESTABLISHED,
    CtState.RELATED,
    CtState.NEW,
    CtState.UNTRACKED,
)
"""The order ct states are printed in (both tools accept any order)."""
