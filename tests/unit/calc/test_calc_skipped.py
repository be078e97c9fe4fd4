"""One object that cannot be programmed is left out, named, and never stops the rest."""

from __future__ import annotations

from calc_helpers import ETH0, NODE, chain, gnp, gns, hep, run

from felis.calc import Calculator, Skipped, compute
from felis.dataplane import iptables, nftables
from felis.dataplane.spec import Family, Table
from felis.model.resources import (
    GlobalNetworkSet,
    GlobalNetworkSetSpec,
    HostEndpoint,
    HostEndpointSpec,
    ObjectMeta,
)

SERVER = hep("h1", iface="eth0", ips=["10.0.0.1"], labels={"role": "server"})
GOOD = gnp(
    "good",
    selector="role == 'server'",
    ingress=[{"action": "Allow", "protocol": "TCP", "destination": {"ports": [80]}}],
)
# Valid for the model (as for Calico's validator), but an ICMP type match needs the ICMP
# protocol in both backends, so no renderer can write it.
BAD = gnp("bad", selector="role == 'server'", ingress=[{"action": "Deny", "notICMP": {"type": 8}}])
REASON = "IPv4 ingress: rule 'gnp/bad ingress rule 0': ICMP type match needs protocol icmp in IPv4"


def test_a_policy_no_renderer_can_write_is_left_out_and_named() -> None:
    result = run([SERVER, GOOD, BAD])
    assert result.skipped == [Skipped("GlobalNetworkPolicy", "bad", REASON)]
    assert str(result.skipped[0]) == f"GlobalNetworkPolicy bad skipped: {REASON}"
    fh = chain(result, Table.FILTER, "felis-fh-eth0")
    assert any("felis-pi-good" in rule for rule in fh)
    assert not any("felis-pi-bad" in rule for rule in fh)
    # The rest renders on both backends.
    for family in (Family.V4, Family.V6):
        ruleset = result.spec.ruleset(family)
        assert iptables.render_full(ruleset).tables
        assert nftables.render_full(ruleset)


def test_a_policy_in_use_nowhere_is_not_judged() -> None:
    # Only policies selecting a local endpoint are rendered at all, so only they can fail.
    elsewhere = hep("h9", node="other", iface="eth0", labels={"role": "server"})
    assert run([elsewhere, BAD]).skipped == []


def test_fixing_or_deleting_the_object_clears_it() -> None:
    calc = Calculator(NODE)
    calc.set_interfaces([ETH0])
    for resource in (SERVER, GOOD, BAD):
        calc.upsert(resource)
    assert [s.name for s in calc.result().skipped] == ["bad"]
    calc.upsert(gnp("bad", selector="role == 'server'", ingress=[{"action": "Deny"}]))
    assert calc.result().skipped == []
    calc.upsert(BAD)
    assert [s.name for s in calc.result().skipped] == ["bad"]
    calc.remove("gnp", "bad")
    assert calc.result().skipped == []


def broken_set(name: str, nets: list[str]) -> GlobalNetworkSet:
    """A network set as another datastore writer might store it, unchecked by felis' model."""
    return GlobalNetworkSet.model_construct(
        kind="GlobalNetworkSet",
        metadata=ObjectMeta.model_construct(name=name, labels={"role": "peer"}),
        spec=GlobalNetworkSetSpec.model_construct(nets=nets),
    )


def test_an_unreadable_network_set_replaces_its_earlier_version_with_nothing() -> None:
    policy = gnp(
        "peers",
        selector="role == 'server'",
        ingress=[{"action": "Allow", "source": {"selector": "role == 'peer'"}}],
    )
    calc = Calculator(NODE)
    calc.set_interfaces([ETH0])
    for resource in (SERVER, policy, gns("p", ["10.9.0.0/16"], {"role": "peer"})):
        calc.upsert(resource)
    (name,) = calc.result().spec.ruleset(Family.V4).sets
    assert calc.result().spec.ruleset(Family.V4).sets[name].members == {"10.9.0.0/16"}
    calc.upsert(broken_set("p", ["10.9.0.0/16", "10.0.0.300/32"]))
    result = calc.result()
    assert result.spec.ruleset(Family.V4).sets[name].members == frozenset()
    (skipped,) = result.skipped
    assert (skipped.kind, skipped.name) == ("GlobalNetworkSet", "p")
    assert "10.0.0.300/32" in skipped.reason
    # The incremental result is the one-shot one.
    resources = [SERVER, policy, broken_set("p", ["10.0.0.300/32"])]
    assert compute(resources, NODE, [ETH0]).skipped == [
        Skipped("GlobalNetworkSet", "p", skipped.reason)
    ]
    calc.remove("GlobalNetworkSet", "p")
    assert calc.result().skipped == []


def test_a_host_endpoint_whose_interface_no_backend_can_name_is_left_out() -> None:
    odd = HostEndpoint.model_construct(
        kind="HostEndpoint",
        metadata=ObjectMeta.model_construct(name="odd", labels={"role": "server"}),
        spec=HostEndpointSpec.model_construct(
            node=NODE, interface_name="eth 1", expected_ips=[], profiles=[], ports=[]
        ),
    )
    result = compute([SERVER, GOOD, odd], NODE, None)
    assert [(s.kind, s.name) for s in result.skipped] == [("HostEndpoint", "odd")]
    assert "invalid interface name 'eth 1'" in result.skipped[0].reason
    assert result.spec.endpoints == ("h1",)
