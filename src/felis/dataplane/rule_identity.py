"""Rule identity: canonical text, chained hashes, hash comments and rule expansion.

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
import hashlib
import operator
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from felis.dataplane.identifiers import DataplaneRenderError, check_comment
from felis.dataplane.memo import PerObject, PerValue, RenderCache, by_value, cache_or_new
from felis.dataplane.spec import (
    Action,
    Chain,
    Goto,
    HookPosition,
    IcmpMatch,
    Jump,
    Log,
    Match,
    PortRange,
    Rule,
    SetMark,
    bare_action_word,
)

HASH_PREFIX = "felis:"
HASH_LENGTH = 16
APPENDS_SUFFIX = "*appends*"
MAX_COMMENT = 128
"""nft keeps at most 128 bytes of rule comment; iptables takes 255. One limit for both."""
MAX_MULTIPORT_SLOTS = 15

HASH_RE = re.compile(r"felis:([A-Za-z0-9_-]{16})")


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


def canonical_match(match: Match, cache: RenderCache | None = None) -> str:
    """Non-default fields of the match in declaration order, `name=value` joined by spaces."""
    return by_value(cache, _CANONICAL_MATCH)(match)


def _canonical_match(match: Match) -> str:
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


_CANONICAL_MATCH = PerValue(_canonical_match, 1 << 16)
"""By value: a ruleset has far fewer distinct matches than rules (the mark and conntrack rules
recur in every chain), and a Match hashes faster than it prints."""


def canonical_action(action: Action | None, cache: RenderCache | None = None) -> str:
    return by_value(cache, _CANONICAL_ACTION)(action)


def _canonical_action(action: Action | None) -> str:
    if action is None:
        return "none"
    if word := bare_action_word(action):
        return word
    match action:
        case Jump(target=target):
            return f"jump {target}"
        case Goto(target=target):
            return f"goto {target}"
        case SetMark(value=value, mask=mask):
            return f"setmark {value:#x}/{mask:#x}"
        case Log(prefix=prefix):
            return f"log {prefix}"
    raise DataplaneRenderError(f"unknown action {action!r}")


_CANONICAL_ACTION = PerValue(_canonical_action, 1 << 12)


def canonical_rule(rule: Rule, cache: RenderCache | None = None) -> str:
    """The backend-independent text a rule's hash is computed over."""
    match_text = canonical_match(rule.match, cache)
    return f"{match_text} -> {canonical_action(rule.action, cache)} # {rule.comment}"


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


_HASH_BYTES = HASH_LENGTH * 3 // 4
"""16 base64 characters are exactly the first 12 bytes of the digest (no padding involved)."""


def chain_hashes(
    chain_name: str, rules: Sequence[Rule], cache: RenderCache | None = None
) -> tuple[str, ...]:
    """The hash of each (already expanded) rule of a chain, in order."""
    cache = cache_or_new(cache)  # the chain's own repeated matches are printed once
    match_text = cache.values(_CANONICAL_MATCH)
    action_text = cache.values(_CANONICAL_ACTION)
    sha224 = hashlib.sha224
    digest = sha224(chain_name.encode()).digest()
    out = []
    for rule in rules:
        text = f"{match_text(rule.match)} -> {action_text(rule.action)} # {rule.comment}"
        digest = sha224(digest + text.encode()).digest()
        out.append(_b64(digest[:_HASH_BYTES]))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ChainKernelRules:
    """An IR chain as kernel rules: the expanded rules and their hashes, in order."""

    rules: tuple[Rule, ...]
    hashes: tuple[str, ...]


_CHAIN_RULES: PerObject[str, ChainKernelRules] = PerObject()


def chain_kernel_rules(
    chain: Chain, seed: str | None = None, cache: RenderCache | None = None
) -> ChainKernelRules:
    """`expand_rules(chain.rules)` and their `chain_hashes` (seeded with the chain's name unless
    `seed` is given), memoised per chain object."""
    name = chain.name if seed is None else seed
    cache = cache_or_new(cache)
    return cache.objects(_CHAIN_RULES).get(chain, name, _kernel_rules, chain, name, cache)


def _kernel_rules(chain: Chain, name: str, cache: RenderCache) -> ChainKernelRules:
    rules = expand_rules(chain.rules)
    return ChainKernelRules(rules, chain_hashes(name, rules, cache))


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
