"""The XDP program's map entries, as bytes, and the changes that turn one content into another.

Pure: no kernel. Layouts follow blocklist.c: an LPM key is a 32-bit prefix length in host byte
order followed by the address in network order; blocklist values and counter keys are 32-bit
entry ids; a failsafe key is (protocol, pad, port in host order).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

BLOCKLIST_V4 = "felis_bl4"
BLOCKLIST_V6 = "felis_bl6"
FAILSAFE = "felis_fs"
COUNTERS = "felis_cnt"
MAX_ENTRIES = 262144
"""As in blocklist.c; also the size of the counter array, so ids stay below it."""

_PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132}


def lpm_key(cidr: str) -> bytes:
    net = ipaddress.ip_network(cidr, strict=False)
    return struct.pack("=I", net.prefixlen) + net.network_address.packed


def lpm_cidr(key: bytes) -> str:
    (prefixlen,) = struct.unpack("=I", key[:4])
    address = ipaddress.ip_address(key[4:])
    return str(ipaddress.ip_network(f"{address}/{prefixlen}"))


def entry_id(value: int) -> bytes:
    return struct.pack("=I", value)


def read_id(value: bytes) -> int:
    (number,) = struct.unpack("=I", value[:4])
    return int(number)


def failsafe_key(protocol: str, port: int) -> bytes:
    return struct.pack("=BBH", _PROTOCOLS[protocol], 0, port)


def hex_words(data: bytes) -> list[str]:
    """bpftool's byte syntax: `hex 0a 00 …` as separate words."""
    return ["hex", *(f"{b:02x}" for b in data)]


@dataclass(frozen=True, slots=True)
class Blocklist:
    """What one interface's program should hold: blocked networks and failsafe ports."""

    networks: frozenset[str]
    """Masked CIDRs, both families."""
    failsafe: frozenset[tuple[str, int]]
    """(protocol, port) pairs that always pass, `tcp`/`udp`/`sctp`."""


def assign_ids(wanted: Iterable[str], current: Mapping[str, int]) -> dict[str, int]:
    """Stable entry ids: a network keeps its id (and so its counter) while it stays listed;
    new ones take the lowest free ids."""
    wanted = sorted(set(wanted))
    kept = {cidr: current[cidr] for cidr in wanted if cidr in current}
    used = set(kept.values())
    free = (i for i in range(MAX_ENTRIES) if i not in used)
    out = dict(kept)
    for cidr in wanted:
        if cidr not in out:
            try:
                out[cidr] = next(free)
            except StopIteration:
                raise ValueError(f"more than {MAX_ENTRIES} blocklist entries") from None
    return out
