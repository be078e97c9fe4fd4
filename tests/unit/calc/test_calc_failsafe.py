"""Failsafe port configuration and rendering (§4.11)."""

from __future__ import annotations

import pytest
from calc_helpers import chain, gnp, hep, run

from felis.calc import (
    DEFAULT_FAILSAFE_INBOUND,
    DEFAULT_FAILSAFE_OUTBOUND,
    CalcConfig,
    FailsafeError,
    FailsafePort,
    parse_failsafe_ports,
)
from felis.dataplane.spec import Family, Table
from felis.errors import FelisError


def test_calico_defaults() -> None:
    assert [str(p) for p in DEFAULT_FAILSAFE_INBOUND] == [
        "tcp:22", "udp:68", "tcp:179", "tcp:2379", "tcp:2380",
        "tcp:5473", "tcp:6443", "tcp:6666", "tcp:6667",
    ]  # fmt: skip
    assert [str(p) for p in DEFAULT_FAILSAFE_OUTBOUND][:2] == ["udp:53", "udp:67"]
    assert len(DEFAULT_FAILSAFE_OUTBOUND) == 9


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("none", ()),
        ("", ()),
        ("[]", ()),
        ("22", (FailsafePort("tcp", 22),)),
        ("tcp:22, udp:68", (FailsafePort("tcp", 22), FailsafePort("udp", 68))),
        ("TCP:10.0.0.0/8:22", (FailsafePort("tcp", 22, "10.0.0.0/8"),)),
        ("tcp:10.0.0.5/8:22", (FailsafePort("tcp", 22, "10.0.0.0/8"),)),
        ("udp:[fd00::/8]:53", (FailsafePort("udp", 53, "fd00::/8"),)),
    ],
)
def test_parse(text: str, expected: tuple[FailsafePort, ...]) -> None:
    assert parse_failsafe_ports(text) == expected


@pytest.mark.parametrize(
    "text",
    ["icmp:22", "tcp:0", "tcp:70000", "tcp:x", "tcp:notanet:22", "tcp:22,,", "tcp:[fd00::/8"],
)
def test_parse_errors_are_one_line_felis_errors(text: str) -> None:
    with pytest.raises(FailsafeError) as info:
        parse_failsafe_ports(text)
    assert isinstance(info.value, FelisError)
    assert "\n" not in str(info.value)


def test_rendering_with_nets_per_family() -> None:
    config = CalcConfig(
        failsafe_inbound=parse_failsafe_ports("tcp:10.0.0.0/8:22, tcp:[fd00::/8]:22"),
        failsafe_outbound=parse_failsafe_ports("udp:53"),
    )
    result = run([hep("h", iface="eth0")], config=config)
    assert chain(result, Table.FILTER, "felis-failsafe-in") == [
        "protocol=6 src_net=10.0.0.0/8 dst_ports=(PortRange(first=22, last=22),) -> Accept() "
        "# failsafe in tcp:10.0.0.0/8:22"
    ]
    assert chain(result, Table.FILTER, "felis-failsafe-in", Family.V6) == [
        "protocol=6 src_net=fd00::/8 dst_ports=(PortRange(first=22, last=22),) -> Accept() "
        "# failsafe in tcp:[fd00::/8]:22"
    ]
    assert chain(result, Table.FILTER, "felis-failsafe-out") == [
        "protocol=17 dst_ports=(PortRange(first=53, last=53),) -> Accept() # failsafe out udp:53"
    ]


def test_raw_out_chain_allows_inbound_replies() -> None:
    config = CalcConfig(
        failsafe_inbound=parse_failsafe_ports("tcp:10.0.0.0/8:22"),
        failsafe_outbound=parse_failsafe_ports("none"),
    )
    policy = gnp("dnt", doNotTrack=True, applyOnForward=True, egress=[{"action": "Deny"}])
    result = run([hep("h", iface="eth0"), policy], config=config)
    assert chain(result, Table.RAW, "felis-failsafe-out") == [
        "protocol=6 dst_net=10.0.0.0/8 src_ports=(PortRange(first=22, last=22),) -> Accept() "
        "# failsafe in tcp:10.0.0.0/8:22 reply"
    ]
    # An untracked Deny consults failsafe before it drops; failsafe is also the end of the
    # walk when no untracked policy decided.
    assert chain(result, Table.RAW, "felis-po-dnt") == [
        "-> SetMark(value=67108864, mask=67108864) # gnp/dnt egress rule 0",
        "mark_set=67108864 -> Goto(target='felis-untracked-deny-out') # gnp/dnt egress rule 0",
    ]
    assert chain(result, Table.RAW, "felis-untracked-deny-out") == [
        "-> SetMark(value=0, mask=67108864)",
        "-> Jump(target='felis-failsafe-out') # Failsafe ports pass an untracked Deny",
        "-> Drop()",
    ]
    th = chain(result, Table.RAW, "felis-th-eth0")
    assert th[-1] == "-> Jump(target='felis-failsafe-out')"
    assert not any("felis-failsafe" in rule for rule in th[:-1])


def test_failsafe_before_any_policy_in_tracked_chains() -> None:
    policy = gnp("deny-all", ingress=[{"action": "Deny"}], egress=[{"action": "Deny"}])
    result = run([hep("h", iface="eth0"), policy])
    for name, failsafe in (("felis-fh-eth0", "in"), ("felis-th-eth0", "out")):
        rules = chain(result, Table.FILTER, name)
        first_policy = next(i for i, r in enumerate(rules) if "felis-p" in r)
        assert rules.index(f"-> Jump(target='felis-failsafe-{failsafe}')") < first_policy
