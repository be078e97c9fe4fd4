"""The namespaced-kind scenarios of tests/unit/datastore/test_datastore_namespaced.py against
both backends (the `store` fixture of this directory's conftest is SQLite and a real etcd)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "datastore"))

from test_datastore_namespaced import *  # noqa: F403

pytestmark = pytest.mark.cluster
