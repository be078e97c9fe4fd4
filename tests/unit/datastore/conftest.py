from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from felis.datastore import Datastore, SqliteDatastore


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "felis.db"


@pytest.fixture
def ds(db_path: Path) -> Iterator[SqliteDatastore]:
    store = SqliteDatastore(db_path)
    yield store
    store.close()


@pytest.fixture
def store(ds: SqliteDatastore) -> Datastore:
    """The backend test_datastore_protocol runs against here (tests/cluster adds etcd)."""
    return ds
