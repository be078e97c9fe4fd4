"""A write the file system refuses: one line naming the file and why, nothing changed.

The real faults (a full tmpfs, a read-only bind mount, a running agent) are in
tests/kernel/test_sqlite_faults_kernel.py; here the file system's state is stubbed, so the message
rules are checked without root."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from felis.datastore import SqliteDatastore, Unavailable
from felis.datastore import sqlite as sqlite_module


def gns(name: str) -> dict[str, Any]:
    return {"kind": "GlobalNetworkSet", "metadata": {"name": name}, "spec": {"nets": []}}


class _Stats:
    def __init__(self, flag: int, free: int) -> None:
        self.f_flag, self.f_bavail = flag, free


@pytest.mark.parametrize(
    ("flag", "free", "cause"),
    [
        (os.ST_RDONLY, 100, "(read-only file system)"),
        (0, 0, "(no space left on device)"),
        (0, 100, ""),
    ],
)
def test_refused_write_names_the_file_and_the_cause(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, flag: int, free: int, cause: str
) -> None:
    with SqliteDatastore(db_path) as writer:
        writer.apply([gns("kept")])
        revision = writer.revision()
    # Opened read-only, SQLite refuses the write exactly as on a read-only file system.
    monkeypatch.setattr(sqlite_module.os, "statvfs", lambda path: _Stats(flag, free))
    with SqliteDatastore(db_path, read_only=True) as store, pytest.raises(Unavailable) as err:
        store.apply([gns("new"), gns("other")])
    message = str(err.value)
    assert message.startswith(f"sqlite datastore {db_path}: cannot write: ")
    assert "\n" not in message
    assert message.endswith(cause or "readonly database")
    monkeypatch.undo()
    with SqliteDatastore(db_path) as store:
        assert [o["metadata"]["name"] for o in store.list().items] == ["kept"]
        assert store.revision() == revision
