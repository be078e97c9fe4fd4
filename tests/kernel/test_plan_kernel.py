"""`felis plan`'s kernel delta equals what the agent computes against the real kernel.

The plan builds "the kernel after the current datastore" from the spec alone; here the node is
really programmed, read back the way the agent reads it, and the two deltas must be identical.
"""

from __future__ import annotations

import textwrap

from node import CLIENT_HEP, HEP, NODE, SEED_POLICY, FelisNode, manifest

from felis.calc import compute
from felis.dataplane import iptables, nftables, nftables_readback
from felis.dataplane.ipset import parse_ipset_save
from felis.dataplane.spec import Family
from felis.model import Resource, load_documents
from felis.plan import make_plan, overlay
from felis.plan.delta import iptables_text

WIDER = SEED_POLICY.replace("ports: [12211]", "ports: [12211, 11211]")
STRANGER_HEP = """
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: stranger, labels: {memcached: client}}
spec: {interfaceName: eth0, node: elsewhere, expectedIPs: [198.18.1.2]}
"""


def docs(text: str) -> list[Resource]:
    return load_documents(textwrap.dedent(text).encode(), "test.yaml")


def real_delta(node: FelisNode, proposed: list[Resource]) -> str:
    ruleset = compute(proposed, NODE).spec.ruleset(Family.V4)
    if node.backend == "nftables":
        proc = node.topo.exec(node.server, ["nft", "-j", "list", "table", "ip", "felis"])
        return (
            nftables.render_delta(ruleset, nftables_readback.parse_nft_json(proc.stdout, Family.V4))
            or ""
        )
    saved = node.topo.exec(node.server, ["iptables-save"]).stdout
    sets = parse_ipset_save(node.topo.exec(node.server, ["ipset", "save"]).stdout)
    state = iptables.IptablesState(tables=iptables.parse_iptables_save(saved), sets=sets)
    return iptables_text(iptables.render_delta(ruleset, state))


def test_plan_delta_is_the_agents_delta(node: FelisNode) -> None:
    current = docs(manifest(HEP, CLIENT_HEP, SEED_POLICY))
    node.apply(manifest(HEP, CLIENT_HEP, SEED_POLICY))
    node.converge()
    for change in (WIDER, STRANGER_HEP, manifest(WIDER, STRANGER_HEP)):
        proposed = overlay(current, docs(change))
        plan = make_plan(current, proposed, NODE, backend=node.backend)
        v4 = plan.delta[0].text
        assert v4, "each change touches the node"
        assert v4 == real_delta(node, proposed)
    # Once applied, the plan for the same input is empty and the agent agrees.
    node.apply(manifest(WIDER, STRANGER_HEP))
    assert "nothing written" not in node.converge()
    after = overlay(current, docs(manifest(WIDER, STRANGER_HEP)))
    assert not make_plan(after, after, NODE, backend=node.backend).changes_node
    assert node.converge().endswith("in sync, nothing written")
