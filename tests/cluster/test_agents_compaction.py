"""etcd compacts the history an agent still needed: the agent resyncs and misses no change."""

from __future__ import annotations

from typing import Any

import pytest
from agents import OTHER_PORT, SERVE_PORT, AgentNode, agent_env, require_root_and_etcd, seed_policy
from etcd_harness import etcd_store, poll

from felis.datastore import Datastore
from felis.model import load_documents, to_dict

pytestmark = pytest.mark.cluster


def _gns(i: int, version: int) -> dict[str, Any]:
    # Nets never adjacent to each other (see test_agents_etcd_outage._net).
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkSet",
        "metadata": {"name": f"extra-{i}", "labels": {"memcached": "client"}},
        "spec": {"nets": [f"198.18.{200 + version}.{4 * i + 1}/32"]},
    }


def _policy(*ports: int) -> dict[str, Any]:
    (resource,) = load_documents(seed_policy(*ports).encode(), "test")
    return to_dict(resource)


def _changes(store: Datastore, version: int, count: int = 10) -> None:
    """Creates/updates (nets move with `version`) and deletes of the previous odd ones."""
    for i in range(count):
        store.apply([_gns(i, version)])
    store.delete_all([("GlobalNetworkSet", f"extra-{i}") for i in range(1, count, 2)])


def _cut_off(node: AgentNode, cut: bool) -> None:
    """Take the node's link to etcd down (aborting its open sockets) or bring it back."""
    topo, ns = node.env.topo, node.ns
    topo.exec(ns, ["ip", "link", "set", "eth1", "down" if cut else "up"])
    if cut:
        topo.exec(ns, ["ss", "-K", "dst", node.env.hub_address(1)], check=False)


def test_compaction_during_the_watch_resyncs_without_missing_a_change() -> None:
    require_root_and_etcd()
    with agent_env(1) as env, etcd_store(env.etcd) as store:
        (node,) = env.nodes
        env.seed()
        env.apply(seed_policy())
        node.start()
        node.wait_in_sync()
        _changes(store, 0)
        poll(lambda: any("198.18.200.1/32" in m for m in node.kernel.set_members().values()), 30)

        # History the agent has not seen yet is compacted away while it is cut off...
        _cut_off(node, True)
        try:
            _changes(store, 1)
            store.apply([_policy(SERVE_PORT, OTHER_PORT)])
            store.compact(store.revision())
        finally:
            _cut_off(node, False)
        # ...and changes keep coming (and get compacted) while it reconnects and resyncs.
        _changes(store, 2)
        store.compact(store.revision())
        _changes(store, 3)

        poll(
            lambda: "watch history compacted; resyncing" in node.log_text(),
            60,
            "the agent to notice the compaction",
        )
        expected = env.once_state(node)
        poll(lambda: node.state() == expected, 60, "the agent to converge after the resync")
        assert node.reach() and node.reach(OTHER_PORT), "the policy change made while cut off"
        health = node.health()
        assert health is not None and health["healthy"] and health["datastore"] == "ok", health
