"""The drift checks against a real kernel: the quick check (rules, chains, hooks, set
declarations and, with ipset, set sizes; no member read) finds nothing on a node in sync, so at
rest nothing more is read; it sees a foreign rule change on both backends and a deleted ipset
member, which no kernel event reports; it cannot see a member swapped for another (nor, with
nftables, any member change: those are kernel events), which the full check then repairs.

The checks run in this process on an agent driven step by step (no timing); then, with
iptables, a running agent repairs a deleted member with its full check an hour away."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from harness import topology, wait_until
from node import CLIENT_HEP, HEP, NODE, SEED_POLICY, SERVER_IP, FelisNode, manifest

from felis.agent.agent import Agent, AgentSettings
from felis.agent.interfaces import parse_ip_addresses
from felis.calc import HostInterface
from felis.dataplane.kernel import IptablesDataplane, NftablesDataplane, open_dataplane
from felis.dataplane.spec import Family
from felis.datastore import open_datastore
from felis.model import to_dict
from felis.model.loader import load_documents

PARTNERS = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: partners, labels: {role: partner}}
spec: {nets: [198.18.5.1/32, 198.18.5.2/32, 198.18.6.0/24]}
"""
PARTNER_POLICY = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: partners-in}
spec:
  selector: memcached == 'server'
  ingress:
    - action: Allow
      protocol: TCP
      source: {selector: role == 'partner'}
      destination: {ports: [8443]}
"""
MARKER_POLICY = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: marker}
spec:
  selector: memcached == 'server'
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [9]}}]
"""
MEMBER, STRANGER = "198.18.5.2", "198.18.7.7"


def felix_refresh(period: str) -> str:
    return f"""
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {{name: default}}
spec: {{ipsetsRefreshInterval: {period}}}
"""


def delete_member(node: FelisNode, name: str, member: str) -> None:
    if node.backend == "nftables":
        argv = ["nft", "delete", "element", "ip", "felis", name, "{", member, "}"]
    else:
        argv = ["ipset", "del", name, member]
    node.topo.exec(node.server, argv)


def add_member(node: FelisNode, name: str, member: str) -> None:
    if node.backend == "nftables":
        argv = ["nft", "add", "element", "ip", "felis", name, "{", member, "}"]
    else:
        argv = ["ipset", "add", name, member]
    node.topo.exec(node.server, argv)


@pytest.fixture(params=["nftables", "iptables"])
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FelisNode]:
    """The server namespace alone (nothing here sends traffic): its eth0 is one end of a veth
    pair whose other end stays in the namespace too."""
    with topology() as topo:
        server = topo.add_host("srv")
        topo.exec(server, ["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0"])
        topo.exec(server, ["ip", "address", "add", f"{SERVER_IP}/24", "dev", "eth0"])
        for link in ("eth0", "peer0"):
            topo.exec(server, ["ip", "link", "set", link, "up"])
        yield FelisNode(topo, str(request.param), tmp_path, server, "", "", "")


def store_manifests(node: FelisNode, *documents: str) -> None:
    """What `felis apply` stores, without starting another interpreter for it."""
    resources = load_documents(manifest(*documents).encode(), "test")
    with closing(open_datastore(node.datastore)) as store:
        store.apply([to_dict(resource) for resource in resources])


@pytest.fixture
def agent(node: FelisNode) -> Iterator[Agent]:
    """An agent of this process programming the node's server namespace, synced once."""
    store_manifests(node, HEP, CLIENT_HEP, SEED_POLICY, PARTNERS, PARTNER_POLICY)

    def interfaces() -> list[HostInterface]:
        shown = node.topo.exec(node.server, ["ip", "-j", "address", "show"]).stdout
        return parse_ip_addresses(shown)

    with closing(open_datastore(node.datastore)) as store:
        made = Agent(
            AgentSettings(node=NODE), store, open_dataplane(node.backend, node.server), interfaces
        )
        made.converge_once()
        yield made


def test_quick_check_sees_rules_and_set_sizes_the_full_check_every_member(
    node: FelisNode, agent: Agent
) -> None:
    dataplane = agent.dataplane
    assert isinstance(dataplane, IptablesDataplane | NftablesDataplane)
    spec = agent.current_spec
    assert spec is not None
    # In sync, neither check finds anything: at rest the quick check is all that runs.
    assert dataplane.quick_drift(spec) == []
    assert dataplane.drift(spec) == []
    (name,) = (n for n, s in spec.ruleset(Family.V4).sets.items() if len(s.members) == 3)
    wanted = node.set_members()[name]

    # A member deleted by another program.
    delete_member(node, name, MEMBER)
    if node.backend == "iptables":
        # ipset is not nftables: no kernel event reports this, the set's size shows it.
        assert dataplane.quick_drift(spec) == [f"IPv4 set {name} holds 2 members, 3 wanted"]
        agent._repair_drift(full=False)
        assert agent.state.drift_repairs == 1
    else:
        # Set elements are not listed by the quick check; the kernel event of this change
        # brings the full check (shown with a running agent below).
        assert dataplane.quick_drift(spec) == []
        agent._repair_drift(full=True)
        assert agent.state.drift_repairs == 1
    assert node.set_members()[name] == wanted

    # A member swapped for another: the same size, so only the full check sees it.
    delete_member(node, name, MEMBER)
    add_member(node, name, STRANGER)
    assert dataplane.quick_drift(spec) == []
    agent._repair_drift(full=False)
    assert agent.state.drift_repairs == 1, "the quick check cannot see a swap"
    assert node.set_members()[name] != wanted
    assert dataplane.drift(spec) != []
    agent._repair_drift(full=True)
    assert agent.state.drift_repairs == 2
    assert node.set_members()[name] == wanted

    # A rule change is seen by the quick check on both backends.
    before = node.chain_hashes()
    if node.backend == "nftables":
        flush = ["nft", "flush", "chain", "ip", "felis", "filter-felis-failsafe-in"]
    else:
        flush = ["iptables", "-t", "filter", "-F", "felis-failsafe-in"]
    node.topo.exec(node.server, flush)
    assert dataplane.quick_drift(spec) != []
    agent._repair_drift(full=False)
    assert node.chain_hashes() == before
    assert dataplane.quick_drift(spec) == [] and dataplane.drift(spec) == []
    if node.backend == "iptables":
        running_agent_repairs_a_deleted_member_with_quick_checks(node, name, wanted)


def running_agent_repairs_a_deleted_member_with_quick_checks(
    node: FelisNode, name: str, wanted: frozenset[str]
) -> None:
    """The same through the agent's own loop: its full check an hour away and kernel events
    off, only the quick check can explain the repair."""
    # A new policy, so that the agent's first sync shows in the kernel; the member is deleted
    # after it (that sync would have repaired it too).
    store_manifests(node, felix_refresh("1h"), MARKER_POLICY)
    node.start_agent("--refresh-interval", "0.2", "--no-kernel-events")
    wait_until(
        lambda: "filter/felis-pi-marker" in node.chain_hashes(), timeout=30, what="the first sync"
    )
    delete_member(node, name, MEMBER)
    wait_until(lambda: node.set_members()[name] == wanted, timeout=30, what="the member repaired")
