"""Agents on a three-member etcd: one member lost, all lost, all back."""

from __future__ import annotations

from typing import Any

import pytest
from agents import (
    OTHER_PORT,
    SERVE_PORT,
    AgentEnv,
    AgentNode,
    agent_env,
    require_root_and_etcd,
    seed_policy,
)
from etcd_harness import etcd_store, poll

from felis.model import load_documents, to_dict

pytestmark = pytest.mark.cluster

EXTRA = 12  # distinct objects written while a member is down: each one must arrive


def _net(i: int) -> str:
    # Never adjacent: the nftables dataplane cannot yet add a prefix next to a member the
    # kernel already merged with its neighbour ("interval overlaps"; reported to the lead).
    return f"198.18.200.{4 * i + 1}/32"


def _extra(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkSet",
        "metadata": {"name": f"extra-{i}", "labels": {"memcached": "client"}},
        "spec": {"nets": [_net(i)]},
    }


def _policy(*ports: int) -> dict[str, Any]:
    (resource,) = load_documents(seed_policy(*ports).encode(), "test")
    return to_dict(resource)


def _converge(env: AgentEnv, role: str) -> None:
    """Every agent's kernel reaches what `felis agent --once` programs from the same store."""
    expected = env.once_state(env.nodes[0], role)
    for node in env.nodes:
        poll(lambda n=node: n.state() == expected, 60, f"{node.name} to converge ({role})")


def _health(node: AgentNode) -> dict[str, Any]:
    health = node.health()
    assert health is not None, f"{node.name} does not answer /healthz"
    return health


def test_agents_ride_out_member_and_cluster_outages() -> None:
    require_root_and_etcd()
    with agent_env(3, etcd_members=3) as env:
        etcd = env.etcd
        env.seed()
        env.apply(seed_policy())
        for node in env.nodes:
            node.start()
        for node in env.nodes:
            node.wait_in_sync()
            poll(node.reach, 30, f"{node.name} to allow the client")
            assert not node.reach(OTHER_PORT)

        # 1. A member is down while changes are written (agents that started on it fail over).
        first = etcd.members[0]
        etcd.stop_member(first)
        with etcd_store(etcd) as store:
            for i in range(EXTRA):
                store.apply([_extra(i)])
            store.apply([_policy(SERVE_PORT, OTHER_PORT)])
        _converge(env, "fresh1")
        for node in env.nodes:
            members = set().union(*node.kernel.set_members().values())
            missing = [i for i in range(EXTRA) if _net(i) not in members]
            assert not missing, f"{node.name} lost the updates of extra-{missing}"
            assert node.reach(OTHER_PORT), f"{node.name} missed the policy change"
        etcd.start_member(first)
        etcd.wait_healthy()

        # 2. Every member down: the agents keep enforcing what they programmed.
        programmed = {node.name: node.state() for node in env.nodes}
        for member in etcd.members:
            etcd.stop_member(member)
        for node in env.nodes:
            poll(
                lambda n=node: _health(n)["datastore"] == "unreachable",
                60,
                f"{node.name} to report the datastore unreachable",
            )
        for node in env.nodes:
            health = _health(node)
            assert health["healthy"] and health["dataplane"] == "in sync", health
            assert node.state() == programmed[node.name], f"{node.name} changed its rules"
            assert node.reach() and node.reach(OTHER_PORT), f"{node.name} stopped allowing"
        stranger = env.nodes[0]
        assert not env.topo.probe(env.client, stranger.server_ip, 12213, timeout=1.0)

        # 3. Back again: changes made after the restart reach every agent.
        for member in etcd.members:
            etcd.start_member(member)
        etcd.wait_healthy()
        with etcd_store(etcd) as store:
            store.apply([_policy(SERVE_PORT)])
            store.delete_all([("GlobalNetworkSet", f"extra-{i}") for i in range(EXTRA)])
        _converge(env, "fresh2")
        for node in env.nodes:
            poll(lambda n=node: _health(n)["datastore"] == "ok", 60, f"{node.name} reconnected")
            assert node.reach(), f"{node.name} no longer allows the client"
            assert not node.reach(OTHER_PORT), f"{node.name} missed the change after the restart"
            assert "datastore unavailable, keeping current rules" in node.log_text()
