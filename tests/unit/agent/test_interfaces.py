"""Reading the host's interfaces from `ip -j address show`."""

from __future__ import annotations

import json

import pytest

from felis.agent.interfaces import parse_ip_addresses, read_interfaces
from felis.calc import HostInterface
from felis.errors import FelisError

SAMPLE = [
    {"ifindex": 1, "ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1"}]},
    {
        "ifindex": 3,
        "ifname": "wg0",
        # Point-to-point: `address` is the peer, `local` is ours.
        "addr_info": [{"family": "inet", "local": "198.18.5.1", "address": "198.18.5.2"}],
    },
    {
        "ifindex": 2,
        "ifname": "eth0",
        "addr_info": [
            {"family": "inet", "local": "198.18.0.1", "prefixlen": 24},
            {"family": "inet6", "local": "fe80::1", "prefixlen": 64},
        ],
    },
    {"ifindex": 4, "ifname": "eth1"},
    {"ifindex": 5},
]


def test_addresses_are_the_hosts_own_sorted_by_interface() -> None:
    assert parse_ip_addresses(json.dumps(SAMPLE)) == [
        HostInterface("eth0", ("198.18.0.1", "fe80::1")),
        HostInterface("eth1", ()),
        HostInterface("lo", ("127.0.0.1",)),
        HostInterface("wg0", ("198.18.5.1",)),
    ]


@pytest.mark.parametrize("text", ["", "{", '{"ifname": "eth0"}'])
def test_unreadable_output_is_one_clear_error(text: str) -> None:
    with pytest.raises(FelisError, match="ip -j address show"):
        parse_ip_addresses(text)


def test_this_namespace_has_a_loopback() -> None:
    assert "lo" in [iface.name for iface in read_interfaces()]
