from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from felis.datastore import SqliteDatastore


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "felis.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteDatastore]:
    with SqliteDatastore(db_path) as opened:
        yield opened
