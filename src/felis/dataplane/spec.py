"""The backend-neutral dataplane IR: everything felis wants the kernel to hold, for one node.

calc produces it, the iptables and nftables renderers print it, the kernel layer diffs it against
what is programmed, and the tracer walks it. Every semantic decision (which chains exist, in what
order rules run, what a rule matches, which mark bit means what) is made once, while building this
structure; the renderers only translate syntax. That is what keeps the two backends identical and
the tracer honest.

Conventions
- One `Ruleset` per IP family. A rule that only makes sense for one family appears only there.
- Chain names are final kernel names for iptables (prefixed, at most 28 characters); the nftables
  renderer adds its per-table layer prefix (`raw-`, `mangle-`, `filter-`) because one nft table
  holds all three layers.
- Lists of alternatives inside one match field are ORed (any of the ports); negated lists mean
  none of them; distinct fields are ANDed. A list of addresses never appears inline: calc turns it
  into an `IpSet`, so packets meet one set lookup instead of a linear scan.
- Marks are (value, mask) pairs over the bits felis owns (`MarkBits`); nothing outside the mask is
  ever read or written.
- The IR is immutable, all the way down: the dataclasses are frozen, their sequences are tuples or
  frozensets, and their mappings are `FrozenDict`s. Constructors take ordinary dicts, lists and
  sets and freeze them (a copy, so the caller's dict can change afterwards without touching the
  spec). The renderers' caches key on IR objects' identity (`felis.dataplane.memo`), which is
  only sound because an object never changes after it is built.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import NoReturn, TypeVar

CHAIN_PREFIX = "felis-"
"""Prefix of every iptables chain felis owns (and of our nft table names)."""

NFT_TABLE = "felis"
"""Name of the nftables table felis owns in each family (`ip felis`, `ip6 felis`)."""

MAX_CHAIN_NAME = 28
"""iptables' chain-name limit; names are built to fit it so both backends use the same names."""

MAX_IPSET_NAME = 31

DEFAULT_MARK_MASK = 0x1F000000
"""Five bits above Calico's defaults (0x1b0000, WireGuard 0x200000) and kube-proxy's
0x4000/0x8000."""


K = TypeVar("K")
V = TypeVar("V")


class FrozenDict(dict[K, V]):
    """A dict that refuses every change once built: the mappings of the IR.

    A dict subclass rather than a `types.MappingProxyType`, for two reasons: lookups and iteration
    stay at dict speed (the renderers walk these mappings for every render), and `freeze` can tell
    a mapping that is already frozen from a proxy over a dict someone else may still change, so
    an unchanged mapping is passed on as the same object instead of being copied. Equality is a
    dict's (a `FrozenDict` equals a dict with the same items); like a dict it is not hashable.
    """

    __slots__ = ()

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(f"{type(self).__name__} is read-only (the dataplane IR never changes)")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self) -> tuple[type[FrozenDict[K, V]], tuple[dict[K, V]]]:
        # The default reduction of a dict subclass refills the object item by item.
        return (type(self), (dict(self),))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict.__repr__(self)})"


def freeze(mapping: Mapping[K, V]) -> FrozenDict[K, V]:
    """`mapping` itself when it is already frozen, else a frozen copy of it."""
    return mapping if type(mapping) is FrozenDict else FrozenDict(mapping)


def _set_frozen(obj: object, name: str, value: object) -> None:
    # The one way to finish building a frozen dataclass in __post_init__.
    object.__setattr__(obj, name, value)


class Family(IntEnum):
    V4 = 4
    V6 = 6


class Table(StrEnum):
    RAW = "raw"
    MANGLE = "mangle"
    FILTER = "filter"


TABLE_ORDER: tuple[Table, ...] = (Table.RAW, Table.MANGLE, Table.FILTER)


class CtState(StrEnum):
    NEW = "new"
    ESTABLISHED = "established"
    RELATED = "related"
    INVALID = "invalid"
    UNTRACKED = "untracked"


class SetKind(StrEnum):
    NET = "net"
    """Members are CIDRs (hash:net / ipv4_addr interval)."""
    IP_PORT = "ip,port"
    """Members are `ip,proto:port` (hash:ip,port / addr . inet_proto . inet_service)."""
    PORT = "port"
    """Members are port numbers (bitmap:port / inet_service): the local ports of many untracked
    Allows that share a protocol and a remote address condition, in one lookup."""


@dataclass(frozen=True, slots=True)
class PortRange:
    first: int
    last: int

    def __post_init__(self) -> None:
        if not 0 <= self.first <= self.last <= 65535:
            raise ValueError(f"bad port range {self.first}:{self.last}")

    @property
    def slots(self) -> int:
        """iptables multiport cost: a single port takes one slot, a range two."""
        return 1 if self.first == self.last else 2

    def contains(self, port: int) -> bool:
        return self.first <= port <= self.last

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}:{self.last}"


@dataclass(frozen=True, slots=True)
class IcmpMatch:
    type: int
    code: int | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """Everything a rule can test. Unset fields match every packet."""

    protocol: int | None = None
    not_protocol: int | None = None
    src_net: str | None = None
    not_src_net: str | None = None
    dst_net: str | None = None
    not_dst_net: str | None = None
    src_sets: tuple[str, ...] = ()
    """Source address must be in every listed set (set names as in `Ruleset.sets`)."""
    not_src_sets: tuple[str, ...] = ()
    dst_sets: tuple[str, ...] = ()
    not_dst_sets: tuple[str, ...] = ()
    src_ports: tuple[PortRange, ...] = ()
    """Source port in any of these (only with protocol TCP, UDP or SCTP)."""
    not_src_ports: tuple[PortRange, ...] = ()
    dst_ports: tuple[PortRange, ...] = ()
    not_dst_ports: tuple[PortRange, ...] = ()
    src_port_set: str | None = None
    """(source address, protocol, source port) is in this ip,port set (a named port)."""
    dst_port_set: str | None = None
    not_src_port_sets: tuple[str, ...] = ()
    not_dst_port_sets: tuple[str, ...] = ()
    icmp: IcmpMatch | None = None
    not_icmp: IcmpMatch | None = None
    in_iface: str | None = None
    """Input interface; a trailing `+` matches every name with that prefix."""
    out_iface: str | None = None
    mark_set: int = 0
    """Every one of these mark bits is set."""
    mark_clear: int = 0
    """Every one of these mark bits is clear."""
    ct_states: frozenset[CtState] = frozenset()
    """The packet's conntrack state is one of these."""
    ct_dnat: bool | None = None
    """True: the packet's connection was DNAT'd. False: it was not (untracked packets included)."""
    src_port_in_set: str | None = None
    """Source port is in this port set (only with protocol TCP, UDP or SCTP)."""
    dst_port_in_set: str | None = None
    """Destination port is in this port set (only with protocol TCP, UDP or SCTP)."""

    def is_empty(self) -> bool:
        return self == _EMPTY_MATCH


_EMPTY_MATCH = Match()


@dataclass(frozen=True, slots=True)
class Accept:
    pass


@dataclass(frozen=True, slots=True)
class Drop:
    pass


@dataclass(frozen=True, slots=True)
class Return:
    pass


@dataclass(frozen=True, slots=True)
class Jump:
    target: str


@dataclass(frozen=True, slots=True)
class Goto:
    target: str


@dataclass(frozen=True, slots=True)
class SetMark:
    """mark = (mark & ~mask) | value."""

    value: int
    mask: int


@dataclass(frozen=True, slots=True)
class NoTrack:
    """Exempt the packet from connection tracking (raw table only); not a verdict."""


@dataclass(frozen=True, slots=True)
class Log:
    prefix: str


Action = Accept | Drop | Return | Jump | Goto | SetMark | NoTrack | Log
TERMINAL_ACTIONS = (Accept, Drop, Return, Goto)

_BARE_ACTION_WORDS: Mapping[type, str] = FrozenDict(
    {Accept: "accept", Drop: "drop", Return: "return", NoTrack: "notrack"}
)


def bare_action_word(action: Action | None) -> str | None:
    """The one word naming an action without arguments ("accept", "drop", "return",
    "notrack"), None for the others; each renderer spells that word its own way."""
    return _BARE_ACTION_WORDS.get(type(action))


@dataclass(frozen=True, slots=True)
class Rule:
    match: Match = _EMPTY_MATCH
    action: Action | None = None
    """None: a comment-only rule (an empty policy direction still gets one, for counters)."""
    comment: str = ""
    """Where the rule comes from, e.g. `gnp/memcached-server ingress rule 0`. Kept short and in
    the character set both backends accept (see `safe_comment`)."""


@dataclass(frozen=True, slots=True)
class Chain:
    name: str
    rules: tuple[Rule, ...] = ()

    def __post_init__(self) -> None:
        if type(self.rules) is not tuple:
            _set_frozen(self, "rules", tuple(self.rules))

    def targets(self) -> Iterator[str]:
        for rule in self.rules:
            if isinstance(rule.action, Jump | Goto):
                yield rule.action.target


class HookPosition(StrEnum):
    INSERT = "insert"
    """At the top of the kernel chain, ahead of anybody else's rules."""
    APPEND = "append"
    """At the end of the kernel chain."""


@dataclass(frozen=True, slots=True)
class Hook:
    """A rule felis owns inside a kernel (built-in) chain such as PREROUTING."""

    kernel_chain: str
    position: HookPosition
    rule: Rule


@dataclass(frozen=True, slots=True)
class TableSpec:
    table: Table
    chains: Mapping[str, Chain]
    hooks: tuple[Hook, ...] = ()

    def __post_init__(self) -> None:
        _set_frozen(self, "chains", freeze(self.chains))
        if type(self.hooks) is not tuple:
            _set_frozen(self, "hooks", tuple(self.hooks))

    def hooks_for(self, kernel_chain: str, position: HookPosition) -> tuple[Rule, ...]:
        return tuple(
            hook.rule
            for hook in self.hooks
            if hook.kernel_chain == kernel_chain and hook.position is position
        )

    @property
    def kernel_chains(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(hook.kernel_chain for hook in self.hooks))


EMPTY_TABLES: Mapping[Table, TableSpec] = FrozenDict({t: TableSpec(t, {}) for t in Table})
"""A table with no chains and no hooks, per table: what the renderers diff against where a
ruleset has none (the same object every time, so per-object memos do not fill with copies)."""


@dataclass(frozen=True, slots=True)
class IpSet:
    name: str
    """Kernel name, the same for ipset and nft (≤ 31 characters, family-specific)."""
    kind: SetKind
    members: frozenset[str]
    comment: str = ""
    """What the set stands for, e.g. the canonical selector."""

    def __post_init__(self) -> None:
        if type(self.members) is not frozenset:
            _set_frozen(self, "members", frozenset(self.members))


@dataclass(frozen=True, slots=True)
class Ruleset:
    family: Family
    tables: Mapping[Table, TableSpec]
    sets: Mapping[str, IpSet]

    def __post_init__(self) -> None:
        _set_frozen(self, "tables", freeze(self.tables))
        _set_frozen(self, "sets", freeze(self.sets))

    def table(self, table: Table) -> TableSpec:
        return self.tables[table]


@dataclass(frozen=True, slots=True)
class MarkBits:
    """The packet-mark bits felis uses, allocated lowest-first from a mask (Calico's scheme).

    The default mask keeps clear of Calico's default bits (0x1b0000 and WireGuard's 0x200000) and
    kube-proxy's 0x4000/0x8000, so felis and a real Calico can run on one host.
    """

    accept: int
    pass_: int
    drop: int
    scratch0: int
    scratch1: int

    @classmethod
    def from_mask(cls, mask: int = DEFAULT_MARK_MASK) -> MarkBits:
        bits = [1 << i for i in range(32) if mask & (1 << i)]
        if len(bits) < 5:
            raise ValueError(f"mark mask {mask:#x} needs at least 5 bits")
        return cls(*bits[:5])

    @property
    def all(self) -> int:
        """Bits cleared when a packet enters our top-level chains (drop is left as Calico does)."""
        return self.accept | self.pass_ | self.scratch0 | self.scratch1


@dataclass(frozen=True, slots=True)
class DataplaneSpec:
    node: str
    rulesets: Mapping[Family, Ruleset]
    endpoints: tuple[str, ...] = field(default=())
    """Names of the host endpoints active on this node, for logs and status."""

    def __post_init__(self) -> None:
        _set_frozen(self, "rulesets", freeze(self.rulesets))
        if type(self.endpoints) is not tuple:
            _set_frozen(self, "endpoints", tuple(self.endpoints))

    def ruleset(self, family: Family) -> Ruleset:
        return self.rulesets[family]


_COMMENT_SAFE = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_ @%+=:,./-[]"
)


def safe_comment(text: str, limit: int = 200) -> str:
    """A comment both iptables and nft accept unquoted-safe: odd characters become `_`."""
    return "".join(ch if ch in _COMMENT_SAFE else "_" for ch in text)[:limit]
