"""The XDP maps' byte layouts and entry ids (pure)."""

from __future__ import annotations

import pytest

from felis.xdp import maps


@pytest.mark.parametrize("cidr", ["198.18.0.0/24", "198.18.0.2/32", "2001:db8::/32", "::/0"])
def test_lpm_keys_round_trip(cidr: str) -> None:
    key = maps.lpm_key(cidr)
    assert len(key) == (8 if "." in cidr else 20)
    assert maps.lpm_cidr(key) == cidr


def test_lpm_key_layout_matches_the_program() -> None:
    # Prefix length in host order (little endian here), then the address in network order.
    assert maps.lpm_key("198.18.0.0/24") == bytes([24, 0, 0, 0, 198, 18, 0, 0])
    assert maps.lpm_key("198.18.0.7/24") == maps.lpm_key("198.18.0.0/24")


def test_failsafe_key_layout() -> None:
    assert maps.failsafe_key("tcp", 22) == bytes([6, 0, 22, 0])
    assert maps.failsafe_key("udp", 0x1234) == bytes([17, 0, 0x34, 0x12])


def test_entry_ids_are_stable_and_reuse_the_lowest_free() -> None:
    first = maps.assign_ids(["198.18.0.0/24", "198.18.1.0/24", "198.18.2.0/24"], {})
    assert sorted(first.values()) == [0, 1, 2]
    second = maps.assign_ids(["198.18.2.0/24", "198.18.9.0/24"], first)
    assert second["198.18.2.0/24"] == first["198.18.2.0/24"]
    assert second["198.18.9.0/24"] == min({0, 1, 2} - {first["198.18.2.0/24"]})


def test_bpftool_hex_words() -> None:
    assert maps.hex_words(b"\x00\xff") == ["hex", "00", "ff"]
