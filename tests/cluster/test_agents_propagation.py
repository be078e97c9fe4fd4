"""Three agent nodes on one etcd: a policy applied with `felis apply` is enforced on all three."""

from __future__ import annotations

import time

import pytest
from agents import OTHER_PORT, AgentNode, agent_env, require_root_and_etcd, seed_policy, timed_all
from etcd_harness import poll

pytestmark = pytest.mark.cluster

POLICY_CHAIN = "felis-pi-memcached-server"


def _programmed(node: AgentNode) -> bool:
    return node.has_chain(POLICY_CHAIN)


def _unprogrammed(node: AgentNode) -> bool:
    return not node.has_chain(POLICY_CHAIN)


def test_policy_applied_to_etcd_is_enforced_on_three_nodes() -> None:
    require_root_and_etcd()
    with agent_env(3) as env:
        env.seed()
        for node in env.nodes:
            node.start()
        for node in env.nodes:
            node.wait_in_sync()
            # The HEP is programmed and has no policy yet: everything but failsafe is denied.
            poll(lambda n=node: n.has_chain("felis-fh-eth0"), 30, f"{node.name} HEP chains")
            assert not node.reach(), f"{node.name} allowed traffic before any policy"

        started = time.monotonic()
        out = env.apply(seed_policy())
        applied = time.monotonic()
        assert "Successfully applied 1" in out
        seconds = timed_all(env.nodes, _programmed, applied)
        print(
            "\npropagation apply → kernel programmed on each node: "
            + ", ".join(
                f"{n.name} {s * 1000:.0f} ms" for n, s in zip(env.nodes, seconds, strict=True)
            )
            + f" (felis apply itself took {(applied - started) * 1000:.0f} ms)"
        )
        for node in env.nodes:
            assert node.reach(), f"{node.name} does not enforce the policy's allow"
            assert not node.reach(OTHER_PORT), f"{node.name} lets a port the policy omits"

        # The way back: deleting the policy flips every node to deny again.
        env.felis("delete", "GlobalNetworkPolicy", "memcached-server")
        deleted = time.monotonic()
        seconds = timed_all(env.nodes, _unprogrammed, deleted)
        print(
            "propagation delete → kernel programmed: "
            + ", ".join(f"{s * 1000:.0f} ms" for s in seconds)
        )
        for node in env.nodes:
            assert not node.reach(), f"{node.name} still allows after the policy was deleted"
        # Every agent wrote the kernel for each change and never fell out of sync.
        for node in env.nodes:
            health = node.health()
            assert health is not None
            assert health["healthy"] and health["datastore"] == "ok", health
