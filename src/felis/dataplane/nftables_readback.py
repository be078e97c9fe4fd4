"""nftables read-back: `nft -j list table ip|ip6 felis` parsed into the kernel-state shape both
backends share (`NftState`), which `nftables.render_delta` compares the wanted ruleset with."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from felis.dataplane.identifiers import DataplaneRenderError
from felis.dataplane.kernel_state import ChainState, KernelRule, SetState, TableState
from felis.dataplane.memo import RenderCache
from felis.dataplane.rule_identity import extract_hash
from felis.dataplane.set_members import normalise_members
from felis.dataplane.spec import NFT_TABLE, Family, IpSet, SetKind, Table

__all__ = [
    "NftState",
    "members_as_wanted",
    "nft_family",
    "parse_nft_json",
    "parse_nft_terse",
]

_LAYERS = {table.value: table for table in Table}


def nft_family(family: Family) -> str:
    return "ip" if family is Family.V4 else "ip6"


@dataclass(frozen=True, slots=True)
class NftState:
    """Our table as read back: layers in the shape of the iptables tables, plus sets."""

    exists: bool = False
    tables: Mapping[Table, TableState] = field(default_factory=dict)
    sets: Mapping[str, SetState] = field(default_factory=dict)
    stray_chains: tuple[str, ...] = ()
    """Chains of our table outside the `<layer>-<name>` scheme (deleted by the next delta)."""

    def counters(self) -> dict[tuple[Table, str, str], tuple[int, int]]:
        """(layer, chain, rule hash) → (packets, bytes), for every rule of ours with a counter."""
        out: dict[tuple[Table, str, str], tuple[int, int]] = {}
        for table, state in self.tables.items():
            for chain in state.chains.values():
                for rule in chain.rules:
                    if rule.hash is not None and rule.packets is not None:
                        out[(table, chain.name, rule.hash)] = (rule.packets, rule.bytes or 0)
        return out


def _element_values(raw: Any) -> list[Any]:
    if isinstance(raw, dict) and "elem" in raw:
        return _element_values(raw["elem"]["val"])
    return [raw]


def _net_members(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict) and "prefix" in value:
        return [f"{value['prefix']['addr']}/{value['prefix']['len']}"]
    if isinstance(value, dict) and "range" in value:
        first, last = (ipaddress.ip_address(v) for v in value["range"])
        if isinstance(first, ipaddress.IPv4Address) and isinstance(last, ipaddress.IPv4Address):
            return [str(n) for n in ipaddress.summarize_address_range(first, last)]
        if isinstance(first, ipaddress.IPv6Address) and isinstance(last, ipaddress.IPv6Address):
            return [str(n) for n in ipaddress.summarize_address_range(first, last)]
    raise DataplaneRenderError(f"nft set element {value!r} not understood")


def _port_members(value: Any) -> list[str]:
    if isinstance(value, dict) and "concat" in value and len(value["concat"]) == 3:
        addr, proto, port = value["concat"]
        return [f"{addr},{proto}:{port}"]
    raise DataplaneRenderError(f"nft ip,port set element {value!r} not understood")


def _set_state(
    obj: Mapping[str, Any], family: Family, cache: RenderCache | None
) -> SetState | None:
    settype = obj.get("type")
    if settype in ("ipv4_addr", "ipv6_addr"):
        kind = SetKind.NET
    elif (
        isinstance(settype, list)
        and len(settype) == 3
        and settype[1:]
        == [
            "inet_proto",
            "inet_service",
        ]
    ):
        kind = SetKind.IP_PORT
    elif settype == "inet_service":
        kind = SetKind.PORT
    else:
        return None
    members: list[str] = []
    for raw in obj.get("elem", ()):
        for value in _element_values(raw):
            if kind is SetKind.PORT:
                members.append(str(value))
            elif kind is SetKind.NET:
                members.extend(_net_members(value))
            else:
                members.extend(_port_members(value))
    # Normalised as a whole, like the desired members: nft may list adjacent elements merged.
    # By value through the cache: an unchanged set reads back as the same members every time,
    # and normalising 100,000 of them was most of a full drift check's CPU.
    normal = normalise_members(kind, frozenset(members), family, cache)
    return SetState(name=str(obj["name"]), kind=kind, family=family, members=normal)


def _rule_state(obj: Mapping[str, Any]) -> KernelRule:
    packets = nbytes = None
    for expr in obj.get("expr", ()):
        if isinstance(expr, dict) and "counter" in expr and isinstance(expr["counter"], dict):
            packets = int(expr["counter"].get("packets", 0))
            nbytes = int(expr["counter"].get("bytes", 0))
    comment = obj.get("comment")
    return KernelRule(
        hash=extract_hash(comment) if isinstance(comment, str) else None,
        handle=int(obj["handle"]) if "handle" in obj else None,
        packets=packets,
        bytes=nbytes,
    )


def parse_nft_json(text: str, family: Family, cache: RenderCache | None = None) -> NftState:
    """`nft -j list table ip|ip6 felis` → per layer {chain: rules with hashes, handles,
    counters} and our sets. Empty text (table absent) is an empty state. `cache` remembers
    normalised set members by value (a dataplane passes its own)."""
    if not text.strip():
        return NftState()
    try:
        items = json.loads(text)["nftables"]
    except (ValueError, KeyError, TypeError):
        raise DataplaneRenderError("nft -j output is not the expected JSON document") from None
    fam = nft_family(family)
    exists = False
    chains: dict[str, list[KernelRule]] = {}
    sets: dict[str, SetState] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        kind, obj = next(iter(item.items()))
        if not isinstance(obj, dict) or obj.get("family", fam) != fam:
            continue
        if obj.get("table", obj.get("name")) != NFT_TABLE and kind != "metainfo":
            continue
        if kind == "table":
            exists = True
        elif kind == "chain":
            chains.setdefault(str(obj["name"]), [])
        elif kind == "rule":
            chains.setdefault(str(obj["chain"]), []).append(_rule_state(obj))
        elif kind == "set":
            state = _set_state(obj, family, cache)
            if state is not None:
                sets[state.name] = state
    return _state(exists, chains, sets)


def _state(
    exists: bool, chains: Mapping[str, list[KernelRule]], sets: dict[str, SetState]
) -> NftState:
    layers: dict[Table, dict[str, ChainState]] = {}
    stray: list[str] = []
    for nft_name, rules in chains.items():
        layer, _, name = nft_name.partition("-")
        if layer in _LAYERS and name:
            layers.setdefault(_LAYERS[layer], {})[name] = ChainState(name, tuple(rules))
        else:
            stray.append(nft_name)
    return NftState(
        exists=exists or bool(chains),
        tables={t: TableState(table=t, chains=c) for t, c in layers.items()},
        sets=sets,
        stray_chains=tuple(sorted(stray)),
    )


_TERSE_TABLE = re.compile(r"table (\S+) (\S+) \{")
_TERSE_COMMENT = re.compile(r'comment "((?:[^"\\]|\\.)*)"$')
_TERSE_TYPES: Mapping[str, SetKind] = {
    "ipv4_addr": SetKind.NET,
    "ipv6_addr": SetKind.NET,
    "inet_service": SetKind.PORT,
    "ipv4_addr . inet_proto . inet_service": SetKind.IP_PORT,
    "ipv6_addr . inet_proto . inet_service": SetKind.IP_PORT,
}


def parse_nft_terse(text: str, family: Family) -> NftState:
    """`nft -t list ruleset` → our table of `family` as `parse_nft_json` reads it, without what
    the terse text does not carry: set members (none are listed), rule handles and counters.

    Cheaper than the JSON form of the same listing (a third of the size, and no document to
    decode); what the agent's quick drift check reads. A rule is one line of a chain's block;
    its hash comes from the `comment "…"` that ends it, as in the JSON form."""
    fam = nft_family(family)
    exists = False
    depth = 0
    ours = False
    block: tuple[str, str] | None = None
    chains: dict[str, list[KernelRule]] = {}
    sets: dict[str, SetState] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if depth == 0:
            table = _TERSE_TABLE.fullmatch(line)
            if table is not None:
                depth = 1
                ours = table[1] == fam and table[2] == NFT_TABLE
                exists = exists or ours
            continue
        if line == "}":
            depth -= 1
            if depth <= 1:
                block = None
            continue
        if line.endswith("{"):
            depth += 1
            if depth == 2:
                # `set NAME {`, `chain NAME {`, or another object of the table (`ct helper
                # NAME {`, `flowtable NAME {`): its kind first, its name last.
                words = line[:-1].split()
                block = (words[0], words[-1]) if len(words) >= 2 else None
                if ours and block is not None and block[0] == "chain":
                    chains.setdefault(block[1], [])
            continue
        if not ours or block is None or depth != 2:
            continue  # not ours, a table property, or inside a nested block
        kind, name = block
        if kind == "set" and line.startswith("type "):
            set_kind = _TERSE_TYPES.get(line[5:])
            if set_kind is not None:
                sets[name] = SetState(name=name, kind=set_kind, family=family, members=frozenset())
        elif kind == "chain" and not _chain_property(line):
            comment = _TERSE_COMMENT.search(line)
            rule_hash = extract_hash(comment[1]) if comment is not None else None
            chains[name].append(KernelRule(hash=rule_hash))
    return _state(exists, chains, sets)


def _chain_property(line: str) -> bool:
    """A line of a chain's block that is not a rule: its hook, policy, device or comment."""
    return (
        (line.startswith("type ") and " hook " in line)
        or line.startswith(("policy ", "devices ", "device "))
        or _TERSE_COMMENT.fullmatch(line) is not None
    )


def members_as_wanted(
    state: NftState, sets: Mapping[str, IpSet], cache: RenderCache | None = None
) -> NftState:
    """A terse read-back (`nft -t`: sets without elements) with every set that exists with the
    wanted type taken to hold the wanted members, so that a delta against it compares the rest
    of the table only. A set of another type is left as read: the delta refuses it, as it
    refuses it in a full read-back."""
    read = dict(state.sets)
    for name, have in state.sets.items():
        ipset = sets.get(name)
        if ipset is not None and have.kind is ipset.kind:
            members = normalise_members(ipset.kind, ipset.members, have.family, cache)
            read[name] = replace(have, members=members)
    return replace(state, sets=read)
