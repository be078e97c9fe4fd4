"""Pure parsers for conntrack-tools output and a few /proc and `ip -j` formats.

Why conntrack-tools text and not pyroute2's netlink conntrack API: `conntrack -L -o extended`
works the same in any namespace through `ip netns exec`, and dumping a full table (262,144
entries) with the C tool and splitting lines is several times faster than decoding the same
number of netlink messages in pure Python. The format is stable and every field we use is
`key=value`, so the parser keys on names, not on column positions, and skips lines it does not
understand instead of failing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

FAMILIES = {"ipv4", "ipv6"}
# `conntrack -S` counters that mean something on current kernels (insert/found stay 0).
STAT_KEYS = ("drop", "early_drop", "insert_failed", "invalid", "error")


@dataclass(frozen=True)
class Entry:
    """One conntrack entry: original and reply tuples, state and flags."""

    family: str
    proto: str
    timeout: int | None
    state: str | None
    src: str
    dst: str
    sport: int | None
    dport: int | None
    reply_src: str | None = None
    reply_dst: str | None = None
    reply_sport: int | None = None
    reply_dport: int | None = None
    flags: frozenset[str] = field(default_factory=frozenset)

    @property
    def key(self) -> tuple[str, str, str, int | None, int | None]:
        """The original-direction tuple: identifies a flow across two dumps."""
        return (self.proto, self.src, self.dst, self.sport, self.dport)


def _port(value: str | None) -> int | None:
    if value is None or not value.isdigit():
        return None
    return int(value)


def parse_entry(line: str) -> Entry | None:
    """Parse one `conntrack -L` line (plain or `-o extended`); None when it is not an entry."""
    tokens = line.split()
    if not tokens:
        return None
    family = "ipv4"
    if tokens[0] in FAMILIES:
        if len(tokens) < 3:
            return None
        family, tokens = tokens[0], tokens[2:]
    if len(tokens) < 3 or not tokens[1].isdigit():
        return None
    proto = tokens[0]
    rest = tokens[2:]
    timeout: int | None = None
    if rest and rest[0].isdigit():
        timeout = int(rest[0])
        rest = rest[1:]
    state: str | None = None
    if rest and "=" not in rest[0] and not rest[0].startswith("["):
        state = rest[0]
        rest = rest[1:]
    orig: dict[str, str] = {}
    reply: dict[str, str] = {}
    flags: set[str] = set()
    for tok in rest:
        if tok.startswith("[") and tok.endswith("]"):
            flags.add(tok[1:-1])
            continue
        name, sep, value = tok.partition("=")
        if not sep:
            continue
        # The first src/dst/sport/dport belong to the original tuple, the second to the reply.
        target = orig if name not in orig else reply
        target.setdefault(name, value)
    if "src" not in orig or "dst" not in orig:
        return None
    return Entry(
        family=family,
        proto=proto,
        timeout=timeout,
        state=state,
        src=orig["src"],
        dst=orig["dst"],
        sport=_port(orig.get("sport")),
        dport=_port(orig.get("dport")),
        reply_src=reply.get("src"),
        reply_dst=reply.get("dst"),
        reply_sport=_port(reply.get("sport")),
        reply_dport=_port(reply.get("dport")),
        flags=frozenset(flags),
    )


def parse_entries(text: str) -> list[Entry]:
    """All entries of a `conntrack -L` dump; banner and unknown lines are skipped."""
    out = []
    for line in text.splitlines():
        entry = parse_entry(line)
        if entry is not None:
            out.append(entry)
    return out


def parse_stats(text: str) -> dict[str, int]:
    """`conntrack -S` summed over CPUs: every numeric `key=value` except `cpu`."""
    totals: dict[str, int] = {}
    for line in text.splitlines():
        for tok in line.split():
            name, sep, value = tok.partition("=")
            if sep and name != "cpu" and value.isdigit():
                totals[name] = totals.get(name, 0) + int(value)
    for key in STAT_KEYS:
        totals.setdefault(key, 0)
    return totals


def stats_delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """Counter increase between two `parse_stats` results (never negative)."""
    return {k: max(0, after.get(k, 0) - before.get(k, 0)) for k in after}


def parse_int(text: str, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError as exc:
        raise ValueError(f"{what}: expected a number, got {text.strip()[:40]!r}") from exc


@dataclass(frozen=True)
class Address:
    interface: str
    address: str


def parse_ip_addr_json(text: str) -> list[Address]:
    """Interface addresses from `ip -j addr show`."""
    data: Any = json.loads(text or "[]")
    out: list[Address] = []
    if not isinstance(data, list):
        return out
    for link in data:
        if not isinstance(link, dict):
            continue
        name = str(link.get("ifname", ""))
        for info in link.get("addr_info", []) or []:
            if isinstance(info, dict) and "local" in info:
                out.append(Address(interface=name, address=str(info["local"])))
    return out


def local_address_set(addresses: Iterable[Address]) -> frozenset[str]:
    return frozenset(a.address for a in addresses)
