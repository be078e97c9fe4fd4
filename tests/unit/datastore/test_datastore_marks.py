"""Marks (`Datastore.read_mark` / `write_marked`): felis' own records, written in one
transaction with resources, compared-and-swapped on their version, never listed or watched.

Here against SQLite; tests/cluster/test_confirm_etcd.py runs the same scenarios on etcd.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from dstest_helpers import GNP, drained, gnp, names, rv

from felis.datastore import Datastore, MarkChanged, ReadView, SqliteDatastore


def test_absent_mark(store: Datastore) -> None:
    mark = store.read_mark("m")
    assert (mark.value, mark.version, mark.revision) == (None, 0, 0)


def test_mark_written_with_objects_in_one_transaction(store: Datastore) -> None:
    store.create(gnp("old", order=1))
    results = store.write_marked("m", 0, {"note": "first"}, apply=[gnp("new"), gnp("old", order=2)])
    assert [r.action for r in results] == ["created", "updated"]
    mark = store.read_mark("m")
    assert mark.value == {"note": "first"}
    assert mark.version != 0
    # Every object of the write is at or below the mark's revision, every later write above.
    assert max(rv(r.object) for r in results) <= mark.revision
    later = store.apply([gnp("new", order=7)])[0].object
    assert rv(later) > mark.revision


def test_stale_version_writes_nothing(store: Datastore) -> None:
    store.write_marked("m", 0, {"n": 1})
    with pytest.raises(MarkChanged):
        store.write_marked("m", 0, {"n": 2}, apply=[gnp("x")])
    assert store.read_mark("m").value == {"n": 1}
    assert names(store.list(GNP).items) == []


def test_apply_and_delete_together_or_not_at_all(store: Datastore) -> None:
    store.create(gnp("gone"))
    version = store.read_mark("m").version

    def refuse(view: ReadView) -> None:
        assert view.get_all([(GNP, "gone")])[(GNP, "gone")] is not None
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError):
        store.write_marked(
            "m", version, {"n": 1}, apply=[gnp("kept")], delete=[(GNP, "gone")], checks=refuse
        )
    assert names(store.list(GNP).items) == ["gone"]
    assert store.read_mark("m").value is None
    store.write_marked("m", version, {"n": 1}, apply=[gnp("kept")], delete=[(GNP, "gone")])
    assert names(store.list(GNP).items) == ["kept"]


def test_removed_mark_never_reuses_a_version(store: Datastore) -> None:
    store.write_marked("m", 0, {"n": 1})
    first = store.read_mark("m").version
    store.write_marked("m", first, None)
    assert store.read_mark("m").value is None
    store.apply([gnp("between")])
    store.write_marked("m", store.read_mark("m").version, {"n": 2})
    second = store.read_mark("m").version
    assert second != first
    # Whoever still holds the first version cannot act on the second record.
    with pytest.raises(MarkChanged):
        store.write_marked("m", first, None)


def test_marks_are_not_resources(store: Datastore) -> None:
    since = store.revision()
    store.write_marked("m", 0, {"n": 1})
    store.write_marked("m", store.read_mark("m").version, {"n": 2}, apply=[gnp("a")])
    assert names(store.list().items) == ["a"]
    assert [(e.type, e.name) for e in drained(store, since)] == [("ADDED", "a")]


def test_sqlite_file_without_marks_reads_none(tmp_path: Path) -> None:
    SqliteDatastore(tmp_path / "f.db").close()
    with SqliteDatastore(tmp_path / "f.db", read_only=True) as store:
        assert store.read_mark("m").value is None
