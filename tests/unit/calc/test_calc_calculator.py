"""Set membership (§4.10) and the incremental calculator."""

from __future__ import annotations

from typing import Any

from calc_helpers import ETH0, NODE, gnp, gns, hep, profile, tier
from hypothesis import given, settings
from hypothesis import strategies as st

from felis.calc import CalcResult, Calculator, compute
from felis.dataplane.spec import Family, Table
from felis.selector import parse

CLIENT_SET = "felis4-s-" + parse("role == 'client'").unique_id[2:24]
CLIENT_SET6 = "felis6-s-" + parse("role == 'client'").unique_id[2:24]
SERVER = hep("server", iface="eth0", labels={"role": "server"}, ips=["10.0.0.1"])
POLICY = gnp(
    "srv",
    selector="role == 'server'",
    doNotTrack=True,
    applyOnForward=True,
    ingress=[{"action": "Allow", "source": {"selector": "role == 'client'"}}],
    egress=[{"action": "Allow", "destination": {"selector": "role == 'client'"}}],
)


def members(result: CalcResult, name: str = CLIENT_SET, family: Family = Family.V4) -> set[str]:
    return set(result.spec.ruleset(family).sets[name].members)


def make() -> Calculator:
    calc = Calculator(NODE)
    calc.set_interfaces([ETH0])
    calc.upsert(SERVER)
    calc.upsert(POLICY)
    return calc


def test_members_from_other_nodes_heps_and_network_sets() -> None:
    calc = make()
    calc.upsert(
        hep("c1", node="n2", iface="eth0", ips=["10.1.0.1", "fd00::1"], labels={"role": "client"})
    )
    calc.upsert(hep("c2", node="n3", iface="eth0", labels={"role": "client"}))  # no IPs
    calc.upsert(gns("nets", ["10.2.0.7/24", "10.3.0.1", "fd00:1::5"], {"role": "client"}))
    calc.upsert(gns("others", ["10.9.0.0/16"], {"role": "other"}))
    result = calc.result()
    assert members(result) == {"10.1.0.1/32", "10.2.0.0/24", "10.3.0.1/32"}
    assert members(result, CLIENT_SET6, Family.V6) == {"fd00::1/128", "fd00:1::5/128"}


def test_shared_member_stays_until_last_contributor_leaves() -> None:
    calc = make()
    calc.upsert(hep("c1", node="n2", ips=["10.1.0.1"], labels={"role": "client"}))
    calc.upsert(gns("g", ["10.1.0.1/32"], {"role": "client"}))
    assert members(calc.result()) == {"10.1.0.1/32"}
    calc.remove("HostEndpoint", "c1")
    assert members(calc.result()) == {"10.1.0.1/32"}
    calc.remove("gns", "g")
    assert members(calc.result()) == set()


def test_label_change_only_changes_set_members() -> None:
    calc = make()
    client = hep("c1", node="n2", ips=["10.1.0.1"], labels={"role": "client"})
    calc.upsert(client)
    before = calc.result()
    calc.upsert(hep("c1", node="n2", ips=["10.1.0.1"], labels={"role": "nobody"}))
    after = calc.result()
    assert members(before) == {"10.1.0.1/32"}
    assert members(after) == set()
    for family in Family:
        old, new = before.spec.ruleset(family), after.spec.ruleset(family)
        for table in Table:
            # The very same chain objects: nothing was re-rendered.
            assert old.table(table) is new.table(table)
    assert before.spec.ruleset(Family.V6).sets == after.spec.ruleset(Family.V6).sets


def test_unused_selectors_have_no_set() -> None:
    calc = make()
    calc.upsert(
        gnp(
            "elsewhere",
            selector="role == 'db'",
            ingress=[{"action": "Allow", "source": {"selector": "x == 'y'"}}],
        )
    )
    assert set(calc.result().spec.ruleset(Family.V4).sets) == {CLIENT_SET}


def test_local_hep_label_change_relayouts() -> None:
    calc = make()
    assert "felis-pi-srv" in calc.result().spec.ruleset(Family.V4).table(Table.RAW).chains
    calc.upsert(hep("server", iface="eth0", labels={"role": "idle"}, ips=["10.0.0.1"]))
    result = calc.result()
    assert "felis-pi-srv" not in result.spec.ruleset(Family.V4).table(Table.RAW).chains
    assert result.spec.ruleset(Family.V4).sets == {}


def test_remove_accepts_aliases_and_unknown_names() -> None:
    calc = make()
    calc.remove("gnp", "srv")
    calc.remove("hep", "does-not-exist")
    assert calc.result().spec.ruleset(Family.V4).sets == {}


# ---------------------------------------------------------------- property: incremental == full

LABELS = st.sampled_from([{}, {"role": "client"}, {"role": "server"}, {"role": "db"}])
IPS = st.sampled_from([[], ["10.0.0.1"], ["10.0.0.2", "fd00::2"], ["10.0.0.3"]])
NAMES = st.sampled_from(["a", "b"])


@st.composite
def resources(draw: Any) -> Any:
    kind = draw(st.sampled_from(["hep", "gnp", "gns", "tier", "profile"]))
    name = draw(NAMES)
    if kind == "profile":
        return profile(
            f"profile-{name}",
            labels=draw(LABELS),
            ingress=draw(st.sampled_from([[], [{"action": "Allow"}], [{"action": "Deny"}]])),
            egress=[{"action": "Allow", "destination": {"selector": "role == 'db'"}}],
        )
    if kind == "hep":
        iface = draw(st.sampled_from(["eth0", "eth1", "", "*"]))
        ips = draw(IPS)
        return hep(
            f"hep-{name}",
            node=draw(st.sampled_from([NODE, "other"])),
            iface=iface,
            ips=ips if ips or iface else ["10.0.0.1"],
            labels=draw(LABELS),
            ports=draw(st.sampled_from([None, [{"name": "http", "protocol": "TCP", "port": 80}]])),
            profiles=draw(
                st.sampled_from([None, ["profile-a"], ["profile-b", "profile-a"], ["missing"]])
            ),
        )
    if kind == "gns":
        return gns(
            f"gns-{name}",
            draw(st.sampled_from([["10.0.0.1"], ["10.5.0.0/16", "fd00::/64"]])),
            draw(LABELS),
        )
    if kind == "tier":
        return tier(
            f"tier-{name}",
            order=draw(st.sampled_from([None, 1.0, 2.0])),
            action=draw(st.sampled_from(["Deny", "Pass"])),
        )
    rule_selector = draw(st.sampled_from(["role == 'client'", "has(role)", "role != 'db'"]))
    spec: dict[str, Any] = {
        "selector": draw(st.sampled_from(["all()", "role == 'server'", "role == 'db'"])),
        "tier": draw(st.sampled_from(["default", "tier-a", "tier-b"])),
        "ingress": [
            {
                "action": draw(st.sampled_from(["Allow", "Deny", "Pass", "Log"])),
                "protocol": "TCP",
                "source": {"selector": rule_selector},
                "destination": {"ports": draw(st.sampled_from([[80], ["http"], [80, "http"]]))},
            }
        ],
        "egress": [{"action": "Allow", "destination": {"selector": rule_selector}}],
    }
    flavour = draw(st.sampled_from(["normal", "forward", "dnt", "prednat"]))
    if flavour == "forward":
        spec["applyOnForward"] = True
    elif flavour == "dnt":
        spec.update(doNotTrack=True, applyOnForward=True)
    elif flavour == "prednat":
        spec.update(preDNAT=True, applyOnForward=True, egress=[])
    return gnp(f"gnp-{name}", **spec)


OPS = st.lists(
    st.one_of(
        resources().map(lambda r: ("upsert", r)),
        st.tuples(
            st.just("remove"),
            st.sampled_from(
                ["HostEndpoint", "GlobalNetworkPolicy", "GlobalNetworkSet", "Tier", "Profile"]
            ),
            NAMES,
        ),
        st.just(("result",)),
        st.just(("result",)),
    ),
    max_size=25,
)

PREFIX = {
    "HostEndpoint": "hep",
    "GlobalNetworkPolicy": "gnp",
    "GlobalNetworkSet": "gns",
    "Tier": "tier",
    "Profile": "profile",
}


@settings(max_examples=500, deadline=None)
@given(OPS)
def test_incremental_equals_full(ops: list[Any]) -> None:
    calc = Calculator(NODE)
    interfaces = [ETH0]
    calc.set_interfaces(interfaces)
    state: dict[tuple[str, str], Any] = {}
    for op in ops:
        if op[0] == "upsert":
            resource = op[1]
            calc.upsert(resource)
            state[(resource.kind, resource.metadata.name)] = resource
        elif op[0] == "remove":
            name = f"{PREFIX[op[1]]}-{op[2]}"
            calc.remove(op[1], name)
            state.pop((op[1], name), None)
        else:
            calc.result()
    incremental = calc.result()
    full = compute(list(state.values()), NODE, interfaces)
    assert incremental.spec == full.spec
    assert incremental.warnings == full.warnings


def test_hep_moving_to_another_node_relayouts() -> None:
    calc = Calculator(NODE)
    calc.set_interfaces([ETH0])
    calc.upsert(hep("hep-a", iface="eth0"))
    assert calc.result().spec.endpoints == ("hep-a",)
    calc.upsert(hep("hep-a", node="other", iface="eth0"))
    assert calc.result().spec.endpoints == ()
    calc.upsert(hep("hep-a", iface="eth0"))
    calc.set_interfaces([])
    assert calc.result().spec.endpoints == ()


def test_policy_and_tier_changes_relayout() -> None:
    calc = make()
    calc.result()
    calc.upsert(tier("t", order=1, action="Pass"))
    calc.upsert(gnp("first", tier="t", selector="all()", ingress=[{"action": "Pass"}]))
    result = calc.result()
    fh = result.spec.ruleset(Family.V4).table(Table.FILTER).chains["felis-fh-eth0"]
    assert "Start of tier t" in [r.comment for r in fh.rules]
    calc.remove("Tier", "t")
    again = compute(
        [SERVER, POLICY, gnp("first", tier="t", selector="all()", ingress=[{"action": "Pass"}])],
        NODE,
        [ETH0],
    )
    assert calc.result().spec == again.spec
