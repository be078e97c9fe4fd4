"""The host's interfaces and addresses, for HEP resolution.

Read with iproute2's JSON output (`ip -j address show`) rather than pyroute2: importing pyroute2
loads every netlink family it supports and took 0.85 s on the benchmark host, more than a
quarter of the agent's start-to-synced budget (docs/benchmarks.md), for one dump that `ip`
answers in a few milliseconds. iproute2 is installed wherever felis runs (it needs `ip` for
network namespaces).
"""

from __future__ import annotations

import json
from typing import Any

from felis.calc import HostInterface
from felis.errors import FelisError
from felis.sysexec import run


def parse_ip_addresses(text: str) -> list[HostInterface]:
    """`ip -j address show` → every interface with its own addresses, sorted by name."""
    try:
        links: Any = json.loads(text)
    except json.JSONDecodeError as err:
        raise FelisError(f"cannot read `ip -j address show` output: {err}") from None
    if not isinstance(links, list):
        raise FelisError("cannot read `ip -j address show` output: not a list of interfaces")
    found = []
    for link in links:
        name = link.get("ifname") if isinstance(link, dict) else None
        if not isinstance(name, str):
            continue
        addresses = tuple(
            str(info["local"])
            for info in link.get("addr_info", [])
            if isinstance(info, dict) and info.get("local")
        )
        found.append(HostInterface(name=name, addresses=addresses))
    return sorted(found, key=lambda iface: iface.name)


def read_interfaces() -> list[HostInterface]:
    """Every interface of the current network namespace with its addresses, sorted by name."""
    return parse_ip_addresses(run(["ip", "-j", "address", "show"], timeout=10).stdout)
