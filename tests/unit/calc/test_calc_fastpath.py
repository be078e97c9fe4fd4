"""The untracked fast path: which Allow rules are lifted into the raw hook, and which never are."""

from __future__ import annotations

from typing import Any

from calc_helpers import ETH0, gnp, gns, hep, run, tier

from felis.calc import HostInterface
from felis.calc.fastpath import MAX_LIFTED_RULES
from felis.dataplane.spec import Family, HookPosition, Jump, Match, Rule, SetKind, Table
from felis.model.resources import Resource

ETH1 = HostInterface("eth1", ("10.0.1.1/24",))


def tcp(action: str, port: int, **extra: Any) -> dict[str, Any]:
    return {"action": action, "protocol": "TCP", "destination": {"ports": [port]}, **extra}


def untracked(name: str, ingress: list[dict[str, Any]], **spec: Any) -> Resource:
    return gnp(name, doNotTrack=True, applyOnForward=True, ingress=ingress, **spec)


def lifted(resources: list[Resource], **kw: Any) -> list[tuple[str | None, str]]:
    """(interface, comment) of each fast-path rule of the raw PREROUTING hook."""
    raw = run(resources, **kw).spec.ruleset(Family.V4).table(Table.RAW)
    rules = raw.hooks_for("PREROUTING", HookPosition.INSERT)
    assert rules[-1] == Rule(action=Jump("felis-PREROUTING")), "the walk always follows"
    for rule in rules[:-1]:
        assert rule.action == Jump("felis-untracked-accept")
    return [(rule.match.in_iface, rule.comment) for rule in rules[:-1]]


def comments(*indexes: tuple[str, int]) -> list[tuple[str | None, str]]:
    return [("eth0", f"gnp/{name} ingress rule {i}") for name, i in indexes]


def test_leading_allows_are_lifted_up_to_the_first_deny() -> None:
    rules = [tcp("Allow", 1), tcp("Allow", 2), tcp("Deny", 3), tcp("Allow", 4)]
    assert lifted([hep("h", iface="eth0"), untracked("p", rules)]) == comments(("p", 0), ("p", 1))


def test_nothing_is_lifted_past_a_deny_pass_or_log() -> None:
    for first in ("Deny", "Pass", "Log"):
        rules = [tcp(first, 1), tcp("Allow", 2)]
        assert lifted([hep("h", iface="eth0"), untracked("p", rules)]) == [], first


def test_lifting_continues_across_policies_and_tiers() -> None:
    resources = [
        hep("h", iface="eth0"),
        tier("first", order=1),
        untracked("a", [tcp("Allow", 1)], tier="first"),
        untracked("b", [tcp("Allow", 2)], order=1),
        untracked("c", [tcp("Allow", 3), tcp("Pass", 4), tcp("Allow", 5)], order=2),
    ]
    assert lifted(resources) == comments(("a", 0), ("b", 0), ("c", 0))


def test_policies_sharing_a_selector_are_walked_through_their_group_chain() -> None:
    resources = [
        hep("h", iface="eth0"),
        untracked("a", [tcp("Allow", 1)], order=1),
        untracked("b", [tcp("Allow", 2)], order=2),
    ]
    raw = run(resources).spec.ruleset(Family.V4).table(Table.RAW)
    assert any(name.startswith("felis-gi-") for name in raw.chains)
    assert lifted(resources) == comments(("a", 0), ("b", 0))


def test_an_empty_direction_lifts_nothing_and_stops_nothing() -> None:
    resources = [
        hep("h", iface="eth0"),
        gnp("empty", doNotTrack=True, applyOnForward=True, types=["Ingress"], order=1),
        untracked("b", [tcp("Allow", 2)], order=2),
    ]
    assert lifted(resources) == comments(("b", 0))


def test_each_endpoint_gets_its_own_rules_on_its_own_interface() -> None:
    resources = [
        hep("h0", iface="eth0", labels={"k": "a"}),
        hep("h1", iface="eth1", labels={"k": "b"}),
        untracked("on-a", [tcp("Allow", 1)], selector="k == 'a'", order=1),
        untracked("on-b", [tcp("Deny", 2), tcp("Allow", 3)], selector="k == 'b'", order=2),
        untracked("on-both", [tcp("Allow", 4)], selector="has(k)", order=5),
    ]
    assert lifted(resources, interfaces=[ETH0, ETH1]) == [
        ("eth0", "gnp/on-a ingress rule 0"),
        ("eth0", "gnp/on-both ingress rule 0"),
    ]


def test_the_number_of_lifted_rules_is_bounded() -> None:
    rules = [tcp("Allow", port) for port in range(1, 2 * MAX_LIFTED_RULES)]
    found = lifted([hep("h", iface="eth0"), untracked("p", rules)])
    assert found == comments(*(("p", i) for i in range(MAX_LIFTED_RULES)))


def test_tracked_policy_is_never_lifted() -> None:
    resources = [hep("h", iface="eth0"), gnp("normal", ingress=[tcp("Allow", 1)])]
    assert lifted(resources) == []


def flow_rules(count: int, first_port: int = 20000) -> list[Resource]:
    """`count` untracked policies, each allowing one TCP port from the clients."""
    return [
        untracked(
            f"svc-{i:04d}",
            [tcp("Allow", first_port + i, source={"selector": "role == 'client'"})],
            order=i + 1,
        )
        for i in range(count)
    ]


def client_set(nets: list[str]) -> Resource:
    return gns("clients", nets, labels={"role": "client"})


def fast_rules(resources: list[Resource], kernel_chain: str = "PREROUTING") -> list[Rule]:
    raw = run(resources).spec.ruleset(Family.V4).table(Table.RAW)
    return list(raw.hooks_for(kernel_chain, HookPosition.INSERT)[:-1])


def test_many_flow_shaped_allows_become_one_port_set_lookup() -> None:
    resources = [hep("h", iface="eth0"), client_set(["10.1.0.0/24"]), *flow_rules(100)]
    ruleset = run(resources).spec.ruleset(Family.V4)
    (lookup,) = fast_rules(resources)
    name = lookup.match.dst_port_in_set
    assert name is not None and name.startswith("felis4-p-")
    clients = "felis4-s-" + lookup.match.src_sets[0].removeprefix("felis4-s-")
    assert lookup.match == Match(
        in_iface="eth0", protocol=6, src_sets=(clients,), dst_port_in_set=name
    )
    assert lookup.comment == "Fast path of 100 untracked Allow rules"
    assert ruleset.sets[name].kind is SetKind.PORT
    assert ruleset.sets[name].members == {str(20000 + i) for i in range(100)}
    assert ruleset.sets[clients].members == {"10.1.0.0/24"}


def test_fewer_than_four_flow_shaped_allows_stay_rules() -> None:
    resources = [hep("h", iface="eth0"), client_set(["10.1.0.0/24"]), *flow_rules(3)]
    assert [c for _, c in lifted(resources)] == [
        f"gnp/svc-{i:04d} ingress rule 0" for i in range(3)
    ]


def test_other_allows_stay_rules_next_to_the_set() -> None:
    odd = untracked("odd", [{"action": "Allow", "protocol": "UDP"}], order=0)
    resources = [hep("h", iface="eth0"), client_set(["10.1.0.0/24"]), odd, *flow_rules(5)]
    assert [c for _, c in lifted(resources)] == [
        "Fast path of 5 untracked Allow rules",
        "gnp/odd ingress rule 0",
    ]


def test_one_rule_per_protocol_and_remote_address() -> None:
    other = [
        untracked(
            f"udp-{i}",
            [{"action": "Allow", "protocol": "UDP", "source": {"nets": ["10.7.0.0/16"]},
              "destination": {"ports": [7000 + i]}}],
            order=500 + i,
        )
        for i in range(4)
    ]  # fmt: skip
    resources = [hep("h", iface="eth0"), client_set(["10.1.0.0/24"]), *flow_rules(4), *other]
    rules = fast_rules(resources)
    assert [(r.match.protocol, r.match.src_net, len(r.match.src_sets)) for r in rules] == [
        (6, None, 1),
        (17, "10.7.0.0/16", 0),
    ]


def test_egress_replies_use_the_destination_address_and_source_port() -> None:
    policies = [
        gnp(
            f"svc-{i}",
            doNotTrack=True,
            applyOnForward=True,
            egress=[
                {
                    "action": "Allow",
                    "protocol": "UDP",
                    "source": {"ports": [5000 + i]},
                    "destination": {"nets": ["10.9.0.0/16"]},
                }
            ],
            order=i + 1,
        )
        for i in range(4)
    ]
    ruleset = run([hep("h", iface="eth0"), *policies]).spec.ruleset(Family.V4)
    (lookup,) = fast_rules([hep("h", iface="eth0"), *policies], "OUTPUT")
    name = lookup.match.src_port_in_set
    assert name is not None
    assert lookup.match == Match(
        out_iface="eth0", protocol=17, dst_net="10.9.0.0/16", src_port_in_set=name
    )
    assert ruleset.sets[name].members == {str(5000 + i) for i in range(4)}
