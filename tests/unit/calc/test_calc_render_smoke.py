"""Specs built by calc are accepted by both renderers (names, comments, prefixes, set refs)."""

from __future__ import annotations

import re

import pytest
from calc_helpers import ETH0, gnp, gns, hep, run, tier

from felis.calc import CalcConfig, HostInterface, parse_failsafe_ports
from felis.dataplane import iptables, nftables
from felis.dataplane.spec import Family, Ruleset

RICH = [
    hep("e0", iface="eth0", labels={"role": "server"}, profiles=["projectcalico-default-allow"]),
    hep("e1", iface="eth1.100", labels={"role": "server"}),
    hep("by-ip", ips=["10.0.2.1"], labels={"role": "db"}),
    hep("star", iface="*", labels={"role": "any"}, profiles=["unknown-profile"]),
    hep(
        "remote",
        node="n2",
        ips=["10.9.0.1", "fd00::9"],
        labels={"role": "client"},
        ports=[{"name": "http", "protocol": "TCP", "port": 8080}],
    ),
    gns("blocked", ["192.0.2.7", "2001:db8::/48"], {"blocklist": "true"}),
    tier("security", order=10, action="Pass"),
    gnp(
        "blocklist",
        tier="security",
        doNotTrack=True,
        applyOnForward=True,
        ingress=[{"action": "Deny", "source": {"selector": "blocklist == 'true'"}}],
    ),
    gnp(
        "memcached",
        selector="role == 'server'",
        doNotTrack=True,
        applyOnForward=True,
        ingress=[
            {
                "action": "Allow",
                "protocol": "TCP",
                "source": {"selector": "role == 'client'"},
                "destination": {"ports": [11211, "http"]},
            }
        ],
        egress=[{"action": "Allow", "protocol": "TCP", "source": {"ports": [11211]}}],
    ),
    gnp("pre", preDNAT=True, applyOnForward=True, ingress=[{"action": "Pass"}]),
    gnp(
        "logs",
        applyOnForward=True,
        ingress=[
            {"action": "Log", "protocol": "ICMP", "icmp": {"type": 8}},
            {"action": "Log", "protocol": "ICMPv6", "icmp": {"type": 128, "code": 0}},
            {"action": "Allow", "source": {"nets": ["10.0.0.0/8", "172.16.0.0/12"]}},
            {"action": "Deny", "protocol": "UDP", "destination": {"notPorts": ["http", 53]}},
        ],
        egress=[{"action": "Pass", "destination": {"notNets": ["fd00::/8"]}}],
    ),
    gnp("same-a", selector="role == 'server'", ingress=[{"action": "Allow"}]),
    gnp("same-b", selector="role == 'server'", ingress=[{"action": "Allow"}]),
]
INTERFACES = [
    ETH0,
    HostInterface("eth1.100"),
    HostInterface("eth2", ("10.0.2.1/24",)),
    HostInterface("lo", ("127.0.0.1/8",)),
]
CONFIG = CalcConfig(
    failsafe_inbound=parse_failsafe_ports("tcp:22, tcp:10.0.0.0/8:2379, tcp:[fd00::/8]:2379"),
    log_prefix="felis %t %n",
)


def iptables_names(ruleset: Ruleset) -> tuple[set[str], set[str], set[str]]:
    """(chains as `table/chain`, sets created, sets matched) in the full iptables text."""
    plan = iptables.render_full(ruleset)
    chains = {
        f"{table.value}/{line[1:].split()[0]}"
        for table, text in plan.tables.items()
        for line in text.splitlines()
        if line.startswith(":")
    }
    created = {line.split()[1] for line in plan.ipset.splitlines() if line.startswith("create ")}
    return chains, created, set(re.findall(r"--match-set (\S+)", plan.restore))


def nftables_names(ruleset: Ruleset) -> tuple[set[str], set[str], set[str]]:
    """(our chains by nft name, sets added, sets looked up) in the full nft text."""
    text = nftables.render_full(ruleset)
    # Base chains carry their hook in braces on the same line; ours end with the name.
    chains = set(re.findall(r"^add chain \S+ felis (\S+)$", text, re.MULTILINE))
    created = set(re.findall(r"^add set \S+ felis (\S+) \{", text, re.MULTILINE))
    return chains, created, set(re.findall(r"@(\S+)", text))


def expected_chains(backend: str, ruleset: Ruleset) -> set[str]:
    return {
        f"{table.value}/{name}" if backend == "iptables" else nftables.layer_chain(table, name)
        for table, spec in ruleset.tables.items()
        for name in spec.chains
    }


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_renderers_accept_calc_output(backend: str) -> None:
    result = run(RICH, INTERFACES, CONFIG)
    assert result.spec.endpoints == ("by-ip", "e0", "e1", "star")
    names = iptables_names if backend == "iptables" else nftables_names
    for family in Family:
        ruleset = result.spec.ruleset(family)
        assert ruleset.sets
        chains, created, used = names(ruleset)
        # Every chain and set of the spec is declared, nothing else, and every set a rule
        # refers to is one of them: the text does not refer to anything it lacks.
        assert chains == expected_chains(backend, ruleset)
        assert created == set(ruleset.sets)
        assert used, "the selectors and nets of RICH are matched through sets"
        assert used <= created
