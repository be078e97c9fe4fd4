"""What both renderers share: rule identity (hashes), comments, identifier checks, kernel state.

A rule's identity is a chained hash, like Calico's but over felis' own input: for
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
import functools
import hashlib
import ipaddress
import itertools
import operator
import re
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

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
# They are pure and the same few hundred names recur in every render, so valid names are
# remembered (a refused name raises, and is therefore never cached).

_CHECK_CACHE = 1 << 16

_IFACE_RE = re.compile(r"^[a-zA-Z0-9_.-]{1,15}\+?$")
_CHAIN_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_./-]*$")
_SET_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
_COMMENT_RE = re.compile(r"^[A-Za-z0-9_ @%+=:,./\[\]-]*$")
_LOG_RE = re.compile(r"^[A-Za-z0-9_ @%+=:,./\[\]-]+$")


@functools.lru_cache(maxsize=_CHECK_CACHE)
def check_iface(name: str) -> str:
    if not _IFACE_RE.match(name):
        raise DataplaneRenderError(f"invalid interface name {name!r}: want 1-15 of [A-Za-z0-9_.-]")
    return name


@functools.lru_cache(maxsize=_CHECK_CACHE)
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


@functools.lru_cache(maxsize=_CHECK_CACHE)
def check_set_name(name: str) -> str:
    if len(name) > MAX_IPSET_NAME or not _SET_RE.match(name):
        raise DataplaneRenderError(
            f"invalid IP set name {name!r}: want a letter then [A-Za-z0-9_.-], "
            f"at most {MAX_IPSET_NAME} characters"
        )
    return name


@functools.lru_cache(maxsize=_CHECK_CACHE)
def check_comment(text: str) -> str:
    if not _COMMENT_RE.match(text):
        raise DataplaneRenderError(
            f"rule comment {text!r} has characters outside [A-Za-z0-9_ @%+=:,./[]-]"
        )
    return text


@functools.lru_cache(maxsize=_CHECK_CACHE)
def check_log_prefix(text: str) -> str:
    if len(text) > MAX_LOG_PREFIX or not _LOG_RE.match(text):
        raise DataplaneRenderError(
            f"invalid log prefix {text!r}: want 1-{MAX_LOG_PREFIX} of [A-Za-z0-9_ @%+=:,./[]-]"
        )
    return text


@functools.lru_cache(maxsize=_CHECK_CACHE)
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
    if isinstance(value, str):
        return value
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


_MATCH_FIELDS: tuple[tuple[str, object], ...] = tuple(
    (fld.name, fld.default) for fld in dataclasses.fields(Match)
)
_match_values: Callable[[Match], tuple[object, ...]] = operator.attrgetter(
    *(name for name, _ in _MATCH_FIELDS)
)
_UNSET: tuple[object, ...] = ((), frozenset(), None)
_EMPTY_MATCH = Match()


def canonical_match(match: Match) -> str:
    """Non-default fields of the match in declaration order, `name=value` joined by spaces."""
    return _canonical_match(match)


@functools.lru_cache(maxsize=1 << 16)
def _canonical_match(match: Match) -> str:
    # Memoised by value: a ruleset has far fewer distinct matches than rules (the mark and
    # conntrack rules recur in every chain), and a Match hashes faster than it prints.
    if match == _EMPTY_MATCH:
        return ""
    parts = []
    # One C-level attrgetter call instead of 25 getattr()s: this runs once per kernel rule.
    for (name, default), value in zip(_MATCH_FIELDS, _match_values(match), strict=True):
        if value == default or value in _UNSET:
            continue
        if name in ("mark_set", "mark_clear"):
            parts.append(f"{name}={value:#x}")
        else:
            parts.append(f"{name}={_canon_value(value)}")
    return " ".join(parts)


def canonical_action(action: Action | None) -> str:
    return _canonical_action(action)


@functools.lru_cache(maxsize=1 << 12)
def _canonical_action(action: Action | None) -> str:
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


_HASH_BYTES = HASH_LENGTH * 3 // 4
"""16 base64 characters are exactly the first 12 bytes of the digest (no padding involved)."""


def chain_hashes(chain_name: str, rules: Sequence[Rule]) -> tuple[str, ...]:
    """The hash of each (already expanded) rule of a chain, in order."""
    sha224 = hashlib.sha224
    digest = sha224(chain_name.encode()).digest()
    out = []
    for rule in rules:
        digest = sha224(digest + canonical_rule(rule).encode()).digest()
        out.append(_b64(digest[:_HASH_BYTES]))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Memoisation of per-chain work. The IR is immutable and calc hands the same Chain objects to
# every render while a chain is unchanged, so expansion, hashes, checks and rendered text are
# computed once per chain object, not once per render. Keys are object identities (hashing a
# chain by value would walk all its rules, the very cost we avoid); each entry keeps its object
# alive, so an id cannot be reused while its entry exists. The caches are bounded and dropped
# whole when full; they never change a result, only how often it is computed.

K = TypeVar("K")
V = TypeVar("V")

_MEMOS: list[Callable[[], None]] = []
"""`clear` of every memo of the renderers (identity memos and value-keyed lru caches)."""


def register_memo(clear: Callable[[], None]) -> None:
    _MEMOS.append(clear)


def clear_memos() -> None:
    """Forget everything memoised (benchmarks use it to measure a cold render)."""
    for clear in _MEMOS:
        clear()


class IdentityMemo(Generic[K, V]):
    """`get(obj, key, compute)`: compute(obj) once per (obj identity, key)."""

    def __init__(self, limit: int = 1 << 18) -> None:
        self._entries: dict[tuple[int, K], tuple[object, V]] = {}
        self._limit = limit
        register_memo(self.clear)

    def get(self, obj: object, key: K, compute: Callable[[], V]) -> V:
        slot = (id(obj), key)
        entry = self._entries.get(slot)
        if entry is not None and entry[0] is obj:
            return entry[1]
        value = compute()
        if len(self._entries) >= self._limit:
            # Drop the older half: mostly objects of superseded specs; a chain still in use
            # that goes with them is computed once more.
            for old in list(itertools.islice(self._entries, self._limit // 2)):
                del self._entries[old]
        self._entries[slot] = (obj, value)
        return value

    def clear(self) -> None:
        self._entries.clear()


@dataclass(frozen=True, slots=True)
class ChainKernelRules:
    """An IR chain as kernel rules: the expanded rules and their hashes, in order."""

    rules: tuple[Rule, ...]
    hashes: tuple[str, ...]


_CHAIN_RULES: IdentityMemo[str, ChainKernelRules] = IdentityMemo()


def chain_kernel_rules(chain: Chain, seed: str | None = None) -> ChainKernelRules:
    """`expand_rules(chain.rules)` and their `chain_hashes` (seeded with the chain's name unless
    `seed` is given), memoised per chain object."""
    name = chain.name if seed is None else seed

    def compute() -> ChainKernelRules:
        rules = expand_rules(chain.rules)
        return ChainKernelRules(rules, chain_hashes(name, rules))

    return _CHAIN_RULES.get(chain, name, compute)


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
    if len(src) == 1 and len(dst) == 1 and src[0] == match.src_ports and dst[0] == match.dst_ports:
        return (rule,)  # already one sorted chunk: the rule is its own kernel rule
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


def _where(rule: Rule) -> str:
    return f"rule {rule.comment or canonical_rule(rule)!r}"


class _MatchProblem(Exception):
    """A match refused by `_check_match`; the caller names the rule."""


@functools.lru_cache(maxsize=1 << 16)
def _check_match(match: Match, family: Family) -> None:
    """The checks of a rule's match that need nothing else, memoised by value (a refused match
    raises, so only good ones are remembered)."""
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


def _check_rule_alone(rule: Rule, table: Table, family: Family) -> None:
    """Every check of `check_rule` that does not depend on the other chains of the table."""
    check_comment(rule.comment)
    try:
        _check_match(rule.match, family)
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


def check_rule(rule: Rule, table: Table, family: Family, chains: Mapping[str, Chain]) -> None:
    """Refuse a rule no backend can print faithfully; `chains` are the table's chains."""
    _check_rule_alone(rule, table, family)
    _check_target(rule, table, chains)


@dataclass(frozen=True, slots=True)
class _ChainRefs:
    """What a checked chain needs from the rest of its ruleset."""

    jumps: tuple[Rule, ...]
    """Rules whose target must be a chain of the table."""
    sets: tuple[tuple[Rule, str, SetKind], ...]
    """(first rule naming it, set name, kind the set must have)."""


_CHECKED: IdentityMemo[tuple[Table, Family], _ChainRefs] = IdentityMemo()


def _checked_chain(chain: Chain, table: Table, family: Family) -> _ChainRefs:
    """Check a chain's rules on their own (memoised per chain object); return its references."""

    def compute() -> _ChainRefs:
        jumps: list[Rule] = []
        sets: dict[tuple[str, SetKind], Rule] = {}
        for rule in chain.rules:
            _check_rule_alone(rule, table, family)
            if isinstance(rule.action, Jump | Goto):
                jumps.append(rule)
            for ref in _set_refs(rule.match):
                sets.setdefault(ref, rule)
        return _ChainRefs(
            tuple(jumps), tuple((rule, name, kind) for (name, kind), rule in sets.items())
        )

    return _CHECKED.get(chain, (table, family), compute)


def check_chain_alone(chain: Chain, table: Table, family: Family) -> None:
    """Every check of the chain's rules that needs nothing outside the chain (calc runs it per
    policy, so that a policy the renderers would refuse is left out on its own)."""
    _checked_chain(chain, table, family)


def check_table(spec: TableSpec, family: Family) -> None:
    for name, chain in spec.chains.items():
        check_chain(name)
        if chain.name != name:
            raise DataplaneRenderError(f"chain {chain.name!r} is filed under {name!r}")
        for rule in _checked_chain(chain, spec.table, family).jumps:
            _check_target(rule, spec.table, spec.chains)
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


_CHECKED_TABLES: IdentityMemo[Family, tuple[tuple[Rule, str, SetKind], ...]] = IdentityMemo()


def _checked_table(spec: TableSpec, family: Family) -> tuple[tuple[Rule, str, SetKind], ...]:
    """`check_table` once per table object; the table's set references, each once."""

    def compute() -> tuple[tuple[Rule, str, SetKind], ...]:
        check_table(spec, family)
        refs: dict[tuple[str, SetKind], Rule] = {}
        for chain in spec.chains.values():
            for rule, name, kind in _checked_chain(chain, spec.table, family).sets:
                refs.setdefault((name, kind), rule)
        for hook in spec.hooks:
            for ref in _set_refs(hook.rule.match):
                refs.setdefault(ref, hook.rule)
        return tuple((rule, name, kind) for (name, kind), rule in refs.items())

    return _CHECKED_TABLES.get(spec, family, compute)


def check_ruleset(ruleset: Ruleset) -> None:
    family = ruleset.family
    for table, spec in ruleset.tables.items():
        if spec.table is not table:
            raise DataplaneRenderError(f"table {spec.table.value} filed under {table.value}")
        for rule, name, kind in _checked_table(spec, family):
            _check_set_ref(rule, name, kind, ruleset.sets)
    for name, ipset in ruleset.sets.items():
        check_set_name(name)
        if ipset.name != name:
            raise DataplaneRenderError(f"IP set {ipset.name!r} is filed under {name!r}")
        normalise_members(ipset.kind, ipset.members, family)


# ---------------------------------------------------------------------------------------------
# Set members, normalised so that desired and read-back sets compare equal.

_SET_PORT_PROTOCOLS = frozenset({"tcp", "udp", "sctp"})


def _port_member(member: str) -> str:
    """A port number in its plain decimal form."""
    text = member.strip()
    if _PORT_RE.fullmatch(text) is None or int(text) > 65535:
        raise DataplaneRenderError(f"invalid port set member {member!r}")
    return text


def _slow_member(kind: SetKind, member: str, family: Family) -> str:
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


# Fast paths for the forms calc writes and the kernel prints (`10.0.0.0/24`, `fd00::1`,
# `10.0.0.1,tcp:80`). They parse with integer arithmetic instead of `ipaddress` objects, which
# cost ~10 µs per member; anything unusual (leading zeros, upper case, IPv4-mapped IPv6, netmask
# notation, a bad value) returns None and goes the `ipaddress` way, which also raises the errors.
_V4_RE = re.compile(
    r"(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})"
)
_V6_RE = re.compile(r"[0-9a-f:]{2,39}")
_PLEN_RE = re.compile(r"0|[1-9][0-9]{0,2}")
_PORT_RE = re.compile(r"0|[1-9][0-9]{0,4}")
_BITS = {Family.V4: 32, Family.V6: 128}


def _fast_addr(text: str) -> tuple[int, int] | None:
    """(IP version, integer value) of a plainly written address, else None."""
    if ":" in text:
        if _V6_RE.fullmatch(text) is None:
            return None
        try:
            value = int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
        except OSError:
            return None
        if value >> 32 == 0xFFFF:
            return None  # IPv4-mapped: its spelling differs between Python versions
        return 6, value
    found = _V4_RE.fullmatch(text)
    if found is None:
        return None
    a, b, c, d = (int(part) for part in found.groups())
    if a > 255 or b > 255 or c > 255 or d > 255:
        return None
    return 4, (a << 24) | (b << 16) | (c << 8) | d


def _addr_text(version: int, value: int) -> str:
    """What `str(ipaddress.ip_address(value))` prints (RFC 5952 for IPv6), without the object."""
    if version == 4:
        return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"
    if (value >> 32) != 0:
        # glibc's inet_ntop writes RFC 5952 text like ipaddress does, except for the embedded
        # IPv4 forms (::/96 and ::ffff:0:0/96, never passed here).
        return socket.inet_ntop(socket.AF_INET6, value.to_bytes(16, "big"))
    hextets = [(value >> shift) & 0xFFFF for shift in range(112, -16, -16)]
    best_start, best_len, run_start = -1, 0, -1
    for i, hextet in enumerate(hextets):
        if hextet:
            run_start = -1
            continue
        if run_start < 0:
            run_start = i
        if i - run_start + 1 > best_len:
            best_start, best_len = run_start, i - run_start + 1
    parts = [f"{hextet:x}" for hextet in hextets]
    if best_len > 1:
        end = best_start + best_len
        parts[best_start:end] = [""]
        if best_start == 0:
            parts.insert(0, "")
        if end == 8:
            parts.append("")
    return ":".join(parts)


def _fast_net(text: str, family: Family) -> tuple[int, int, str] | None:
    """(network start, prefix length, normal text) of a plainly written CIDR, else None."""
    addr, slash, plen_text = text.partition("/")
    v4 = family is Family.V4
    if not v4 and (_V6_RE.fullmatch(addr) is None):
        return None
    try:
        # inet_pton is as strict as ipaddress for these character sets (no leading zeros in
        # IPv4, at most 4 hex digits a group), and runs in C.
        value = int.from_bytes(socket.inet_pton(socket.AF_INET if v4 else socket.AF_INET6, addr))
    except OSError:
        return None
    if not v4 and value >> 32 == 0xFFFF:
        return None
    bits = 32 if v4 else 128
    if slash:
        if _PLEN_RE.fullmatch(plen_text) is None:
            return None
        plen = int(plen_text)
        if plen > bits:
            return None
    else:
        plen = bits
    start = value >> (bits - plen) << (bits - plen)
    if v4 and slash and start == value:
        return start, plen, text  # already the normal form
    return start, plen, f"{_addr_text(4 if v4 else 6, start)}/{plen}"


def net_bounds(member: str, family: Family) -> tuple[int, int]:
    """First and last address (as integers) of a CIDR member of a `family` set."""
    net = _fast_net(member, family)
    if net is not None:
        start, plen, _ = net
        return start, start + (1 << (_BITS[family] - plen)) - 1
    parsed = ipaddress.ip_network(check_net(member, family))
    return int(parsed.network_address), int(parsed.broadcast_address)


def _fast_ip_port(member: str, family: Family) -> str | None:
    addr_text, _, rest = member.rpartition(",")
    proto, _, port_text = rest.partition(":")
    if (
        proto not in _SET_PORT_PROTOCOLS
        or _PORT_RE.fullmatch(port_text) is None
        or int(port_text) > 65535
    ):
        return None
    if family is Family.V4:
        # Dotted decimal that passes the strict pattern is already ipaddress' spelling.
        parsed = _fast_addr(addr_text)
        return member if parsed is not None and parsed[0] == 4 else None
    parsed = _fast_addr(addr_text)
    if parsed is None or parsed[0] != family:
        return None
    return f"{_addr_text(*parsed)},{proto}:{port_text}"


def normalise_member(kind: SetKind, member: str, family: Family) -> str:
    """`net`: `addr/len` with host bits cleared; `ip,port`: `addr,proto:port`; `port`: the
    number."""
    if kind is SetKind.NET:
        net = _fast_net(member, family)
        return net[2] if net is not None else check_net(member, family)
    if kind is SetKind.PORT:
        return _port_member(member)
    fast = _fast_ip_port(member, family)
    return fast if fast is not None else _slow_member(kind, member, family)


def _collapse_slow(normal: Iterable[str]) -> frozenset[str]:
    nets = [ipaddress.ip_network(text) for text in normal]
    v4 = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in nets if isinstance(n, ipaddress.IPv6Network)]
    collapsed = [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]
    return frozenset(str(net) for net in collapsed)


_UNSPECIFIED = {Family.V4: "0.0.0.0,", Family.V6: "::,"}
"""ipset's hash:ip,port refuses the unspecified address (a named port on it, from a host endpoint
listing 0.0.0.0 or :: as expected IP, names no connection's endpoint): such members are left out
of both backends' sets alike."""

_CATCH_ALL = {Family.V4: "0.0.0.0/0", Family.V6: "::/0"}
_CATCH_ALL_HALVES = {Family.V4: ("0.0.0.0/1", "128.0.0.0/1"), Family.V6: ("::/1", "8000::/1")}
"""ipset's hash:net refuses a zero prefix length, so the whole address space is written as its
two halves (as Calico does); nft takes either, and both read back the same."""


def _normalise_nets(members: Iterable[str], family: Family) -> tuple[frozenset[str], list[str]]:
    """(normal members, the same in address order)."""
    normal, ordered = _collapse_nets(members, family)
    if _CATCH_ALL[family] in normal:
        # Collapsed, a catch-all is the only member left.
        halves = _CATCH_ALL_HALVES[family]
        return frozenset(halves), list(halves)
    return normal, ordered


def _collapse_nets(members: Iterable[str], family: Family) -> tuple[frozenset[str], list[str]]:
    parsed: list[tuple[int, int, str]] = []
    for member in members:
        net = _fast_net(member, family)
        if net is None:
            normal = _collapse_slow(normalise_member(SetKind.NET, m, family) for m in members)
            return normal, sorted_members(SetKind.NET, normal)
        parsed.append(net)
    # collapse_addresses only changes a set that has overlapping networks or two sibling halves
    # of a larger block (any collapsible group contains such a pair); both show up between
    # neighbours in address order, so one scan decides whether the slow path is needed.
    parsed.sort()
    bits = _BITS[family]
    prev_start, prev_len, prev_end = -1, -1, -1
    for start, plen, _ in parsed:
        size = 1 << (bits - plen)
        if start <= prev_end or (
            plen == prev_len and prev_start + size == start and prev_start % (2 * size) == 0
        ):
            normal = _collapse_slow(text for _, _, text in parsed)
            return normal, sorted_members(SetKind.NET, normal)
        prev_start, prev_len, prev_end = start, plen, max(prev_end, start + size - 1)
    # Disjoint networks: distinct starts, so this is `sorted_members` order already.
    ordered = [text for _, _, text in parsed]
    return frozenset(ordered), ordered


def _normalise(
    kind: SetKind, members: Iterable[str], family: Family
) -> tuple[frozenset[str], tuple[str, ...]]:
    if kind is SetKind.PORT:
        normal = frozenset(_port_member(member) for member in members)
        return normal, tuple(sorted_members(kind, normal))
    if kind is SetKind.IP_PORT:
        unspecified = _UNSPECIFIED[family]
        normal = frozenset(
            member
            for member in (normalise_member(kind, m, family) for m in members)
            if not member.startswith(unspecified)
        )
        return normal, tuple(sorted_members(kind, normal))
    normal, ordered = _normalise_nets(members, family)
    return normal, tuple(ordered)


_normalise_frozen = functools.lru_cache(maxsize=1 << 13)(_normalise)
"""Sets are frozensets in the IR (their hash is cached by CPython), so an unchanged set costs
one dictionary lookup per render instead of a pass over its members."""


def normalise_members(kind: SetKind, members: Iterable[str], family: Family) -> frozenset[str]:
    """Normalised members; CIDRs are also collapsed (no overlaps: nft interval sets refuse them)."""
    if isinstance(members, frozenset):
        return _normalise_frozen(kind, members, family)[0]
    return _normalise(kind, list(members), family)[0]


def _sort_key(member: str) -> tuple[int, int, str]:
    addr = member.split(",", maxsplit=1)[0].split("/", maxsplit=1)[0]
    fast = _fast_addr(addr)
    if fast is not None:
        return (fast[0], fast[1], member)
    parsed = ipaddress.ip_address(addr)
    return (parsed.version, int(parsed), member)


def sorted_members(kind: SetKind, members: Iterable[str]) -> list[str]:
    """A stable order for printing (addresses, or ports, numerically)."""
    if kind is SetKind.PORT:
        return sorted(members, key=int)
    return sorted(members, key=_sort_key)


def sorted_normal_members(
    kind: SetKind, members: frozenset[str], family: Family
) -> tuple[str, ...]:
    """`sorted_members(kind, normalise_members(kind, members, family))`, memoised per set."""
    return _normalise_frozen(kind, members, family)[1]


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


_HOOKS: IdentityMemo[None, dict[str, tuple[tuple[Rule, ...], tuple[Rule, ...]]]] = IdentityMemo()


def desired_hooks(spec: TableSpec) -> dict[str, tuple[tuple[Rule, ...], tuple[Rule, ...]]]:
    """kernel chain → (expanded inserts, expanded appends)."""
    return dict(_HOOKS.get(spec, None, lambda: _desired_hooks(spec)))


def _desired_hooks(spec: TableSpec) -> dict[str, tuple[tuple[Rule, ...], tuple[Rule, ...]]]:
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
        state = have.get(name)
        if state is None:
            new.append(name)
        elif state is not chain_state(chain, name) and (
            state.hashes != chain_kernel_rules(chain, name).hashes
        ):
            changed.append(name)
    obsolete = sorted(
        name
        for name in (current.felis_chains() if current is not None else ())
        if name not in spec.chains
    )
    return new, changed, obsolete


_CHAIN_STATE: IdentityMemo[str, ChainState] = IdentityMemo()


def chain_state(chain: Chain, name: str | None = None) -> ChainState:
    """The state a felis chain has once written (rules with hashes, no text), memoised per chain
    object: the kernel layer's remembered state reuses these objects, so comparing an unchanged
    chain with it is an identity check."""
    name = chain.name if name is None else name
    return _CHAIN_STATE.get(
        chain,
        name,
        lambda: ChainState(
            name, tuple(KernelRule(hash=h) for h in chain_kernel_rules(chain, name).hashes)
        ),
    )


def set_kind_conflicts(desired: Mapping[str, IpSet], current: Mapping[str, SetState]) -> None:
    for name, ipset in desired.items():
        have = current.get(name)
        if have is not None and have.kind is not ipset.kind:
            raise DataplaneRenderError(
                f"IP set {name!r} exists in the kernel as {have.kind.value} but is wanted as "
                f"{ipset.kind.value}; remove felis' dataplane state (felis cleanup) and retry"
            )


for _cached in (
    check_iface,
    check_chain,
    check_set_name,
    check_comment,
    check_log_prefix,
    check_net,
    _canonical_match,
    _canonical_action,
    _check_match,
    _normalise_frozen,
):
    register_memo(_cached.cache_clear)
