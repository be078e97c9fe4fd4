"""Churn under load: while connections stream through the untracked seed policy, unrelated
changes and Allow-keeping changes to that policy lose no connection and track nothing.
The full size (1,000 + 100 changes, the lab's saturating load) is bench/bench_churn.py."""

from __future__ import annotations

import statistics

import pytest
from agents import agent_env, require_root_and_etcd, seed_policy
from churn import run_churn
from etcd_harness import etcd_store, poll

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_churn_under_traffic_loses_nothing_and_tracks_nothing(backend: str) -> None:
    require_root_and_etcd()
    with agent_env(1, backend=backend) as env, etcd_store(env.etcd) as store:
        (node,) = env.nodes
        env.seed()
        env.apply(seed_policy())
        node.start()
        node.wait_in_sync()
        poll(node.reach, 30, "the seed policy to allow the client")
        result = run_churn(env, node, store, unrelated=120, policy=20)
        assert result.connections_ok > 0
        assert result.connections_failed == 0, result
        assert result.tracked_samples == [0] * len(result.tracked_samples)
        assert result.apply_ms, "the agent applied the changes"
        print(
            f"{backend}: {result.changes} changes, {result.connections_ok} connections, "
            f"apply median {statistics.median(result.apply_ms)} ms, max {max(result.apply_ms)} ms"
        )
