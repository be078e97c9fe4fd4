"""Host endpoint resolution (§4.1) and the dispatch chains built from it (§5.8)."""

from __future__ import annotations

from calc_helpers import chain, chains, gnp, hep, run

from felis.calc import CalcConfig, HostInterface
from felis.calc.names import ANY_INTERFACE, FROM_HOST_PREFIX, endpoint_chain
from felis.dataplane.spec import Family, Table

ETH0 = HostInterface("eth0", ("10.0.0.1/24", "fe80::1/64"))
ETH1 = HostInterface("eth1", ("10.0.1.1/24",))
STAR_FH = endpoint_chain(FROM_HOST_PREFIX, ANY_INTERFACE)


def test_hep_by_name_only_when_interface_exists() -> None:
    result = run([hep("a", iface="eth0"), hep("b", iface="eth9")], [ETH0])
    assert result.spec.endpoints == ("a",)
    assert chain(result, Table.FILTER, "felis-from-host-endpoint") == [
        "in_iface=eth0 -> Goto(target='felis-fh-eth0')"
    ]
    assert "HostEndpoint b: interface eth9 not found; inactive" in result.warnings


def test_missing_interface_programs_nothing() -> None:
    result = run([hep("b", iface="eth9")], [ETH0])
    assert result.spec.endpoints == ()
    assert chain(result, Table.FILTER, "felis-from-host-endpoint") == []
    assert not [c for c in chains(result, Table.FILTER) if c.startswith("felis-fh-")]


def test_other_nodes_heps_are_not_local() -> None:
    result = run([hep("a", iface="eth0", node="elsewhere")], [ETH0])
    assert result.spec.endpoints == ()


def test_hep_by_expected_ip() -> None:
    result = run([hep("by-ip", ips=["10.0.1.1"])], [ETH0, ETH1])
    assert result.spec.endpoints == ("by-ip",)
    assert chain(result, Table.FILTER, "felis-to-host-endpoint") == [
        "out_iface=eth1 -> Goto(target='felis-th-eth1')"
    ]


def test_ip_hep_skipped_without_interface_view() -> None:
    result = run([hep("by-ip", ips=["10.0.1.1"]), hep("named", iface="eth3")], [])
    assert result.spec.endpoints == ()
    from felis.calc import compute

    blind = compute([hep("by-ip", ips=["10.0.1.1"]), hep("named", iface="eth3")], "node-1")
    assert blind.spec.endpoints == ("named",)


def test_first_by_name_wins_even_over_name_match() -> None:
    # "a-by-ip" matches eth0 by address, "b-by-name" by name: the first name wins.
    heps = [hep("b-by-name", iface="eth0"), hep("a-by-ip", ips=["10.0.0.1"])]
    result = run([*heps, gnp("p", selector="has(x)", ingress=[{"action": "Allow"}])], [ETH0])
    assert result.spec.endpoints == ("a-by-ip",)
    assert any("taken by a-by-ip" in w for w in result.warnings)


def test_star_hep_is_dispatch_default() -> None:
    heps = [hep("star-b", iface="*"), hep("star-a", iface="*"), hep("e0", iface="eth0")]
    result = run(heps, [ETH0, ETH1])
    assert result.spec.endpoints == ("e0", "star-a")
    assert chain(result, Table.FILTER, "felis-from-host-endpoint") == [
        "in_iface=eth0 -> Goto(target='felis-fh-eth0')",
        f"-> Goto(target='{STAR_FH}')",
    ]
    assert STAR_FH in chains(result, Table.FILTER)
    assert len(STAR_FH) <= 28
    # Mangle: egress default for DNAT'd traffic; no preDNAT policy so no PREROUTING hook and
    # no ingress dispatch at all.
    assert "felis-from-host-endpoint" not in chains(result, Table.MANGLE)
    assert chain(result, Table.MANGLE, "felis-to-host-endpoint")[-1].startswith(
        "-> Goto(target='felis-th-_"
    )
    assert any("star-b" in w for w in result.warnings)


def test_do_not_track_ignored_on_star_hep() -> None:
    policy = gnp("dnt", doNotTrack=True, applyOnForward=True, ingress=[{"action": "Allow"}])
    result = run([hep("star", iface="*"), policy], [ETH0])
    assert chain(result, Table.RAW, "felis-from-host-endpoint") == []
    assert "felis-pi-dnt" not in chains(result, Table.RAW)
    assert any("doNotTrack is not supported" in w and "dnt" in w for w in result.warnings)


def test_pre_dnat_on_star_hep() -> None:
    policy = gnp("pre", preDNAT=True, applyOnForward=True, ingress=[{"action": "Allow"}])
    result = run([hep("star", iface="*"), policy], [ETH0])
    assert chain(result, Table.MANGLE, "felis-from-host-endpoint") == [
        f"-> Goto(target='{STAR_FH}')"
    ]
    assert "felis-pi-pre" in chains(result, Table.MANGLE)


def test_interface_exclude() -> None:
    config = CalcConfig(interface_exclude=("eth0", "/^eth1$/"))
    result = run([hep("a", iface="eth0"), hep("b", iface="eth1")], [ETH0, ETH1], config)
    assert result.spec.endpoints == ()


def test_dispatch_prefix_tree() -> None:
    names = ["eth1234", "eth2333", "eth2444"]
    result = run([hep(n, iface=n) for n in names], [HostInterface(n) for n in names])
    assert chain(result, Table.FILTER, "felis-from-host-endpoint") == [
        "in_iface=eth1234 -> Goto(target='felis-fh-eth1234')",
        "in_iface=eth2+ -> Goto(target='felis-from-host-endpoint-2')",
    ]
    assert chain(result, Table.FILTER, "felis-from-host-endpoint-2") == [
        "in_iface=eth2333 -> Goto(target='felis-fh-eth2333')",
        "in_iface=eth2444 -> Goto(target='felis-fh-eth2444')",
    ]


def test_dispatch_tree_copies_star_default_into_children() -> None:
    ifaces = ["eth10", "eth11", "em1"]
    heps = [hep(n, iface=n) for n in ifaces] + [hep("star", iface="*")]
    result = run(heps, [HostInterface(n) for n in [*ifaces, "lo"]])
    root = chain(result, Table.FILTER, "felis-to-hep-forward")
    assert root[:2] == [
        "out_iface=em1 -> Goto(target='felis-thfw-em1')",
        "out_iface=et+ -> Goto(target='felis-to-hep-forward-t')",
    ]
    child = chain(result, Table.FILTER, "felis-to-hep-forward-t")
    assert child[:2] == [
        "out_iface=eth10 -> Goto(target='felis-thfw-eth10')",
        "out_iface=eth11 -> Goto(target='felis-thfw-eth11')",
    ]
    assert child[-1].startswith("-> Goto(target='felis-thfw-_")
    assert root[-1] == child[-1]


def test_both_families_get_endpoint_chains() -> None:
    result = run([hep("a", iface="eth0")], [ETH0])
    assert "felis-fh-eth0" in chains(result, Table.FILTER, Family.V6)
