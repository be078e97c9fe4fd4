"""IP set members, normalised so that desired and read-back sets compare equal."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable

from felis.dataplane.identifiers import DataplaneRenderError, check_net
from felis.dataplane.memo import PerValue, RenderCache
from felis.dataplane.spec import (
    Family,
    SetKind,
)
from felis.model.constants import PORT_PROTOCOL_NUMBERS, PROTOCOL_NAMES


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
    if proto not in PORT_PROTOCOL_NUMBERS or not 0 <= port <= 65535 or addr.version != family:
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
        proto not in PORT_PROTOCOL_NUMBERS
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


_NORMALISED = PerValue(_normalise, 1 << 13)
"""By value: members are frozensets in the IR (CPython caches a frozenset's hash), so an unchanged
set costs one dictionary lookup per render instead of a pass over its members."""


def _normalised(
    kind: SetKind, members: Iterable[str], family: Family, cache: RenderCache | None
) -> tuple[frozenset[str], tuple[str, ...]]:
    if cache is not None and isinstance(members, frozenset):
        return cache.values(_NORMALISED)(kind, members, family)
    return _normalise(kind, members if isinstance(members, frozenset) else list(members), family)


def normalise_members(
    kind: SetKind, members: Iterable[str], family: Family, cache: RenderCache | None = None
) -> frozenset[str]:
    """Normalised members; CIDRs are also collapsed (no overlaps: nft interval sets refuse them)."""
    return _normalised(kind, members, family, cache)[0]


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
    kind: SetKind, members: Iterable[str], family: Family, cache: RenderCache | None = None
) -> tuple[str, ...]:
    """`sorted_members(kind, normalise_members(kind, members, family))`, memoised per set."""
    return _normalised(kind, members, family, cache)[1]
