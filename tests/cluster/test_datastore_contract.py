"""The Datastore contract against both backends: the scenarios of
tests/unit/datastore/test_datastore_protocol.py and test_datastore_checks.py, collected here
where the `store` fixture (this directory's conftest) is parametrised over SQLite and a real
etcd."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "datastore"))

from test_datastore_checks import *  # noqa: F403
from test_datastore_protocol import *  # noqa: F403

pytestmark = pytest.mark.cluster
