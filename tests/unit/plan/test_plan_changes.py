"""`felis plan` as a library: the words and the exact kernel delta between two resource sets."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from felis.calc import compute
from felis.dataplane import iptables, nftables
from felis.dataplane.spec import Family, Ruleset
from felis.model import Resource, load_documents
from felis.plan import iptables_state, kernel_delta, make_plan, nft_state, overlay, render_text

NODE = "memcached-node-1"
SEED = Path(__file__).parents[3] / "examples" / "memcached-seed.yaml"


def docs(text: str) -> list[Resource]:
    return load_documents(textwrap.dedent(text).encode(), "test.yaml")


def seed() -> list[Resource]:
    return load_documents(SEED.read_bytes(), str(SEED))


CLIENT = """
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: client-1-eth0, labels: {memcached: client}}
spec: {interfaceName: eth0, node: client-1, expectedIPs: [198.18.0.2]}
"""

OTHER_NODE_HEP = """
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: unrelated, labels: {role: db}}
spec: {interfaceName: eth0, node: elsewhere}
"""


def test_seed_on_an_empty_datastore() -> None:
    plan = make_plan([], seed(), NODE)
    assert plan.changes_node
    assert [c.text() for c in plan.resources] == [
        "GlobalNetworkPolicy memcached-server: added",
        "HostEndpoint memcached-node-1-eth0: added",
    ]
    texts = [c.text() for c in plan.endpoints]
    assert "HostEndpoint memcached-node-1-eth0 (eth0): becomes active" in texts
    assert (
        "HostEndpoint memcached-node-1-eth0 (eth0): now selected by gnp/memcached-server "
        "(untracked ingress, untracked egress)" in texts
    )
    flows = {c.text() for c in plan.untracked}
    assert flows == {
        'memcached-node-1-eth0 ingress TCP local port 12211 from selector memcached == "client": '
        "becomes untracked (gnp/memcached-server ingress rule 0)",
        'memcached-node-1-eth0 egress TCP local port 12211 to selector memcached == "client": '
        "becomes untracked (gnp/memcached-server egress rule 0)",
    }
    assert [c.index for c in plan.rules] == [0, 0]
    assert plan.sets == ()  # the client set exists but is empty
    v4 = plan.delta[0]
    assert v4.family is Family.V4 and "add chain ip felis raw-felis-pi-memcached-server" in v4.text


def test_same_input_changes_nothing() -> None:
    plan = make_plan(seed(), overlay(seed(), seed()), NODE)
    assert not plan.changes_node
    assert plan.resources == () and plan.endpoints == () and plan.untracked == ()
    assert all(d.text == "" for d in plan.delta)
    assert render_text(plan).endswith(f"no change on node {NODE}\n")


def test_a_client_joins_the_set() -> None:
    plan = make_plan(seed(), overlay(seed(), docs(CLIENT)), NODE, backend="iptables")
    assert plan.changes_node
    assert [c.text() for c in plan.sets] == [
        '198.18.0.2/32 joins set for memcached == "client" (used by gnp/memcached-server '
        "ingress rule 0; gnp/memcached-server egress rule 0)"
    ]
    assert plan.endpoints == () and plan.rules == ()
    v4 = plan.delta[0].text
    assert "add felis4-s-" in v4 and "198.18.0.2/32" in v4
    assert "iptables-restore" not in v4, "only a set member changes, no chain"
    assert plan.delta[1].text == ""


def test_a_client_leaves_the_set() -> None:
    current = seed() + docs(CLIENT)
    proposed = [r for r in current if r.metadata.name != "client-1-eth0"]
    plan = make_plan(current, proposed, NODE)
    assert [c.joined for c in plan.sets] == [False]
    assert "delete element ip felis felis4-s-" in plan.delta[0].text


def test_object_on_another_node_changes_nothing_here() -> None:
    plan = make_plan(seed(), overlay(seed(), docs(OTHER_NODE_HEP)), NODE)
    assert [c.text() for c in plan.resources] == ["HostEndpoint unrelated: added"]
    assert not plan.changes_node


def test_policy_edit_is_described_rule_by_rule() -> None:
    wider = docs(SEED.read_text().replace("- 12211", "- 12211\n          - 11211"))
    plan = make_plan(seed(), overlay(seed(), wider), NODE)
    assert [c.text() for c in plan.resources] == [
        "GlobalNetworkPolicy memcached-server: changed (spec.egress, spec.ingress)"
    ]
    changes = {c.text() for c in plan.untracked}
    assert any("local port 12211,11211" in t and "becomes untracked" in t for t in changes)
    assert any("local port 12211 " in t and "no longer untracked" in t for t in changes)
    assert next(c.text() for c in plan.rules) == (
        "gnp/memcached-server ingress rule 0 changed: Allow TCP from selector memcached == "
        '"client", local port 12211 -> Allow TCP from selector memcached == "client", '
        "local port 12211,11211"
    )


def test_dropping_donottrack_moves_the_policy_to_normal() -> None:
    tracked = docs(SEED.read_text().replace("doNotTrack: true", "doNotTrack: false"))
    plan = make_plan(seed(), overlay(seed(), tracked), NODE)
    assert [c.text() for c in plan.endpoints] == [
        "HostEndpoint memcached-node-1-eth0 (eth0): gnp/memcached-server moves from untracked "
        "ingress, untracked egress to normal ingress, normal egress, forward ingress, forward "
        "egress"
    ]
    assert {c.untracked for c in plan.untracked} == {False}


def test_removing_the_endpoint() -> None:
    proposed = [r for r in seed() if r.kind != "HostEndpoint"]
    plan = make_plan(seed(), proposed, NODE)
    texts = [c.text() for c in plan.endpoints]
    assert "HostEndpoint memcached-node-1-eth0 (eth0): no longer active" in texts
    assert "delete chain ip felis raw-felis-pi-memcached-server" in plan.delta[0].text


def test_warnings_are_compared() -> None:
    star = docs("""
        apiVersion: projectcalico.org/v3
        kind: HostEndpoint
        metadata: {name: all, labels: {memcached: server}}
        spec: {interfaceName: "*", node: memcached-node-1}
    """)
    plan = make_plan(seed(), overlay(seed(), star), NODE)
    assert any("doNotTrack is not supported" in w for w in plan.new_warnings)
    assert plan.to_json()["warnings"]["new"] == list(plan.new_warnings)


# ---------------------------------------------------------------------------------------------
# The kernel state built from a spec is what the renderers' own read-back gives.


def _save_from_restore(text: str) -> str:
    """iptables-save output for a node programmed from nothing with `text`."""
    tables: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line[1:], {})
        elif line.startswith(":"):
            current[line[1:].split()[0]] = []
        elif line.startswith("-A "):
            _, chain, body = line.split(" ", 2)
            current.setdefault(chain, []).append(body)
        elif line.startswith("-I "):
            _, chain, pos, body = line.split(" ", 3)
            current.setdefault(chain, []).insert(int(pos) - 1, body)
    out = []
    for name, chains in tables.items():
        out.append(f"*{name}")
        out += [f":{chain} - [0:0]" for chain in chains]
        out += [f"-A {chain} {body}" for chain, rules in chains.items() for body in rules]
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def _rulesets() -> list[tuple[Ruleset, Ruleset]]:
    a = compute(seed(), NODE).spec
    b = compute(seed() + docs(CLIENT), NODE).spec
    tracked = compute(
        docs(SEED.read_text().replace("doNotTrack: true", "doNotTrack: false")), NODE
    ).spec
    return [
        (a.ruleset(f), other.ruleset(f)) for f in (Family.V4, Family.V6) for other in (b, tracked)
    ]


@pytest.mark.parametrize("pair", range(4))
def test_iptables_state_matches_read_back(pair: int) -> None:
    before, after = _rulesets()[pair]
    full = iptables.render_full(before)
    parsed = iptables.parse_iptables_save(_save_from_restore(full.restore))
    built = iptables_state(before)
    for table, state in parsed.items():
        assert {n: c.hashes for n, c in state.chains.items()} == {
            n: c.hashes for n, c in built.tables[table].chains.items()
        }
    read = iptables.IptablesState(tables=parsed, sets=built.sets)
    assert iptables.render_delta(after, read) == iptables.render_delta(after, built)
    assert iptables.render_delta(before, built).empty


@pytest.mark.parametrize("pair", range(4))
def test_nft_state_is_in_sync_with_its_own_spec(pair: int) -> None:
    before, after = _rulesets()[pair]
    assert nftables.render_delta(before, nft_state(before)) is None
    changed = nftables.render_delta(after, nft_state(before)) is not None
    assert changed == (after != before)  # the client's IPv4 address leaves IPv6 as it was


def test_kernel_delta_both_backends_and_removal() -> None:
    spec = compute(seed(), NODE).spec
    empty = compute([], NODE).spec
    for backend in ("iptables", "nftables"):
        assert all(d.text == "" for d in kernel_delta(spec, spec, backend))
        assert all(d.text for d in kernel_delta(empty, spec, backend))
        assert all(d.text for d in kernel_delta(spec, empty, backend))
