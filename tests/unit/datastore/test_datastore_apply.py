from __future__ import annotations

import copy
import threading

import pytest
from dstest_helpers import gnp

from felis.datastore import Conflict, SqliteDatastore


def test_apply_creates_updates_and_skips_unchanged(ds: SqliteDatastore) -> None:
    results = ds.apply([gnp("a"), gnp("b")])
    assert [(r.action, r.kind, r.name) for r in results] == [
        ("created", "GlobalNetworkPolicy", "a"),
        ("created", "GlobalNetworkPolicy", "b"),
    ]
    assert [r.object["metadata"]["resourceVersion"] for r in results] == ["1", "2"]
    first_a = results[0].object

    again = ds.apply([gnp("a"), gnp("b", order=9)])
    assert [r.action for r in again] == ["unchanged", "updated"]
    assert again[0].object == first_a
    assert again[1].object["metadata"]["resourceVersion"] == "3"
    assert ds.revision() == 3


def test_apply_unchanged_does_not_bump_revision_or_write_events(ds: SqliteDatastore) -> None:
    ds.apply([gnp("a", team="x")])
    before = ds.list()
    # Empty labels/annotations maps count as absent, and owned fields in the input are ignored.
    same = gnp("a", team="x")
    same["metadata"].update(
        annotations={}, uid="whatever", creationTimestamp="2000-01-01T00:00:00Z"
    )
    results = ds.apply([same, gnp("a", team="x")])
    assert [r.action for r in results] == ["unchanged", "unchanged"]
    assert results[0].object["metadata"]["resourceVersion"] == "1"
    assert ds.list() == before
    assert ds.revision() == 1
    assert list(ds.watch(1, stop=_set_event())) == []


def _set_event() -> threading.Event:
    event = threading.Event()
    event.set()
    return event


def test_apply_keeps_identity_and_takes_labels_annotations_spec_from_input(
    ds: SqliteDatastore,
) -> None:
    created = ds.create(gnp("a", old="1"))
    new = gnp("a", order=5, new="2")
    new["metadata"]["annotations"] = {"note": "hi"}
    (result,) = ds.apply([new])
    assert result.action == "updated"
    meta = result.object["metadata"]
    assert meta["uid"] == created["metadata"]["uid"]
    assert meta["creationTimestamp"] == created["metadata"]["creationTimestamp"]
    assert meta["labels"] == {"new": "2"}
    assert meta["annotations"] == {"note": "hi"}
    assert result.object["spec"]["order"] == 5


def test_apply_with_matching_resource_version_updates(ds: SqliteDatastore) -> None:
    created = ds.create(gnp("a"))
    changed = copy.deepcopy(created)
    changed["spec"]["order"] = 1
    (result,) = ds.apply([changed])
    assert result.action == "updated"
    assert result.object["metadata"]["resourceVersion"] == "2"


def test_apply_with_resource_version_on_missing_object_creates_it(ds: SqliteDatastore) -> None:
    obj = gnp("a")
    obj["metadata"]["resourceVersion"] = "42"
    (result,) = ds.apply([obj])
    assert result.action == "created"
    assert result.object["metadata"]["resourceVersion"] == "1"


def test_apply_is_all_or_nothing_on_conflict(ds: SqliteDatastore) -> None:
    ds.apply([gnp("a"), gnp("b")])
    stale = gnp("b", order=3)
    stale["metadata"]["resourceVersion"] = "1"  # b is at 2
    before = ds.list()
    with pytest.raises(Conflict) as err:
        ds.apply([gnp("a", order=1), gnp("new-1"), stale, gnp("new-2")])
    assert str(err.value) == (
        "update conflict: GlobalNetworkPolicy(b): resource version '1' is out of date (latest: 2)"
    )
    assert ds.list() == before
    assert ds.revision() == 2


def test_apply_of_the_same_key_twice_applies_in_order(ds: SqliteDatastore) -> None:
    results = ds.apply([gnp("a", order=1), gnp("a", order=2), gnp("a", order=2)])
    assert [r.action for r in results] == ["created", "updated", "unchanged"]
    assert ds.get("GlobalNetworkPolicy", "a")["spec"]["order"] == 2
    assert ds.revision() == 2


def test_update_always_writes_even_when_unchanged(ds: SqliteDatastore) -> None:
    created = ds.create(gnp("a"))
    assert ds.update(created)["metadata"]["resourceVersion"] == "2"


def test_every_write_gets_its_own_consecutive_revision(ds: SqliteDatastore) -> None:
    results = ds.apply([gnp(f"p{i}") for i in range(5)])
    assert [r.object["metadata"]["resourceVersion"] for r in results] == ["1", "2", "3", "4", "5"]
    ds.delete_all([("GlobalNetworkPolicy", "p0"), ("GlobalNetworkPolicy", "p1")])
    assert ds.revision() == 7
    events = list(ds.watch(0, stop=_set_event()))
    assert [e.revision for e in events] == [1, 2, 3, 4, 5, 6, 7]


def test_apply_empty_list_is_a_no_op(ds: SqliteDatastore) -> None:
    assert ds.apply([]) == []
    assert ds.revision() == 0
