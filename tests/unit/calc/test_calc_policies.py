"""Which policies apply, their class, their order and how each action is rendered (§4.2–4.9)."""

from __future__ import annotations

from typing import Any

import pytest
from calc_helpers import ETH0, chain, chains, gnp, hep, run, tier

from felis.calc import HostInterface
from felis.dataplane.spec import (
    Drop,
    Family,
    Jump,
    Log,
    MarkBits,
    Match,
    PortRange,
    Return,
    Rule,
    SetMark,
    Table,
)

M = MarkBits.from_mask()
SERVER = hep("h1", iface="eth0", labels={"role": "server"})
ALLOW_ALL = [{"action": "Allow"}]
# Distinct selectors that all match SERVER, so that policies are not grouped (§5.10).
_SELECTORS = iter(f"role == 'server' && !has(x{i})" for i in range(1000))


def sel() -> str:
    return next(_SELECTORS)


def jumps(rules: tuple[Rule, ...]) -> list[str]:
    return [r.action.target for r in rules if isinstance(r.action, Jump)]


def filter_fh(resources: list[Any]) -> tuple[Rule, ...]:
    result = run(resources)
    return result.spec.ruleset(Family.V4).table(Table.FILTER).chains["felis-fh-eth0"].rules


def test_tiers_and_policy_order() -> None:
    resources = [
        SERVER,
        tier("early", order=10),
        tier("late", order=20),
        tier("unordered-a"),
        tier("unordered-b"),
        gnp("z-first", ingress=ALLOW_ALL, selector=sel(), order=1, tier="late"),
        gnp("c-noorder", ingress=ALLOW_ALL, selector=sel(), tier="late"),
        gnp("b-noorder", ingress=ALLOW_ALL, selector=sel(), tier="late"),
        gnp("y", ingress=ALLOW_ALL, selector=sel(), order=5, tier="early"),
        gnp("x", ingress=ALLOW_ALL, selector=sel(), tier="unordered-b"),
        gnp("w", ingress=ALLOW_ALL, selector=sel(), tier="unordered-a"),
        gnp("v", ingress=ALLOW_ALL, selector=sel(), order=5),  # tier default, order 1e6
    ]
    rules = filter_fh(resources)
    assert jumps(rules)[1:] == [
        "felis-pi-y",
        "felis-pi-z-first",
        "felis-pi-b-noorder",
        "felis-pi-c-noorder",
        "felis-pi-v",
        "felis-pi-w",
        "felis-pi-x",
    ]
    starts = [r.comment for r in rules if r.comment.startswith("Start of tier")]
    assert starts == [
        "Start of tier early",
        "Start of tier late",
        "Start of tier default",
        "Start of tier unordered-a",
        "Start of tier unordered-b",
    ]


def test_name_ties_use_calicos_key() -> None:
    # "a//GlobalNetworkPolicy" sorts after "a-b//GlobalNetworkPolicy" ('/' > '-').
    rules = filter_fh(
        [
            SERVER,
            gnp("a", ingress=ALLOW_ALL, selector=sel()),
            gnp("a-b", ingress=ALLOW_ALL, selector=sel()),
        ]
    )
    assert jumps(rules)[1:] == ["felis-pi-a-b", "felis-pi-a"]


def test_end_of_tier_drop_and_pass_tier() -> None:
    resources = [
        SERVER,
        tier("passing", order=1, action="Pass"),
        gnp("p1", ingress=ALLOW_ALL, tier="passing"),
        gnp("p2", ingress=ALLOW_ALL),
    ]
    texts = [r.comment for r in filter_fh(resources)]
    assert "End of tier passing. Drop if no policies passed packet" not in texts
    assert "End of tier default. Drop if no policies passed packet" in texts
    rules = filter_fh(resources)
    drop = next(r for r in rules if r.comment.startswith("End of tier default"))
    assert drop.match == Match(mark_clear=M.pass_) and drop.action == Drop()


def test_same_selector_policies_share_a_group_chain() -> None:
    policies = [gnp(f"g{i}", ingress=ALLOW_ALL, selector="role == 'server'") for i in range(7)]
    heps = [SERVER, hep("h2", iface="eth1", labels={"role": "server"})]
    result = run([*heps, *policies], [ETH0, HostInterface("eth1")])
    v4 = result.spec.ruleset(Family.V4).table(Table.FILTER)
    fh0, fh1 = v4.chains["felis-fh-eth0"].rules, v4.chains["felis-fh-eth1"].rules
    (group,) = [t for t in jumps(fh0) if t.startswith("felis-gi-")]
    assert group in jumps(fh1) and len(group) == 28
    rules = v4.chains[group].rules
    assert jumps(rules) == [f"felis-pi-g{i}" for i in range(7)]
    assert rules[0].match == Match()
    verdict = M.accept | M.pass_
    assert all(
        r.match == Match(mark_clear=verdict)
        for r in rules
        if r.comment.startswith("gnp/g") and r is not rules[0]
    )
    returns = [r for r in rules if r.comment == "Return on verdict"]
    assert [r.match for r in returns] == [Match(mark_set=M.accept), Match(mark_set=M.pass_)]
    assert rules.index(returns[0]) == 5


def test_missing_selector_match_means_no_policy() -> None:
    rules = filter_fh([SERVER, gnp("other", selector="role == 'client'", ingress=ALLOW_ALL)])
    assert jumps(rules) == ["felis-failsafe-in"]
    assert rules[-1] == Rule(action=Drop(), comment="Drop if no profiles matched")


def test_policy_actions_render() -> None:
    policy = gnp(
        "acts",
        ingress=[
            {"action": "Log", "protocol": "TCP", "destination": {"ports": [22]}},
            {"action": "Deny", "source": {"nets": ["10.0.0.0/8"]}},
            {"action": "Pass", "protocol": "UDP", "destination": {"ports": [53]}},
            {"action": "Allow"},
        ],
    )
    result = run([SERVER, policy])
    rules = result.spec.ruleset(Family.V4).table(Table.FILTER).chains["felis-pi-acts"].rules
    c = "gnp/acts ingress rule"
    assert rules == (
        Rule(Match(protocol=6, dst_ports=(PortRange(22, 22),)), Log("felis-packet"), f"{c} 0"),
        Rule(Match(src_net="10.0.0.0/8"), SetMark(M.drop, M.drop), f"{c} 1"),
        Rule(Match(mark_set=M.drop), Drop(), f"{c} 1"),
        Rule(
            Match(protocol=17, dst_ports=(PortRange(53, 53),)), SetMark(M.pass_, M.pass_), f"{c} 2"
        ),
        Rule(Match(mark_set=M.pass_), Return(), f"{c} 2"),
        # The final Allow's RETURN is dropped: a RETURN at the end of a chain changes nothing.
        Rule(Match(), SetMark(M.accept, M.accept), f"{c} 3"),
    )
    # No egress type (defaulted to Ingress only): no egress chain anywhere.
    assert "felis-po-acts" not in chains(result, Table.FILTER)


def test_log_prefix_template() -> None:
    from felis.calc import CalcConfig

    policy = gnp("logger", ingress=[{"action": "Log"}])
    result = run([SERVER, policy], config=CalcConfig(log_prefix="fw %t/%n"))
    rules = chain(result, Table.FILTER, "felis-pi-logger")
    assert rules == ["-> Log(prefix='fw default/logger') # gnp/logger ingress rule 0"]


def test_types_make_empty_direction_applicable() -> None:
    policy = gnp("ingress-only-rules", types=["Ingress", "Egress"], ingress=ALLOW_ALL)
    result = run([SERVER, policy])
    assert chain(result, Table.FILTER, "felis-po-ingress-only-rules") == [
        "-> (comment) # gnp/ingress-only-rules egress no rules"
    ]
    th = chain(result, Table.FILTER, "felis-th-eth0")
    assert (
        "mark_clear=33554432 -> Drop() # End of tier default. Drop if no policies passed packet"
        in th
    )


def test_types_egress_only() -> None:
    policy = gnp("eg", types=["Egress"], ingress=ALLOW_ALL, egress=ALLOW_ALL)
    result = run([SERVER, policy])
    assert "felis-pi-eg" not in chains(result, Table.FILTER)
    assert "felis-po-eg" in chains(result, Table.FILTER)


def test_normal_policy_in_filter_and_mangle_egress() -> None:
    policy = gnp("normal", ingress=ALLOW_ALL, egress=ALLOW_ALL)
    result = run([SERVER, policy])
    assert "felis-pi-normal" in chains(result, Table.FILTER)
    assert "felis-po-normal" in chains(result, Table.FILTER)
    assert "felis-po-normal" in chains(result, Table.MANGLE)  # DNAT'd host egress
    assert "felis-pi-normal" not in chains(result, Table.MANGLE)
    assert [c for c in chains(result, Table.RAW) if "normal" in c] == []
    # Not applyOnForward: forward chains keep their default allow.
    fhfw = chain(result, Table.FILTER, "felis-fhfw-eth0")
    assert fhfw[-2].endswith("# Allow forwarded traffic by default")


def test_apply_on_forward_policy_goes_to_forward_chains() -> None:
    policy = gnp("fwd", applyOnForward=True, ingress=ALLOW_ALL, egress=ALLOW_ALL)
    result = run([SERVER, policy])
    fhfw = chain(result, Table.FILTER, "felis-fhfw-eth0")
    assert "mark_clear=33554432 -> Jump(target='felis-pi-fwd') # gnp/fwd" in fhfw
    assert not any("Allow forwarded traffic by default" in r for r in fhfw)
    assert any("End of tier default" in r for r in fhfw)
    # No failsafe in forward chains.
    assert not any("failsafe" in r for r in fhfw)


def test_forward_policy_in_one_direction_leaves_the_other_to_the_kernel() -> None:
    # Calico renders the default allow only for an endpoint with no forward policy at all: the
    # uncovered direction returns with the accept bit clear, so the FORWARD policy decides.
    policy = gnp(
        "fwd-in",
        selector="role == 'server'",
        applyOnForward=True,
        types=["Ingress"],
        ingress=ALLOW_ALL,
    )
    result = run([SERVER, policy])
    thfw = chain(result, Table.FILTER, "felis-thfw-eth0")
    assert thfw == [
        "ct_states=established,related -> Accept()",
        "ct_states=invalid -> Drop()",
        "-> SetMark(value=0, mask=50331648)",
    ]
    fhfw = chain(result, Table.FILTER, "felis-fhfw-eth0")
    assert "mark_clear=33554432 -> Jump(target='felis-pi-fwd-in') # gnp/fwd-in" in fhfw
    assert not any("by default" in r for r in fhfw)
    # Another endpoint without forward policy keeps its default allow in both directions.
    other = hep("h2", iface="eth1", labels={"role": "other"})
    eth1 = HostInterface("eth1", ("10.0.1.1/24",))
    result = run([SERVER, other, policy], interfaces=[ETH0, eth1])
    for name in ("felis-fhfw-eth1", "felis-thfw-eth1"):
        assert chain(result, Table.FILTER, name)[-2].endswith("Allow forwarded traffic by default")


def test_pre_dnat_only_in_mangle() -> None:
    policy = gnp("pre", preDNAT=True, applyOnForward=True, ingress=[{"action": "Deny"}])
    result = run([SERVER, policy])
    assert "felis-pi-pre" in chains(result, Table.MANGLE)
    assert "felis-pi-pre" not in chains(result, Table.FILTER)
    assert "felis-pi-pre" not in chains(result, Table.RAW)
    fh = chain(result, Table.MANGLE, "felis-fh-eth0")
    assert fh[:3] == [
        "ct_states=established,related -> Accept()",
        "ct_states=invalid -> Drop()",
        "-> Jump(target='felis-failsafe-in')",
    ]
    # Tier default forced to Pass: no end-of-tier drop, no profile drop.
    assert not any("Drop" in r and "rule" not in r for r in fh[3:])
    assert chain(result, Table.MANGLE, "felis-from-host-endpoint") == [
        "in_iface=eth0 -> Goto(target='felis-fh-eth0')"
    ]
    # The filter chain still default-denies and sees no preDNAT policy.
    assert "felis-pi-pre" not in str(chain(result, Table.FILTER, "felis-fh-eth0"))


def test_untracked_tier_has_no_default_drop() -> None:
    policy = gnp("dnt", doNotTrack=True, applyOnForward=True, ingress=[{"action": "Pass"}])
    result = run([SERVER, policy])
    fh = chain(result, Table.RAW, "felis-fh-eth0")
    assert not any("End of tier" in r for r in fh)
    assert "felis-pi-dnt" not in chains(result, Table.FILTER)
    # doNotTrack policies are never in the forward list.
    assert "felis-pi-dnt" not in str(chain(result, Table.FILTER, "felis-fhfw-eth0"))


def test_default_allow_profile_and_unknown_profile() -> None:
    # A missing profile drops, as Felix's stand-in drop-all profile does: the default-allow
    # profile after it is never reached.
    heps = [hep("h1", iface="eth0", profiles=["nope", "projectcalico-default-allow"])]
    result = run(heps)
    fh = chain(result, Table.FILTER, "felis-fh-eth0")
    assert fh[-4:] == [
        "-> Drop() # Profile nope missing: drop",
        "-> SetMark(value=16777216, mask=16777216) "
        "# Profile projectcalico-default-allow allows all",
        "mark_set=16777216 -> Return() # Return if profile accepted",
        "-> Drop() # Drop if no profiles matched",
    ]
    # Profiles never apply to forward chains.
    assert not any("Profile" in r for r in chain(result, Table.FILTER, "felis-fhfw-eth0"))


@pytest.mark.parametrize(
    ("selector", "namespace", "account", "canonical", "selects"),
    [
        # A negation holds for every host endpoint: none has pcns./pcsa. labels.
        ("", "!has(team)", "", "!has(pcns.team)", True),
        ("role == 'server'", "!has(team)", "", '(role == "server" && !has(pcns.team))', True),
        ("", "", "!has(x)", "!has(pcsa.x)", True),
        ("", "!has(a)", "!has(b)", "(!has(pcns.a) && !has(pcsa.b))", True),
        ("", "team == 'a'", "", 'pcns.team == "a"', False),
        ("", "all()", "", "has(projectcalico.org/namespace)", False),
        # Calico rewrites all() in the policy's own selector too.
        (
            "all()",
            "!has(team)",
            "",
            "(has(projectcalico.org/namespace) && !has(pcns.team))",
            False,
        ),
        (
            "all()",
            "",
            "!has(x)",
            "(has(projectcalico.org/serviceaccount) && !has(pcsa.x))",
            False,
        ),
    ],
)
def test_namespace_and_service_account_selectors_of_a_policy(
    selector: str, namespace: str, account: str, canonical: str, selects: bool
) -> None:
    from felis.calc.inputs import policy_info
    from felis.model.resources import GlobalNetworkPolicy

    spec: dict[str, Any] = {"selector": selector, "ingress": ALLOW_ALL}
    if namespace:
        spec["namespaceSelector"] = namespace
    if account:
        spec["serviceAccountSelector"] = account
    policy = gnp("ns", **spec)
    assert isinstance(policy, GlobalNetworkPolicy)
    assert policy_info(policy).selector.canonical == canonical
    rules = filter_fh([SERVER, policy])
    assert ("felis-pi-ns" in jumps(rules)) is selects


def test_log_prefix_is_cut_to_the_iptables_limit() -> None:
    from felis.calc import CalcConfig

    policy = gnp("a-rather-long-policy-name-for-logging", ingress=[{"action": "Log"}])
    result = run([SERVER, policy], config=CalcConfig(log_prefix="felis %n"))
    rules = result.spec.ruleset(Family.V4).table(Table.FILTER).chains
    (chain_name,) = [c for c in rules if c.startswith("felis-pi-")]
    action = rules[chain_name].rules[0].action
    assert isinstance(action, Log)
    assert action.prefix == "felis a-rather-long-policy-na"
