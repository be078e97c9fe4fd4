"""Single-value checks shared by the resource validators (docs/calico-semantics.md#validation).

Each function returns the reasons a value is invalid (empty when it is fine), worded after
Calico's and Kubernetes' messages, so callers can attach them to a field path.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import NamedTuple

from felis.selector import SelectorError

# Validation needs only the syntax check, not the compiled evaluator parse() builds.
from felis.selector.parser import parse_ast as _syntax_check

_NAME_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_NAME_SUBDOMAIN = _NAME_LABEL + r"(\." + _NAME_LABEL + r")*"

NAME_RE = re.compile(_NAME_SUBDOMAIN)
TIER_NAME_RE = re.compile(_NAME_LABEL)
GNP_NAME_RE = re.compile(r"(" + _NAME_LABEL + r"\.)?" + _NAME_LABEL)
INTERFACE_RE = re.compile(r"[a-zA-Z0-9_.-]{1,15}")
_QUALIFIED_NAME_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_IANA_NAME = re.compile(r"[-a-z0-9]+")
_HAS_LETTER = re.compile(r"[a-z]")

DNS1123_SUBDOMAIN_MAX = 253
DNS1123_LABEL_MAX = 63
LABEL_VALUE_MAX = 63
IANA_NAME_MAX = 15
ANNOTATIONS_MAX_BYTES = 256 * 1024

_SUBDOMAIN_MSG = (
    "must be a lowercase RFC 1123 subdomain: lower case alphanumeric characters, '-' or '.', "
    "starting and ending with an alphanumeric character"
)
_QUALIFIED_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)


def _name_reasons(name: str, limit: int, pattern: re.Pattern[str], shape: str) -> list[str]:
    """The checks of a metadata.name: present, at most `limit` long, `pattern`."""
    if name == "":
        return ["name must be specified"]
    reasons = []
    if len(name) > limit:
        reasons.append(f"name is too long by {len(name) - limit} bytes")
    if not pattern.fullmatch(name):
        reasons.append(f"name must consist of {shape}")
    return reasons


def resource_name_reasons(name: str) -> list[str]:
    """Most kinds' names: a DNS-1123 subdomain, at most 253 characters."""
    return _name_reasons(
        name,
        DNS1123_SUBDOMAIN_MAX,
        NAME_RE,
        f"lower case alphanumeric characters, '-' or '.' (regex: {_NAME_SUBDOMAIN})",
    )


def policy_name_reasons(name: str) -> list[str]:
    """A GlobalNetworkPolicy's name: a DNS label, optionally with one dot."""
    return _name_reasons(
        name,
        DNS1123_SUBDOMAIN_MAX,
        GNP_NAME_RE,
        "lower case alphanumeric characters or '-', with at most one "
        f"'.' (regex: ({_NAME_LABEL}\\.)?{_NAME_LABEL})",
    )


def tier_name_reasons(name: str) -> list[str]:
    """A tier's name: a single DNS label of at most 63 characters."""
    return _name_reasons(
        name,
        DNS1123_LABEL_MAX,
        TIER_NAME_RE,
        f"lower case alphanumeric characters or '-' (regex: {_NAME_LABEL})",
    )


def is_valid_name(name: str) -> bool:
    """Calico's `name` field tag (used for node, profiles, tier and service references)."""
    return bool(NAME_RE.fullmatch(name))


def _subdomain_reasons(value: str) -> list[str]:
    reasons = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        reasons.append(f"must be no more than {DNS1123_SUBDOMAIN_MAX} characters")
    if not NAME_RE.fullmatch(value):
        reasons.append(_SUBDOMAIN_MSG)
    return reasons


@lru_cache(maxsize=4096)
def qualified_name_reasons(key: str) -> tuple[str, ...]:
    """Kubernetes' qualified-name rule for label and annotation keys."""
    parts = key.split("/")
    if len(parts) == 1:
        name = parts[0]
        reasons: list[str] = []
    elif len(parts) == 2:
        prefix, name = parts
        if prefix == "":
            reasons = ["prefix part must be non-empty"]
        else:
            reasons = ["prefix part " + r for r in _subdomain_reasons(prefix)]
    else:
        return (
            "a qualified name "
            + _QUALIFIED_MSG
            + ", with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
        )
    if name == "":
        reasons.append("name part must be non-empty")
    else:
        if len(name) > DNS1123_LABEL_MAX:
            reasons.append(f"name part must be no more than {DNS1123_LABEL_MAX} characters")
        if not _QUALIFIED_NAME_PART.fullmatch(name):
            reasons.append("name part " + _QUALIFIED_MSG)
    return tuple(reasons)


@lru_cache(maxsize=4096)
def label_value_reasons(value: str) -> tuple[str, ...]:
    """Kubernetes' label-value rule: empty, or at most 63 qualified-name characters."""
    reasons = []
    if len(value) > LABEL_VALUE_MAX:
        reasons.append(f"must be no more than {LABEL_VALUE_MAX} characters")
    if value and not _QUALIFIED_NAME_PART.fullmatch(value):
        reasons.append("a valid label value must be an empty string or " + _QUALIFIED_MSG)
    return tuple(reasons)


def port_name_reasons(name: str) -> list[str]:
    """Kubernetes IANA_SVC_NAME rule for named endpoint ports."""
    if name == "":
        return ["port name must be specified"]
    reasons = []
    if len(name) > IANA_NAME_MAX:
        reasons.append(f"must be no more than {IANA_NAME_MAX} characters")
    if not _IANA_NAME.fullmatch(name):
        reasons.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in name:
        reasons.append("must not contain consecutive hyphens")
    if not _HAS_LETTER.search(name):
        reasons.append("must contain at least one letter (a-z)")
    if name.startswith("-") or name.endswith("-"):
        reasons.append("must not begin or end with a hyphen")
    return reasons


def is_valid_interface(name: str) -> bool:
    return name == "*" or bool(INTERFACE_RE.fullmatch(name))


class Cidr(NamedTuple):
    """A parsed CIDR: its family, the masked network and whether the host bits were zero."""

    version: int
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    strictly_masked: bool


def _parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # Python accepts IPv6 scope ids ("fe80::1%eth0"); Go's parser does not.
    if "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@lru_cache(maxsize=8192)
def parse_cidr(text: str) -> Cidr | None:
    """Go's `net.ParseCIDR`: an address, `/`, and a decimal prefix length. None if invalid."""
    addr_text, slash, bits_text = text.partition("/")
    if not slash or not bits_text.isascii() or not bits_text.isdigit():
        return None
    # Go reads the prefix as decimal digits (leading zeros allowed) and never a netmask.
    bits_text = bits_text.lstrip("0") or "0"
    if len(bits_text) > 3:
        return None
    addr = _parse_address(addr_text)
    if addr is None:
        return None
    bits = int(bits_text)
    if bits > addr.max_prefixlen:
        return None
    network = ipaddress.ip_network((addr, bits), strict=False)
    return Cidr(addr.version, network, network.network_address == addr)


@lru_cache(maxsize=8192)
def parse_cidr_or_ip(text: str) -> Cidr | None:
    """Calico's `ParseCIDROrIP`: a CIDR, or a bare address taken as a full-length prefix."""
    if "/" in text:
        return parse_cidr(text)
    addr = _parse_address(text)
    if addr is None:
        return None
    network = ipaddress.ip_network((addr, addr.max_prefixlen))
    return Cidr(addr.version, network, True)


def is_valid_ip(text: str) -> bool:
    return _parse_address(text) is not None


@lru_cache(maxsize=8192)
def selector_reason(text: str) -> str | None:
    """None when the selector parses, otherwise the parser's message."""
    if not text:
        return None
    try:
        _syntax_check(text)
    except SelectorError as exc:
        message = str(exc)
        return message if message.startswith("invalid selector") else f"invalid selector: {message}"
    return None


_GLOBAL_ONLY = re.compile(r"global\([ \t]*\)")


def is_lone_global(text: str) -> bool:
    """True when a selector is exactly one `global()` token (the tokenizer skips space/TAB)."""
    return bool(_GLOBAL_ONLY.fullmatch(text.strip(" \t")))
