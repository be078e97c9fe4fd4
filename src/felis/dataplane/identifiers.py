"""Identifier checks: everything that reaches a command line or an nft file passes one of these.

They are pure and the same few hundred names recur in every render, so valid names are remembered
(a refused name raises, and is therefore never cached). These are the only module-level memos of
the dataplane (everything else lives in each dataplane's `memo.RenderCache`), and may be: each
maps a short string (and a family) to a verdict about that string alone, the same for every spec
and every dataplane, so sharing it cannot leak one owner's state into another's; they hold only
strings, never an IR object or an object identity, and are bounded. calc runs the same checks.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping

from felis.dataplane.spec import (
    CHAIN_PREFIX,
    MAX_CHAIN_NAME,
    MAX_IPSET_NAME,
    Family,
    Table,
)
from felis.errors import FelisError
from felis.model.constants import PROTOCOL_NAMES

MAX_LOG_PREFIX = 29
"""iptables' LOG target limit (nft allows more; one limit keeps both identical)."""

KERNEL_CHAINS: Mapping[Table, tuple[str, ...]] = {
    Table.RAW: ("PREROUTING", "OUTPUT"),
    Table.MANGLE: ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    Table.FILTER: ("INPUT", "FORWARD", "OUTPUT"),
}
"""Kernel chains a hook may name, per table."""


class DataplaneRenderError(FelisError):
    """The IR (or a kernel dump) holds something the renderers refuse to put on a command line."""


_CHECK_CACHE = 1 << 16
"""Bound of each check's module-level memo (why these may be module-level: the module docstring;
check_net's key also holds the family, an enum member)."""

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
