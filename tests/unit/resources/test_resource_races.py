"""The checks run inside the write's transaction: a second client's write that comes between
the checks and the write cannot slip in (SQLite: it cannot take the write lock). The same
scenarios on etcd, where the second write lands and the first is retried, are in
tests/cluster/test_etcd_resource_races.py; two processes racing round after round are in
tests/unit/datastore/test_datastore_concurrency.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from resources_helpers import Interleaved, items, policy, tier

from felis.datastore import SqliteDatastore, Unavailable
from felis.resources import DeleteTarget, Problems, ResourceService


@pytest.fixture
def other(db_path: Path, store: SqliteDatastore) -> Iterator[SqliteDatastore]:
    """A second client of the same file that gives up at once instead of waiting for a lock."""
    with SqliteDatastore(db_path, busy_timeout=0) as opened:
        yield opened


def test_a_policy_cannot_land_between_the_checks_and_the_deletion_of_its_tier(
    store: SqliteDatastore, other: SqliteDatastore
) -> None:
    ResourceService(store).apply(items(tier("sec")))
    create = lambda: ResourceService(other).create(items(policy("p", "sec")))  # noqa: E731
    racing = Interleaved(store, create)
    ResourceService(racing.as_store()).delete([DeleteTarget("Tier", "sec")])
    assert isinstance(racing.outcome, Unavailable) and "locked" in str(racing.outcome)
    # Tried again once the deletion committed, the create sees the tier gone.
    with pytest.raises(Problems, match=r"spec.tier: resource does not exist: Tier\(sec\)"):
        create()
    assert store.list("GlobalNetworkPolicy").items == []


def test_a_tier_cannot_go_between_the_checks_and_the_creation_of_its_policy(
    store: SqliteDatastore, other: SqliteDatastore
) -> None:
    ResourceService(store).apply(items(tier("sec")))
    delete = lambda: ResourceService(other).delete([DeleteTarget("Tier", "sec")])  # noqa: E731
    racing = Interleaved(store, delete)
    ResourceService(racing.as_store()).create(items(policy("p", "sec")))
    assert isinstance(racing.outcome, Unavailable) and "locked" in str(racing.outcome)
    with pytest.raises(Problems, match=r"non-empty tier: Tier\(sec\) still holds"):
        delete()
    assert store.get("Tier", "sec") and store.get("GlobalNetworkPolicy", "sec.p")
    assert racing.runs == 1
