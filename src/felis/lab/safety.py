"""Which addresses lab traffic may go to.

The lab only talks to the benchmark range (RFC 2544, 198.18.0.0/15) inside its own namespaces, or
to loopback. The load generator checks this too (in C); checking here as well means a bad address
is refused before any process starts.
"""

from __future__ import annotations

import ipaddress

from felis.lab.errors import LabError

LAB_NETWORKS = (
    ipaddress.IPv4Network("198.18.0.0/15"),
    ipaddress.IPv4Network("127.0.0.0/8"),
)


def is_lab_address(address: str) -> bool:
    """True when `address` is an IPv4 address inside 198.18.0.0/15 or 127.0.0.0/8."""
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        return False
    return any(ip in net for net in LAB_NETWORKS)


def require_lab_address(address: str, what: str = "destination") -> str:
    """Return `address` unchanged, or raise LabError when it is outside the lab ranges."""
    if not is_lab_address(address):
        raise LabError(
            f"refusing {what} {address!r}: lab traffic may only go to 198.18.0.0/15 or 127.0.0.0/8"
        )
    return address
