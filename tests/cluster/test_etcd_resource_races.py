"""The resource checks on etcd run inside the write's transaction: when another client's
write lands between the checks and the commit, the commit's compares fail and the whole round,
checks included, runs again on what is stored now. (On SQLite the other write cannot land:
tests/unit/resources/test_resource_races.py.) Two processes racing round after round are in
test_etcd_concurrency.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from etcd_harness import EtcdCluster, etcd_store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "resources"))

from resources_helpers import Interleaved, items, policy, tier

from felis.resources import DeleteTarget, Problems, ResourceService

pytestmark = pytest.mark.cluster


def test_a_policy_created_during_the_checks_keeps_its_tier(etcd: EtcdCluster) -> None:
    with etcd_store(etcd) as store, etcd_store(etcd) as other:
        ResourceService(store).apply(items(tier("sec")))
        create = lambda: ResourceService(other).create(items(policy("p", "sec")))  # noqa: E731
        racing = Interleaved(store, create)
        with pytest.raises(Problems) as refused:
            ResourceService(racing.as_store()).delete([DeleteTarget("Tier", "sec")])
        assert refused.value.lines() == [
            "Cannot delete a non-empty tier: Tier(sec) still holds GlobalNetworkPolicy(sec.p)"
        ]
        assert racing.outcome is not None and not isinstance(racing.outcome, Exception)
        assert racing.runs == 2, "the lost commit ran the checks again"
        assert store.get("Tier", "sec") and store.get("GlobalNetworkPolicy", "sec.p")


def test_a_tier_deleted_during_the_checks_refuses_the_policy(etcd: EtcdCluster) -> None:
    with etcd_store(etcd) as store, etcd_store(etcd) as other:
        ResourceService(store).apply(items(tier("sec")))
        delete = lambda: ResourceService(other).delete([DeleteTarget("Tier", "sec")])  # noqa: E731
        racing = Interleaved(store, delete)
        with pytest.raises(Problems, match=r"spec.tier: resource does not exist: Tier\(sec\)"):
            ResourceService(racing.as_store()).create(items(policy("p", "sec")))
        assert racing.outcome is not None and not isinstance(racing.outcome, Exception)
        assert racing.runs == 2
        assert store.list("GlobalNetworkPolicy").items == []
        assert "sec" not in [t["metadata"]["name"] for t in store.list("Tier").items]
