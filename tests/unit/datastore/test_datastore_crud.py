from __future__ import annotations

import copy
import re
import uuid
from pathlib import Path

import pytest
from dstest_helpers import gnp

from felis.datastore import (
    AlreadyExists,
    Conflict,
    Datastore,
    InvalidObject,
    NotFound,
    SqliteDatastore,
)
from felis.errors import FelisError

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def test_sqlite_backend_satisfies_protocol(ds: SqliteDatastore) -> None:
    assert isinstance(ds, Datastore)


def test_create_sets_owned_metadata_and_does_not_mutate_input(ds: SqliteDatastore) -> None:
    obj = gnp("allow-ssh", role="x")
    before = copy.deepcopy(obj)
    created = ds.create(obj)
    assert obj == before
    meta = created["metadata"]
    assert meta["resourceVersion"] == "1"
    assert uuid.UUID(meta["uid"]).version == 4
    assert TIMESTAMP.match(meta["creationTimestamp"])
    assert meta["labels"] == {"role": "x"}
    assert created["spec"] == obj["spec"]
    assert ds.get("GlobalNetworkPolicy", "allow-ssh") == created
    assert ds.revision() == 1


def test_create_replaces_caller_supplied_uid_and_timestamp(ds: SqliteDatastore) -> None:
    obj = gnp("a")
    obj["metadata"].update(uid="not-a-uuid", creationTimestamp="1999-01-01T00:00:00Z")
    created = ds.create(obj)
    assert created["metadata"]["uid"] != "not-a-uuid"
    assert created["metadata"]["creationTimestamp"] != "1999-01-01T00:00:00Z"


def test_create_existing_raises_already_exists(ds: SqliteDatastore) -> None:
    ds.create(gnp("foo"))
    with pytest.raises(AlreadyExists) as err:
        ds.create(gnp("foo", order=5))
    assert str(err.value) == "resource already exists: GlobalNetworkPolicy(foo)"
    assert ds.get("GlobalNetworkPolicy", "foo")["spec"]["order"] == 100
    assert ds.revision() == 1


def test_same_name_in_different_kinds_is_different_objects(ds: SqliteDatastore) -> None:
    ds.create(gnp("foo"))
    other = {"kind": "GlobalNetworkSet", "metadata": {"name": "foo"}, "spec": {"nets": []}}
    ds.create(other)
    assert ds.get("GlobalNetworkSet", "foo")["spec"] == {"nets": []}
    assert ds.get("GlobalNetworkPolicy", "foo")["spec"]["order"] == 100


def test_create_with_resource_version_is_refused(ds: SqliteDatastore) -> None:
    obj = gnp("foo")
    obj["metadata"]["resourceVersion"] = "3"
    with pytest.raises(InvalidObject, match=r"GlobalNetworkPolicy\(foo\).*resourceVersion"):
        ds.create(obj)
    assert ds.revision() == 0


def test_get_missing_raises_not_found(ds: SqliteDatastore) -> None:
    with pytest.raises(NotFound) as err:
        ds.get("GlobalNetworkPolicy", "foo")
    assert str(err.value) == "resource does not exist: GlobalNetworkPolicy(foo)"
    assert isinstance(err.value, FelisError)


def test_update_compare_and_swap(ds: SqliteDatastore) -> None:
    created = ds.create(gnp("foo"))
    changed = copy.deepcopy(created)
    changed["spec"]["order"] = 7
    changed["metadata"]["uid"] = "forged"
    updated = ds.update(changed)
    assert updated["metadata"]["resourceVersion"] == "2"
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    assert updated["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]
    assert ds.get("GlobalNetworkPolicy", "foo")["spec"]["order"] == 7

    # The first caller's copy is now stale.
    with pytest.raises(Conflict) as err:
        ds.update(created)
    assert str(err.value) == (
        "update conflict: GlobalNetworkPolicy(foo): resource version '1' is out of date (latest: 2)"
    )
    assert ds.get("GlobalNetworkPolicy", "foo")["spec"]["order"] == 7
    assert ds.revision() == 2


def test_update_without_resource_version_conflicts(ds: SqliteDatastore) -> None:
    ds.create(gnp("foo"))
    with pytest.raises(Conflict, match=r"GlobalNetworkPolicy\(foo\).*latest: 1"):
        ds.update(gnp("foo", order=3))
    assert ds.get("GlobalNetworkPolicy", "foo")["spec"]["order"] == 100


def test_update_missing_raises_not_found(ds: SqliteDatastore) -> None:
    obj = gnp("ghost")
    obj["metadata"]["resourceVersion"] = "1"
    with pytest.raises(NotFound, match=r"GlobalNetworkPolicy\(ghost\)"):
        ds.update(obj)


def test_delete(ds: SqliteDatastore) -> None:
    created = ds.create(gnp("foo"))
    with pytest.raises(Conflict, match="resource version '9' is out of date"):
        ds.delete("GlobalNetworkPolicy", "foo", resource_version="9")
    deleted = ds.delete("GlobalNetworkPolicy", "foo", resource_version="1")
    assert deleted == created
    assert ds.revision() == 2
    with pytest.raises(NotFound):
        ds.get("GlobalNetworkPolicy", "foo")
    with pytest.raises(NotFound, match=r"^resource does not exist: GlobalNetworkPolicy\(foo\)$"):
        ds.delete("GlobalNetworkPolicy", "foo")


def test_recreate_after_delete_gets_new_identity(ds: SqliteDatastore) -> None:
    first = ds.create(gnp("foo"))
    ds.delete("GlobalNetworkPolicy", "foo")
    second = ds.create(gnp("foo"))
    assert second["metadata"]["uid"] != first["metadata"]["uid"]
    assert second["metadata"]["resourceVersion"] == "3"


def test_delete_all_is_all_or_nothing(ds: SqliteDatastore) -> None:
    ds.create_all([gnp("a"), gnp("b"), gnp("c")])
    with pytest.raises(NotFound, match=r"GlobalNetworkPolicy\(zzz\)"):
        ds.delete_all([("GlobalNetworkPolicy", "a"), ("GlobalNetworkPolicy", "zzz")])
    with pytest.raises(Conflict, match=r"GlobalNetworkPolicy\(b\)"):
        ds.delete_all([("GlobalNetworkPolicy", "a", None), ("GlobalNetworkPolicy", "b", "1")])
    assert [o["metadata"]["name"] for o in ds.list().items] == ["a", "b", "c"]
    assert ds.revision() == 3
    deleted = ds.delete_all([("GlobalNetworkPolicy", "a"), ("GlobalNetworkPolicy", "c", "3")])
    assert [o["metadata"]["name"] for o in deleted] == ["a", "c"]
    assert [o["metadata"]["name"] for o in ds.list().items] == ["b"]
    assert ds.revision() == 5


def test_create_all_is_all_or_nothing(ds: SqliteDatastore) -> None:
    ds.create(gnp("b"))
    with pytest.raises(AlreadyExists) as err:
        ds.create_all([gnp("a"), gnp("b"), gnp("c")])
    assert "GlobalNetworkPolicy(b)" in str(err.value)
    assert [o["metadata"]["name"] for o in ds.list().items] == ["b"]
    assert ds.revision() == 1
    created = ds.create_all([gnp("a"), gnp("c")])
    assert [o["metadata"]["resourceVersion"] for o in created] == ["2", "3"]


def test_list_sorted_filtered_and_versioned(ds: SqliteDatastore) -> None:
    ds.create(gnp("zeta"))
    ds.create({"kind": "HostEndpoint", "metadata": {"name": "node1-eth0"}, "spec": {}})
    ds.create(gnp("alpha"))
    ds.create(gnp("Mid"))
    listing = ds.list("GlobalNetworkPolicy")
    assert [o["metadata"]["name"] for o in listing.items] == ["Mid", "alpha", "zeta"]
    assert listing.revision == 4
    everything = ds.list()
    assert [(o["kind"], o["metadata"]["name"]) for o in everything.items] == [
        ("GlobalNetworkPolicy", "Mid"),
        ("GlobalNetworkPolicy", "alpha"),
        ("GlobalNetworkPolicy", "zeta"),
        ("HostEndpoint", "node1-eth0"),
    ]
    assert ds.list("Tier").items == []
    assert ds.list("Tier").revision == 4


def test_returned_objects_are_copies(ds: SqliteDatastore) -> None:
    ds.create(gnp("foo"))
    got = ds.get("GlobalNetworkPolicy", "foo")
    got["spec"]["order"] = 1
    assert ds.get("GlobalNetworkPolicy", "foo")["spec"]["order"] == 100


@pytest.mark.parametrize(
    ("obj", "fragment"),
    [
        ("not an object", "expected a JSON object"),
        ({"kind": "GlobalNetworkPolicy", "spec": {}}, "metadata must be an object"),
        ({"kind": "GlobalNetworkPolicy", "metadata": {}}, "metadata.name"),
        ({"kind": "", "metadata": {"name": "x"}}, "kind must be a non-empty string"),
        ({"kind": "GlobalNetworkSet", "metadata": {"name": "x"}, "spec": {1, 2}}, "JSON"),
    ],
)
def test_invalid_objects_are_refused_with_one_line(
    ds: SqliteDatastore, obj: object, fragment: str
) -> None:
    with pytest.raises(InvalidObject) as err:
        ds.apply([obj])  # type: ignore[list-item]
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)
    assert ds.revision() == 0


def test_data_survives_reopen(db_path: Path) -> None:
    with SqliteDatastore(db_path) as first:
        created = first.create(gnp("foo"))
    with SqliteDatastore(db_path) as second:
        assert second.get("GlobalNetworkPolicy", "foo") == created
        assert second.revision() == 1


def test_parent_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c" / "felis.db"
    with SqliteDatastore(path) as store:
        store.create(gnp("foo"))
    assert path.is_file()


def test_closed_store_refuses_calls(db_path: Path) -> None:
    store = SqliteDatastore(db_path)
    store.close()
    store.close()  # idempotent
    with pytest.raises(FelisError, match="closed"):
        store.get("GlobalNetworkPolicy", "foo")


def test_error_messages_are_single_lines(ds: SqliteDatastore) -> None:
    weird = "bad\nname"
    ds.create(gnp(weird))
    errors: list[FelisError] = []
    for call in (
        lambda: ds.create(gnp(weird)),
        lambda: ds.get("GlobalNetworkPolicy", "nope\r\nx"),
        lambda: ds.delete("GlobalNetworkPolicy", weird, resource_version="99"),
    ):
        with pytest.raises(FelisError) as err:
            call()
        errors.append(err.value)
    assert [type(e) for e in errors] == [AlreadyExists, NotFound, Conflict]
    for e in errors:
        assert "\n" not in str(e) and "\r" not in str(e)
        assert str(e)
