"""API rule → IR rule conversion: family filtering, nets, selectors, named ports (§5.9, §3.7)."""

from __future__ import annotations

from typing import Any

from calc_helpers import gnp, gns, hep, run

from felis.calc import CalcResult
from felis.calc.names import nets_set
from felis.dataplane.spec import (
    Family,
    IcmpMatch,
    MarkBits,
    Match,
    PortRange,
    Rule,
    SetKind,
    SetMark,
    Table,
)
from felis.selector import parse

M = MarkBits.from_mask()
SERVER = hep("h1", iface="eth0", labels={"role": "server"})


def policy_rules(rules: list[dict[str, Any]], family: Family = Family.V4) -> tuple[Rule, ...]:
    result = run([SERVER, gnp("p", ingress=rules)])
    return policy_chain(result, family)


def policy_chain(result: CalcResult, family: Family) -> tuple[Rule, ...]:
    return result.spec.ruleset(family).table(Table.FILTER).chains["felis-pi-p"].rules


def allow(match: Match, index: int = 0) -> Rule:
    return Rule(match, SetMark(M.accept, M.accept), f"gnp/p ingress rule {index}")


def is_empty_chain(rules: tuple[Rule, ...]) -> bool:
    return len(rules) == 1 and rules[0].action is None


def test_ip_version_filters_family() -> None:
    rules = [{"action": "Allow", "ipVersion": 6}]
    assert is_empty_chain(policy_rules(rules, Family.V4))
    assert policy_rules(rules, Family.V6) == (allow(Match()),)


def test_icmp_only_v4_and_icmpv6_only_v6() -> None:
    rules = [{"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8, "code": 0}}]
    assert policy_rules(rules, Family.V4) == (allow(Match(protocol=1, icmp=IcmpMatch(8, 0))),)
    assert is_empty_chain(policy_rules(rules, Family.V6))
    rules6 = [{"action": "Allow", "protocol": "ICMPv6", "notICMP": {"type": 128}}]
    assert policy_rules(rules6, Family.V6) == (allow(Match(protocol=58, not_icmp=IcmpMatch(128))),)
    assert is_empty_chain(policy_rules(rules6, Family.V4))


def test_nets_of_other_family_skip_the_rule_for_that_family() -> None:
    rules = [
        {"action": "Allow", "source": {"nets": ["fd00::/8"]}},
        {"action": "Allow", "source": {"notNets": ["fd00::/8"]}},
        {"action": "Allow", "destination": {"nets": ["10.0.0.0/8"], "notNets": ["10.1.0.0/16"]}},
    ]
    v4 = policy_rules(rules, Family.V4)
    assert v4 == (allow(Match(dst_net="10.0.0.0/8", not_dst_net="10.1.0.0/16"), 2),)
    v6 = policy_rules(rules, Family.V6)
    assert [r.comment for r in v6] == ["gnp/p ingress rule 0"] * 2 + ["gnp/p ingress rule 1"]
    assert v6[0] == allow(Match(src_net="fd00::/8"))
    assert v6[2] == allow(Match(not_src_net="fd00::/8"), 1)


def test_mixed_family_list_keeps_own_family() -> None:
    # Validation forbids mixing families in one rule, but the renderer still copes (§5.9 step 1).
    from felis.calc.inputs import policy_info
    from felis.calc.rules import render_policy_chain
    from felis.model.resources import EntityRule
    from felis.model.resources import Rule as ApiRule

    base = gnp("p", ingress=[{"action": "Allow"}])
    mixed = ApiRule.model_construct(
        action="Allow",
        ip_version=None,
        protocol=None,
        icmp=None,
        not_protocol=None,
        not_icmp=None,
        source=EntityRule.model_construct(
            nets=["10.0.0.0/8", "fd00::/8"],
            not_nets=[],
            selector="",
            not_selector="",
            namespace_selector="",
            services=None,
            service_accounts=None,
            ports=[],
            not_ports=[],
        ),
        destination=EntityRule(),
        http=None,
        metadata=None,
    )
    info = policy_info(base)  # type: ignore[arg-type]
    info = type(info)(**{**{f: getattr(info, f) for f in info.__slots__}, "ingress": (mixed,)})
    v4 = render_policy_chain(info, True, Family.V4, M, "x")
    assert v4.chain_rules[0].match == Match(src_net="10.0.0.0/8")
    v6 = render_policy_chain(info, True, Family.V6, M, "x")
    assert v6.chain_rules[0].match == Match(src_net="fd00::/8")
    catch_all = mixed.model_copy(
        update={"source": mixed.source.model_copy(update={"not_nets": ["0.0.0.0/0"]})}
    )
    info2 = type(info)(**{**{f: getattr(info, f) for f in info.__slots__}, "ingress": (catch_all,)})
    for family in Family:
        rendered = render_policy_chain(info2, True, family, M, "x")
        assert rendered.chain_rules[0].action is None
        assert rendered.warnings


def test_multiple_nets_become_a_set() -> None:
    rules = [
        {
            "action": "Allow",
            "source": {"nets": ["10.1.0.0/16", "10.0.0.0/16"]},
            "destination": {"notNets": ["192.168.0.0/24", "192.168.1.0/24"]},
        }
    ]
    result = run([SERVER, gnp("p", ingress=rules)])
    src = nets_set(Family.V4, ["10.0.0.0/16", "10.1.0.0/16"])
    dst = nets_set(Family.V4, ["192.168.1.0/24", "192.168.0.0/24"])
    assert policy_chain(result, Family.V4) == (allow(Match(src_sets=(src,), not_dst_sets=(dst,))),)
    sets = result.spec.ruleset(Family.V4).sets
    assert sets[src].members == frozenset({"10.0.0.0/16", "10.1.0.0/16"})
    assert sets[src].kind is SetKind.NET
    assert sets[dst].members == frozenset({"192.168.0.0/24", "192.168.1.0/24"})
    assert len(src) <= 31 and src.startswith("felis4-c-")


def test_selector_and_not_selector_sets() -> None:
    rules = [
        {
            "action": "Allow",
            "source": {"selector": "role == 'client'", "notSelector": "bad == 'yes'"},
        }
    ]
    result = run([SERVER, gnp("p", ingress=rules)])
    client = "felis4-s-" + parse("role == 'client'").unique_id[2:24]
    bad = "felis4-s-" + parse("bad == 'yes'").unique_id[2:24]
    assert policy_chain(result, Family.V4) == (
        allow(Match(src_sets=(client,), not_src_sets=(bad,))),
    )
    assert result.spec.ruleset(Family.V4).sets[bad].comment == 'bad == "yes"'


def test_namespace_and_service_account_selectors_are_translated() -> None:
    # Calico ANDs them in on pcns./pcsa.-prefixed labels (§3.7), which host endpoints and
    # network sets never have: a positive one gives a set that stays empty, a negated one
    # matches them.
    rules = [
        {"action": "Deny", "source": {"namespaceSelector": "team == 'x'"}},
        {
            "action": "Deny",
            "source": {"serviceAccounts": {"names": ["sa", "b"], "selector": "!has(x)"}},
        },
        {"action": "Allow", "source": {"namespaceSelector": "global()", "selector": "a == 'b'"}},
        {"action": "Deny", "source": {"namespaceSelector": "!has(team)", "selector": "a == 'b'"}},
        {"action": "Deny", "source": {"namespaceSelector": "all()"}},
        {"action": "Deny", "source": {"serviceAccounts": {"selector": "!has(x)"}}},
        {"action": "Deny", "source": {"services": {"name": "dns", "namespace": "kube-system"}}},
    ]
    peer = hep("peer", node="other", ips=["198.18.0.9"], labels={"a": "b"})
    result = run(
        [SERVER, peer, gns("peers", ["198.18.1.0/24"], {"a": "b"}), gnp("p", ingress=rules)]
    )
    ruleset = result.spec.ruleset(Family.V4)
    chain_rules = policy_chain(result, Family.V4)
    sets = {
        int(rule.comment.rsplit(" ", 1)[1]): ruleset.sets[rule.match.src_sets[0]]
        for rule in chain_rules
        if rule.match.src_sets
    }
    both = frozenset({"198.18.0.9/32", "198.18.1.0/24"})
    assert {index: (s.comment, s.members) for index, s in sets.items()} == {
        0: ('pcns.team == "x"', frozenset()),
        1: ('(!has(pcsa.x) && projectcalico.org/serviceaccount in {"b", "sa"})', frozenset()),
        2: ('(!has(projectcalico.org/namespace) && a == "b")', both),
        3: ('(!has(pcns.team) && a == "b")', both),
        4: ("has(projectcalico.org/namespace)", frozenset()),
        5: ("!has(pcsa.x)", both),
    }
    # Services stay pod-only: that rule alone is skipped, with a warning.
    assert [w for w in result.warnings if "rule 6" in w] == [
        "GlobalNetworkPolicy p ingress rule 6: matches Kubernetes services, which are never "
        "host endpoints; skipped"
    ]


def test_http_is_ignored() -> None:
    rules = [{"action": "Allow", "protocol": "TCP", "http": {"methods": ["GET"]}}]
    assert policy_rules(rules) == (allow(Match(protocol=6)),)


def test_ports_and_not_ports() -> None:
    rules = [
        {
            "action": "Allow",
            "protocol": "TCP",
            "source": {"notPorts": [1, "5:6"]},
            "destination": {"ports": [80, "8000:8080"]},
        }
    ]
    assert policy_rules(rules) == (
        allow(
            Match(
                protocol=6,
                not_src_ports=(PortRange(1, 1), PortRange(5, 6)),
                dst_ports=(PortRange(80, 80), PortRange(8000, 8080)),
            )
        ),
    )


def test_named_ports_are_ored_alternatives() -> None:
    web = hep(
        "web",
        node="other",
        iface="eth0",
        ips=["10.0.0.9", "fd00::9"],
        labels={"app": "web"},
        ports=[{"name": "http", "protocol": "TCP", "port": 8080}],
    )
    rules = [
        {
            "action": "Allow",
            "protocol": "TCP",
            "destination": {"selector": "app == 'web'", "ports": [443, "http"]},
        }
    ]
    result = run([SERVER, web, gnp("p", ingress=rules)])
    rules_v4 = policy_chain(result, Family.V4)
    web_set = "felis4-s-" + parse("app == 'web'").unique_id[2:24]
    assert rules_v4[0] == allow(
        Match(protocol=6, dst_sets=(web_set,), dst_ports=(PortRange(443, 443),))
    )
    np_name = rules_v4[1].match.dst_port_set
    assert np_name is not None and np_name.startswith("felis4-n-")
    assert rules_v4[1] == allow(Match(protocol=6, dst_port_set=np_name))
    assert len(rules_v4) == 2  # the trailing RETURN is removed
    ipset = result.spec.ruleset(Family.V4).sets[np_name]
    assert ipset.kind is SetKind.IP_PORT
    assert ipset.members == frozenset({"10.0.0.9,tcp:8080"})
    v6 = result.spec.ruleset(Family.V6)
    np6 = policy_chain(result, Family.V6)[1].match.dst_port_set
    assert np6 is not None and v6.sets[np6].members == frozenset({"fd00::9,tcp:8080"})


def test_named_port_log_fires_once() -> None:
    rules = [
        {"action": "Log", "protocol": "TCP", "destination": {"ports": [443, "http", "https"]}},
    ]
    got = policy_rules(rules)
    bit = M.scratch0
    assert got[0] == Rule(Match(), SetMark(0, bit), "gnp/p ingress rule 0")
    assert [r.action for r in got[1:4]] == [SetMark(bit, bit)] * 3
    assert got[4].match == Match(mark_set=bit)


def test_named_port_protocol_any_when_rule_has_none() -> None:
    db = hep(
        "db",
        node="other",
        ips=["10.0.0.7"],
        ports=[
            {"name": "dns", "protocol": "UDP", "port": 53},
            {"name": "dns", "protocol": "TCP", "port": 5353},
        ],
    )
    rules = [{"action": "Allow", "destination": {"ports": ["dns"]}}]
    result = run([SERVER, db, gnp("p", ingress=rules)])
    (rule,) = policy_chain(result, Family.V4)
    assert rule.match.dst_port_set is not None
    members = result.spec.ruleset(Family.V4).sets[rule.match.dst_port_set].members
    assert members == frozenset({"10.0.0.7,udp:53", "10.0.0.7,tcp:5353"})


def test_not_protocol_rendered() -> None:
    assert policy_rules([{"action": "Deny", "notProtocol": "UDP"}])[0].match == Match(
        not_protocol=17
    )
