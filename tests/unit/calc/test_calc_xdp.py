"""Which sources XDP may drop: the source-only Denies the raw ingress walk meets first."""

from __future__ import annotations

from typing import Any

from calc_helpers import gnp, gns, hep, run

SERVER = hep("h1", iface="eth0", labels={"role": "server"})
BLOCKLIST = gns("blocklist", ["203.0.113.0/24", "2001:db8::/32"], {"list": "block"})
BLOCKED = {"eth0": frozenset({"203.0.113.0/24", "2001:db8::/32"})}


def untracked(name: str, *rules: dict[str, Any], order: float = 10) -> Any:
    return gnp(
        name,
        selector="role == 'server'",
        order=order,
        doNotTrack=True,
        applyOnForward=True,
        ingress=list(rules),
    )


DENY_LIST = {"action": "Deny", "source": {"selector": "list == 'block'"}}


def test_calicos_case_a_deny_of_one_source_selector() -> None:
    assert run([SERVER, BLOCKLIST, untracked("bl", DENY_LIST)]).xdp == BLOCKED


def test_wider_than_calico_several_rules_policies_nets_and_ipv6() -> None:
    nets = {"action": "Deny", "source": {"nets": ["198.51.100.0/24", "192.0.2.0/24"]}}
    one = {"action": "Deny", "source": {"nets": ["198.51.99.7/32"]}}
    later = untracked("later", one, order=20)
    result = run([SERVER, BLOCKLIST, untracked("bl", DENY_LIST, nets), later])
    assert result.xdp == {
        "eth0": BLOCKED["eth0"] | {"198.51.100.0/24", "192.0.2.0/24", "198.51.99.7/32"}
    }


def test_a_deny_with_more_than_a_source_is_stepped_over_not_taken() -> None:
    tcp_only = {"action": "Deny", "protocol": "TCP", "source": {"nets": ["198.51.100.0/24"]}}
    result = run([SERVER, BLOCKLIST, untracked("bl", tcp_only, DENY_LIST)])
    assert result.xdp == BLOCKED


def test_anything_that_could_decide_otherwise_ends_it() -> None:
    allow = {"action": "Allow", "protocol": "TCP", "destination": {"ports": [22]}}
    log = {"action": "Log"}
    passes = {"action": "Pass", "protocol": "UDP"}
    negated = {"action": "Deny", "source": {"notNets": ["10.0.0.0/8"]}}
    for first in (allow, log, passes):
        assert run([SERVER, BLOCKLIST, untracked("bl", first, DENY_LIST)]).xdp == {}
    # An Allow in an earlier policy ends it too.
    earlier = untracked("earlier", allow, order=1)
    assert run([SERVER, BLOCKLIST, earlier, untracked("bl", DENY_LIST)]).xdp == {}
    # A negated source is no blocklist.
    assert run([SERVER, BLOCKLIST, untracked("bl", negated)]).xdp == {}


def test_tracked_policy_never_reaches_xdp() -> None:
    tracked = gnp("bl", selector="role == 'server'", ingress=[DENY_LIST])
    assert run([SERVER, BLOCKLIST, tracked]).xdp == {}


def test_egress_denies_are_not_ingress() -> None:
    egress = gnp(
        "bl",
        selector="role == 'server'",
        doNotTrack=True,
        applyOnForward=True,
        egress=[{"action": "Deny", "destination": {"selector": "list == 'block'"}}],
    )
    assert run([SERVER, BLOCKLIST, egress]).xdp == {}
