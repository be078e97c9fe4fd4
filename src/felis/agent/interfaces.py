"""The host's interfaces and addresses, read over netlink (pyroute2), for HEP resolution."""

from __future__ import annotations

from collections import defaultdict

from pyroute2 import IPRoute

from felis.calc import HostInterface


def read_interfaces() -> list[HostInterface]:
    """Every interface of the current network namespace with its addresses, sorted by name."""
    addresses: dict[int, list[str]] = defaultdict(list)
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for addr in ipr.get_addr():
            value = addr.get_attr("IFA_ADDRESS")
            if value:
                addresses[addr["index"]].append(str(value))
    return sorted(
        (
            HostInterface(name=str(name), addresses=tuple(addresses[index]))
            for index, name in names.items()
        ),
        key=lambda iface: iface.name,
    )
