"""Port and ProtocolValue: Calico's int-or-string decoding and encoding (reference §1.5)."""

from __future__ import annotations

import pytest

from felis.model import Port, ProtocolValue


@pytest.mark.parametrize(
    ("raw", "port", "encoded"),
    [
        (80, Port(80, 80), 80),
        ("80", Port(80, 80), 80),
        ("0080", Port(80, 80), 80),
        ("1000:2000", Port(1000, 2000), "1000:2000"),
        ("5:5", Port(5, 5), 5),
        ("http", Port(0, 0, "http"), "http"),
        ("my_port.v2-x", Port(0, 0, "my_port.v2-x"), "my_port.v2-x"),
        (0, Port(0, 0), 0),
    ],
)
def test_port_decoding(raw: int | str, port: Port, encoded: int | str) -> None:
    assert Port.parse(raw) == port
    assert port.to_json() == encoded
    assert Port.parse(port.to_json()) == port


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            "200:100",
            "minimum port number (200) is greater than maximum port number (100) in port range",
        ),
        ("70000", "invalid port format (70000)"),
        ("70000:70001", "invalid minimum port number in range (70000:70001)"),
        ("1:70000", "invalid maximum port number in range (1:70000)"),
        ("a b", "invalid name for named port (a b)"),
        ("x" * 129, "invalid name for named port"),
        ("١٢", "invalid name for named port"),  # non-ASCII digits are not digits to Go
        (65536, "out of range"),
        (True, "integer or a string"),
        (None, "integer or a string"),
    ],
)
def test_port_errors(raw: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        Port.parse(raw)
    assert message in str(info.value)


def test_port_properties() -> None:
    assert Port.named("x").is_named and not Port.single(1).is_named
    assert Port.range(1, 2).is_range and not Port.single(1).is_range
    assert str(Port.range(1, 2)) == "1:2"


@pytest.mark.parametrize(
    ("raw", "value", "number", "ports"),
    [
        ("TCP", "TCP", 6, True),
        ("UDP", "UDP", 17, True),
        ("SCTP", "SCTP", 132, True),
        ("ICMP", "ICMP", 1, False),
        ("ICMPv6", "ICMPv6", 58, False),
        ("UDPLite", "UDPLite", 136, False),
        (6, 6, 6, True),
        ("17", 17, 17, True),
        ("132", 132, 132, True),
        (255, 255, 255, False),
        ("256", "256", None, False),
        ("tcp", "tcp", None, True),  # kept verbatim; validation rejects it
    ],
)
def test_protocol(raw: int | str, value: int | str, number: int | None, ports: bool) -> None:
    protocol = ProtocolValue.parse(raw)
    assert protocol.value == value
    assert protocol.number == number
    assert protocol.supports_ports is ports
    assert protocol.to_json() == value


def test_protocol_validity_and_range() -> None:
    assert ProtocolValue(0).invalid_reason() == "protocol number invalid"
    assert ProtocolValue("tcp").invalid_reason() == "protocol name invalid"
    assert ProtocolValue("TCP").invalid_reason() is None
    assert ProtocolValue(1).is_("ICMP") and ProtocolValue("ICMP").is_("ICMP")
    with pytest.raises(ValueError, match="out of range"):
        ProtocolValue.parse(256)
    with pytest.raises(ValueError, match="integer or a string"):
        ProtocolValue.parse(6.0)
