"""Profiles: rules after all tiers in the normal chains only, labels inherited for selectors."""

from __future__ import annotations

from calc_helpers import ETH0, NODE, chain, chains, gnp, hep, profile, run

from felis.calc import Calculator
from felis.dataplane.spec import Family, Table

WEB = profile(
    "web",
    labels={"role": "web", "team": "blue"},
    ingress=[{"action": "Allow", "protocol": "TCP", "destination": {"ports": [80]}}],
    egress=[{"action": "Deny", "protocol": "UDP"}],
)


def test_profile_rules_run_after_policies_in_their_own_chains() -> None:
    result = run([WEB, hep("h1", iface="eth0", profiles=["web"])])
    fh = chain(result, Table.FILTER, "felis-fh-eth0")
    assert fh[-3:] == [
        "-> Jump(target='felis-pri-web') # pro/web",
        "mark_set=16777216 -> Return() # Return if profile accepted",
        "-> Drop() # Drop if no profiles matched",
    ]
    assert chain(result, Table.FILTER, "felis-pri-web") == [
        "protocol=6 dst_ports=(PortRange(first=80, last=80),) "
        "-> SetMark(value=16777216, mask=16777216) # pro/web ingress rule 0",
    ]
    th = chain(result, Table.FILTER, "felis-th-eth0")
    assert "-> Jump(target='felis-pro-web') # pro/web" in th
    assert chain(result, Table.FILTER, "felis-pro-web")[-1].endswith(
        "-> Drop() # pro/web egress rule 0"
    )


def test_profiles_never_reach_untracked_pre_dnat_or_forward_chains() -> None:
    untracked = gnp(
        "dnt",
        doNotTrack=True,
        applyOnForward=True,
        ingress=[{"action": "Deny", "protocol": "ICMP"}],
    )
    result = run([WEB, untracked, hep("h1", iface="eth0", profiles=["web"])])
    assert "pro/web" not in str(chain(result, Table.RAW, "felis-fh-eth0"))
    for name in ("felis-fhfw-eth0", "felis-thfw-eth0"):
        assert "pro/web" not in str(chain(result, Table.FILTER, name))
    assert not any("pri-" in c or "pro-" in c for c in chains(result, Table.RAW))


def test_all_interfaces_endpoint_runs_egress_profiles_in_mangle_too() -> None:
    result = run([WEB, hep("star", iface="*", profiles=["web"])])
    assert "felis-pro-web" in chains(result, Table.MANGLE)
    assert "felis-pro-web" in chains(result, Table.FILTER)


def test_labels_to_apply_select_the_endpoint_own_labels_win_first_profile_wins() -> None:
    red = profile("red", labels={"team": "red", "tier": "front"})
    policy = gnp(
        "blue-web", selector="role == 'web' && team == 'blue'", ingress=[{"action": "Allow"}]
    )
    front = gnp("front", selector="tier == 'front'", ingress=[{"action": "Allow"}])
    # web before red: team=blue comes from web; tier=front only red sets.
    result = run([WEB, red, policy, front, hep("h1", iface="eth0", profiles=["web", "red"])])
    fh = str(chain(result, Table.FILTER, "felis-fh-eth0"))
    assert "gnp/blue-web" in fh and "gnp/front" in fh
    # The endpoint's own label beats every profile.
    own = hep("h1", iface="eth0", labels={"team": "green"}, profiles=["web", "red"])
    fh = str(chain(run([WEB, red, policy, front, own]), Table.FILTER, "felis-fh-eth0"))
    assert "gnp/blue-web" not in fh and "gnp/front" in fh


def test_inherited_labels_put_remote_endpoints_in_rule_sets() -> None:
    policy = gnp(
        "from-web",
        selector="has(server)",
        ingress=[{"action": "Allow", "source": {"selector": "role == 'web'"}}],
    )
    server = hep("server", iface="eth0", labels={"server": ""})
    remote = hep("remote", node="other", ips=["10.9.0.7"], profiles=["web"])
    sets = run([policy, server, remote, WEB]).spec.ruleset(Family.V4).sets
    assert [set(s.members) for s in sets.values()] == [{"10.9.0.7/32"}]


def test_profile_changes_move_members_and_chains_incrementally() -> None:
    calc = Calculator(NODE)
    calc.set_interfaces([ETH0])
    policy = gnp(
        "from-web",
        selector="has(server)",
        ingress=[{"action": "Allow", "source": {"selector": "role == 'web'"}}],
    )
    for resource in (policy, hep("server", iface="eth0", labels={"server": ""}, profiles=["web"])):
        calc.upsert(resource)
    calc.upsert(hep("remote", node="other", ips=["10.9.0.7"], profiles=["web"]))
    before = calc.result().spec
    assert "felis-fh-eth0" in before.ruleset(Family.V4).table(Table.FILTER).chains
    # The profile appears: the remote endpoint joins the set, the local one gets its chain.
    calc.upsert(WEB)
    spec = calc.result().spec
    assert [set(s.members) for s in spec.ruleset(Family.V4).sets.values()] == [{"10.9.0.7/32"}]
    assert "felis-pri-web" in spec.ruleset(Family.V4).table(Table.FILTER).chains
    # It goes: the set empties and the endpoint drops at the missing profile.
    calc.remove("pro", "web")
    spec = calc.result().spec
    assert [set(s.members) for s in spec.ruleset(Family.V4).sets.values()] == [set()]
    fh = [
        r.comment for r in spec.ruleset(Family.V4).table(Table.FILTER).chains["felis-fh-eth0"].rules
    ]
    assert "Profile web missing: drop" in fh
