from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from felis.datastore import SqliteDatastore


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "felis.db"


@pytest.fixture
def ds(db_path: Path) -> Iterator[SqliteDatastore]:
    store = SqliteDatastore(db_path)
    yield store
    store.close()
