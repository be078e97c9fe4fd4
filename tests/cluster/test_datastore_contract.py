"""The Datastore contract, run against both backends (the `store` fixture is parametrised).

These are the scenarios of tests/unit/datastore restated so that they hold for every backend:
revisions are compared relative to the store's revision when the test starts (etcd's are
global and start at 1) and a multi-object write only has to give non-decreasing revisions
(SQLite gives each object its own revision, etcd one revision for the transaction).
"""

from __future__ import annotations

import copy
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from felis.datastore import (
    AlreadyExists,
    Compacted,
    Conflict,
    Datastore,
    DatastoreError,
    InvalidObject,
    NotFound,
    WatchEvent,
)
from felis.errors import FelisError

pytestmark = pytest.mark.cluster

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
GNP = "GlobalNetworkPolicy"
BUILTIN = {
    "default": {"order": 1000000, "defaultAction": "Deny"},
    "kube-admin": {"order": 1000, "defaultAction": "Pass"},
    "kube-baseline": {"order": 10000000, "defaultAction": "Pass"},
}


def gnp(name: str, order: float = 100, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = dict(labels)
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": GNP,
        "metadata": meta,
        "spec": {"order": order, "selector": "all()"},
    }


def rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


def names(objs: list[dict[str, Any]]) -> list[str]:
    return [o["metadata"]["name"] for o in objs]


def drained(store: Datastore, since: int) -> list[WatchEvent]:
    stop = threading.Event()
    stop.set()  # pre-set: what is committed, then return
    return list(store.watch(since, stop=stop, poll_interval=0.01))


def collect(
    store: Datastore, since: int, count: int, on_start: Any = None, timeout: float = 30.0
) -> list[WatchEvent]:
    """Watch until `count` events arrived; the timer only bounds a failing test."""
    stop = threading.Event()
    timer = threading.Timer(timeout, stop.set)
    timer.start()
    events: list[WatchEvent] = []
    try:
        iterator = store.watch(since, stop=stop, poll_interval=0.01)
        if on_start is not None:
            on_start()
        for event in iterator:
            events.append(event)
            if len(events) >= count:
                break
    finally:
        timer.cancel()
    return events


# -- create / get / update / delete ------------------------------------------------------


def test_backend_satisfies_protocol(store: Datastore) -> None:
    assert isinstance(store, Datastore)


def test_create_sets_owned_metadata_and_does_not_mutate_input(store: Datastore) -> None:
    base = store.revision()
    obj = gnp("allow-ssh", role="x")
    before = copy.deepcopy(obj)
    created = store.create(obj)
    assert obj == before
    meta = created["metadata"]
    assert rv(created) > base
    assert uuid.UUID(meta["uid"]).version == 4
    assert TIMESTAMP.match(meta["creationTimestamp"])
    assert meta["labels"] == {"role": "x"}
    assert created["spec"] == obj["spec"]
    assert store.get(GNP, "allow-ssh") == created
    assert store.revision() == rv(created)


def test_create_replaces_caller_supplied_uid_and_timestamp(store: Datastore) -> None:
    obj = gnp("a")
    obj["metadata"].update(uid="not-a-uuid", creationTimestamp="1999-01-01T00:00:00Z")
    created = store.create(obj)
    assert created["metadata"]["uid"] != "not-a-uuid"
    assert created["metadata"]["creationTimestamp"] != "1999-01-01T00:00:00Z"


def test_create_existing_raises_already_exists(store: Datastore) -> None:
    store.create(gnp("foo"))
    revision = store.revision()
    with pytest.raises(AlreadyExists) as err:
        store.create(gnp("foo", order=5))
    assert str(err.value) == "resource already exists: GlobalNetworkPolicy(foo)"
    assert store.get(GNP, "foo")["spec"]["order"] == 100
    assert store.revision() == revision


def test_same_name_in_different_kinds_is_different_objects(store: Datastore) -> None:
    store.create(gnp("foo"))
    store.create({"kind": "GlobalNetworkSet", "metadata": {"name": "foo"}, "spec": {"nets": []}})
    assert store.get("GlobalNetworkSet", "foo")["spec"] == {"nets": []}
    assert store.get(GNP, "foo")["spec"]["order"] == 100


def test_create_with_resource_version_is_refused(store: Datastore) -> None:
    base = store.revision()
    obj = gnp("foo")
    obj["metadata"]["resourceVersion"] = "3"
    with pytest.raises(InvalidObject, match=r"GlobalNetworkPolicy\(foo\).*resourceVersion"):
        store.create(obj)
    assert store.revision() == base


def test_get_missing_raises_not_found(store: Datastore) -> None:
    with pytest.raises(NotFound) as err:
        store.get(GNP, "foo")
    assert str(err.value) == "resource does not exist: GlobalNetworkPolicy(foo)"
    assert isinstance(err.value, FelisError)


def test_update_compare_and_swap(store: Datastore) -> None:
    created = store.create(gnp("foo"))
    changed = copy.deepcopy(created)
    changed["spec"]["order"] = 7
    changed["metadata"]["uid"] = "forged"
    updated = store.update(changed)
    assert rv(updated) > rv(created)
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    assert updated["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]
    assert store.get(GNP, "foo")["spec"]["order"] == 7

    with pytest.raises(Conflict) as err:  # the first caller's copy is now stale
        store.update(created)
    assert str(err.value) == (
        f"update conflict: GlobalNetworkPolicy(foo): resource version '{rv(created)}' is out "
        f"of date (latest: {rv(updated)})"
    )
    assert store.get(GNP, "foo")["spec"]["order"] == 7
    assert store.revision() == rv(updated)


def test_update_without_resource_version_conflicts(store: Datastore) -> None:
    created = store.create(gnp("foo"))
    with pytest.raises(Conflict, match=rf"GlobalNetworkPolicy\(foo\).*latest: {rv(created)}\)"):
        store.update(gnp("foo", order=3))
    assert store.get(GNP, "foo")["spec"]["order"] == 100


def test_update_missing_raises_not_found(store: Datastore) -> None:
    obj = gnp("ghost")
    obj["metadata"]["resourceVersion"] = "1"
    with pytest.raises(NotFound, match=r"GlobalNetworkPolicy\(ghost\)"):
        store.update(obj)


def test_update_always_writes_even_when_unchanged(store: Datastore) -> None:
    created = store.create(gnp("a"))
    assert rv(store.update(created)) > rv(created)


def test_delete(store: Datastore) -> None:
    created = store.create(gnp("foo"))
    with pytest.raises(Conflict, match="resource version '999999' is out of date"):
        store.delete(GNP, "foo", resource_version="999999")
    deleted = store.delete(GNP, "foo", resource_version=str(rv(created)))
    assert deleted == created
    assert store.revision() > rv(created)
    with pytest.raises(NotFound):
        store.get(GNP, "foo")
    with pytest.raises(NotFound, match=r"^resource does not exist: GlobalNetworkPolicy\(foo\)$"):
        store.delete(GNP, "foo")


def test_recreate_after_delete_gets_new_identity(store: Datastore) -> None:
    first = store.create(gnp("foo"))
    store.delete(GNP, "foo")
    second = store.create(gnp("foo"))
    assert second["metadata"]["uid"] != first["metadata"]["uid"]
    assert rv(second) > rv(first) + 1


def test_delete_all_is_all_or_nothing(store: Datastore) -> None:
    made = store.create_all([gnp("a"), gnp("b"), gnp("c")])
    revision = store.revision()
    with pytest.raises(NotFound, match=r"GlobalNetworkPolicy\(zzz\)"):
        store.delete_all([(GNP, "a"), (GNP, "zzz")])
    with pytest.raises(Conflict, match=r"GlobalNetworkPolicy\(b\)"):
        store.delete_all([(GNP, "a", None), (GNP, "b", "999999")])
    assert names(store.list().items) == ["a", "b", "c"]
    assert store.revision() == revision
    deleted = store.delete_all([(GNP, "a"), (GNP, "c", str(rv(made[2])))])
    assert names(deleted) == ["a", "c"]
    assert deleted == [made[0], made[2]]
    assert names(store.list().items) == ["b"]
    assert store.revision() > revision


def test_create_all_is_all_or_nothing(store: Datastore) -> None:
    store.create(gnp("b"))
    revision = store.revision()
    with pytest.raises(AlreadyExists) as err:
        store.create_all([gnp("a"), gnp("b"), gnp("c")])
    assert "GlobalNetworkPolicy(b)" in str(err.value)
    assert names(store.list().items) == ["b"]
    assert store.revision() == revision
    created = store.create_all([gnp("a"), gnp("c")])
    versions = [rv(o) for o in created]
    assert versions == sorted(versions) and versions[0] > revision
    assert store.list(GNP).revision == versions[-1]


def test_list_sorted_filtered_and_versioned(store: Datastore) -> None:
    store.create(gnp("zeta"))
    store.create({"kind": "HostEndpoint", "metadata": {"name": "node1-eth0"}, "spec": {}})
    store.create(gnp("alpha"))
    last = store.create(gnp("Mid"))
    listing = store.list(GNP)
    assert names(listing.items) == ["Mid", "alpha", "zeta"]
    assert listing.revision == rv(last)
    everything = store.list()
    assert [(o["kind"], o["metadata"]["name"]) for o in everything.items] == [
        (GNP, "Mid"),
        (GNP, "alpha"),
        (GNP, "zeta"),
        ("HostEndpoint", "node1-eth0"),
    ]
    assert everything.items[1] == store.get(GNP, "alpha")
    assert store.list("Tier").items == []
    assert store.list("Tier").revision == rv(last)


def test_returned_objects_are_copies(store: Datastore) -> None:
    store.create(gnp("foo"))
    got = store.get(GNP, "foo")
    got["spec"]["order"] = 1
    assert store.get(GNP, "foo")["spec"]["order"] == 100


@pytest.mark.parametrize(
    ("obj", "fragment"),
    [
        ("not an object", "expected a JSON object"),
        ({"kind": GNP, "spec": {}}, "metadata must be an object"),
        ({"kind": GNP, "metadata": {}}, "metadata.name"),
        ({"kind": "", "metadata": {"name": "x"}}, "kind must be a non-empty string"),
        ({"kind": "GlobalNetworkSet", "metadata": {"name": "x"}, "spec": {1, 2}}, "JSON"),
    ],
)
def test_invalid_objects_are_refused_with_one_line(
    store: Datastore, obj: object, fragment: str
) -> None:
    base = store.revision()
    with pytest.raises(InvalidObject) as err:
        store.apply([obj])  # type: ignore[list-item]
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)
    assert store.revision() == base


def test_error_messages_are_single_lines(store: Datastore) -> None:
    weird = "bad\nname"
    store.create(gnp(weird))
    errors: list[FelisError] = []
    calls: list[Callable[[], object]] = [
        lambda: store.create(gnp(weird)),
        lambda: store.get(GNP, "nope\r\nx"),
        lambda: store.delete(GNP, weird, resource_version="999999"),
    ]
    for call in calls:
        with pytest.raises(FelisError) as err:
            call()
        errors.append(err.value)
    assert [type(e) for e in errors] == [AlreadyExists, NotFound, Conflict]
    for e in errors:
        assert "\n" not in str(e) and "\r" not in str(e)


# -- apply -------------------------------------------------------------------------------


def test_apply_creates_updates_and_skips_unchanged(store: Datastore) -> None:
    base = store.revision()
    results = store.apply([gnp("a"), gnp("b")])
    assert [(r.action, r.kind, r.name) for r in results] == [
        ("created", GNP, "a"),
        ("created", GNP, "b"),
    ]
    assert base < rv(results[0].object) <= rv(results[1].object)
    first_a = results[0].object
    assert store.get(GNP, "a") == first_a

    again = store.apply([gnp("a"), gnp("b", order=9)])
    assert [r.action for r in again] == ["unchanged", "updated"]
    assert again[0].object == first_a
    assert rv(again[1].object) > rv(results[1].object)
    assert store.revision() == rv(again[1].object)


def test_apply_unchanged_does_not_bump_revision_or_write_events(store: Datastore) -> None:
    store.apply([gnp("a", team="x")])
    before = store.list()
    same = gnp("a", team="x")
    same["metadata"].update(
        annotations={}, uid="whatever", creationTimestamp="2000-01-01T00:00:00Z"
    )
    results = store.apply([same, gnp("a", team="x")])
    assert [r.action for r in results] == ["unchanged", "unchanged"]
    assert results[0].object == before.items[0]
    assert store.list() == before
    assert store.revision() == before.revision
    assert drained(store, before.revision) == []


def test_apply_keeps_identity_and_takes_labels_annotations_spec_from_input(
    store: Datastore,
) -> None:
    created = store.create(gnp("a", old="1"))
    new = gnp("a", order=5, new="2")
    new["metadata"]["annotations"] = {"note": "hi"}
    (result,) = store.apply([new])
    assert result.action == "updated"
    meta = result.object["metadata"]
    assert meta["uid"] == created["metadata"]["uid"]
    assert meta["creationTimestamp"] == created["metadata"]["creationTimestamp"]
    assert meta["labels"] == {"new": "2"}
    assert meta["annotations"] == {"note": "hi"}
    assert result.object["spec"]["order"] == 5
    assert store.get(GNP, "a") == result.object


def test_apply_with_matching_resource_version_updates(store: Datastore) -> None:
    created = store.create(gnp("a"))
    changed = copy.deepcopy(created)
    changed["spec"]["order"] = 1
    (result,) = store.apply([changed])
    assert result.action == "updated"
    assert rv(result.object) > rv(created)


def test_apply_with_resource_version_on_missing_object_creates_it(store: Datastore) -> None:
    obj = gnp("a")
    obj["metadata"]["resourceVersion"] = "42"
    (result,) = store.apply([obj])
    assert result.action == "created"
    assert rv(result.object) == store.revision()


def test_apply_is_all_or_nothing_on_conflict(store: Datastore) -> None:
    store.apply([gnp("a")])
    b = store.apply([gnp("b")])[0].object
    store.apply([gnp("b", order=2)])
    latest = store.revision()
    stale = gnp("b", order=3)
    stale["metadata"]["resourceVersion"] = str(rv(b))
    before = store.list()
    with pytest.raises(Conflict) as err:
        store.apply([gnp("a", order=1), gnp("new-1"), stale, gnp("new-2")])
    assert str(err.value) == (
        f"update conflict: GlobalNetworkPolicy(b): resource version '{rv(b)}' is out of date "
        f"(latest: {latest})"
    )
    assert store.list() == before
    assert store.revision() == latest


def test_apply_of_the_same_key_twice_applies_in_order(store: Datastore) -> None:
    results = store.apply([gnp("a", order=1), gnp("a", order=2), gnp("a", order=2)])
    assert [r.action for r in results] == ["created", "updated", "unchanged"]
    stored = store.get(GNP, "a")
    assert stored["spec"]["order"] == 2
    assert results[2].object == stored
    assert results[1].object == stored


def test_multi_object_writes_and_their_events(store: Datastore) -> None:
    base = store.revision()
    results = store.apply([gnp(f"p{i}") for i in range(5)])
    versions = [rv(r.object) for r in results]
    assert versions == sorted(versions) and versions[0] > base
    store.delete_all([(GNP, "p0"), (GNP, "p1")])
    events = drained(store, base)
    assert [(e.type, e.name) for e in events] == [
        *[("ADDED", f"p{i}") for i in range(5)],
        ("DELETED", "p0"),
        ("DELETED", "p1"),
    ]
    revisions = [e.revision for e in events]
    assert revisions == sorted(revisions)
    assert revisions[:5] == versions
    assert revisions[-1] == store.revision()


def test_apply_empty_list_is_a_no_op(store: Datastore) -> None:
    base = store.revision()
    assert store.apply([]) == []
    assert store.revision() == base


# -- tiers and threads -------------------------------------------------------------------


def test_ensure_initialized_creates_builtin_tiers_once(store: Datastore) -> None:
    store.ensure_initialized()
    tiers = store.list("Tier").items
    assert {t["metadata"]["name"]: t["spec"] for t in tiers} == BUILTIN
    for tier in tiers:
        assert tier["apiVersion"] == "projectcalico.org/v3"
        assert tier["kind"] == "Tier"
        assert tier["metadata"]["uid"]
    before = store.list()
    store.ensure_initialized()
    assert store.list() == before


def test_ensure_initialized_only_adds_what_is_missing(store: Datastore) -> None:
    store.ensure_initialized()
    store.create(gnp("p"))
    admin = store.get("Tier", "kube-admin")
    store.delete("Tier", "default")
    store.ensure_initialized()
    assert store.get("Tier", "kube-admin") == admin
    assert rv(store.get("Tier", "default")) == store.revision()


def test_ensure_initialized_leaves_existing_tiers_alone(store: Datastore) -> None:
    store.create({"kind": "Tier", "metadata": {"name": "default"}, "spec": {"order": 5, "x": "y"}})
    store.ensure_initialized()
    assert store.get("Tier", "default")["spec"] == {"order": 5, "x": "y"}
    assert len(store.list("Tier").items) == 3


def test_one_store_shared_by_threads(store: Datastore) -> None:
    store.ensure_initialized()
    errors: list[BaseException] = []

    def work(prefix: str) -> None:
        try:
            for i in range(25):
                store.apply([gnp(f"{prefix}-{i}")])
                store.get(GNP, f"{prefix}-{i}")
                store.list(GNP)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.list(GNP).items) == 100


# -- watch -------------------------------------------------------------------------------


def test_watch_replays_history_in_order(store: Datastore) -> None:
    base = store.revision()
    store.create(gnp("a"))
    store.apply([gnp("b"), gnp("a", order=1)])
    store.delete(GNP, "b")
    events = drained(store, base)
    assert [(e.type, e.name) for e in events] == [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("MODIFIED", "a"),
        ("DELETED", "b"),
    ]
    assert [e.revision for e in events] == sorted(e.revision for e in events)
    assert events[2].object == store.get(GNP, "a")


def test_watch_event_objects(store: Datastore) -> None:
    base = store.revision()
    created = store.create(gnp("a"))
    store.delete(GNP, "a")
    added, deleted = drained(store, base)
    assert added.object == created
    assert (added.kind, added.name) == (GNP, "a")
    # A deletion carries the object as it was last stored; the event has its own revision.
    assert deleted.object == created
    assert deleted.revision == store.revision() > rv(created)


def test_watch_from_listing_revision_sees_only_later_changes(store: Datastore) -> None:
    store.apply([gnp("a"), gnp("b")])
    listing = store.list()

    def writer() -> None:
        store.apply([gnp("c")])
        store.apply([gnp("a", order=2)])
        store.delete(GNP, "b")

    events = collect(store, listing.revision, 3, on_start=writer)
    assert [(e.type, e.name) for e in events] == [
        ("ADDED", "c"),
        ("MODIFIED", "a"),
        ("DELETED", "b"),
    ]
    assert all(e.revision > listing.revision for e in events)
    assert events[1].object["spec"]["order"] == 2


def test_watch_blocks_then_sees_writes_from_another_thread(store: Datastore) -> None:
    base = store.revision()
    writer = threading.Thread(target=lambda: [store.create(gnp(f"p{i}")) for i in range(20)])
    events = collect(store, base, 20, on_start=writer.start)
    writer.join()
    assert [e.name for e in events] == [f"p{i}" for i in range(20)]
    assert [e.revision for e in events] == [rv(store.get(GNP, f"p{i}")) for i in range(20)]


def test_stop_ends_a_blocked_watch(store: Datastore) -> None:
    base = store.revision()
    stop = threading.Event()
    seen: list[str] = []
    done = threading.Event()
    iterator = store.watch(base, stop=stop, poll_interval=0.01)

    def consume() -> None:
        seen.extend(e.name for e in iterator)
        done.set()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    store.create(gnp("a"))
    deadline = time.monotonic() + 30
    while not seen and time.monotonic() < deadline:
        time.sleep(0.005)
    assert seen == ["a"]
    assert not done.is_set()  # still blocked waiting for more
    stop.set()
    assert done.wait(30)
    thread.join()


def test_compaction(store: Datastore) -> None:
    base = store.revision()
    made = [store.create(gnp(f"p{i}")) for i in range(10)]
    keep = rv(made[5])
    store.compact(keep)  # history before p5 is gone
    with pytest.raises(Compacted) as err:
        store.watch(rv(made[3]))
    assert "\n" not in str(err.value)
    assert str(rv(made[3])) in str(err.value)
    assert [e.name for e in drained(store, keep - 1)] == [f"p{i}" for i in range(5, 10)]
    assert [e.name for e in drained(store, rv(made[7]))] == ["p8", "p9"]
    store.compact(base + 1)  # backwards: a no-op
    assert [e.name for e in drained(store, keep - 1)] == [f"p{i}" for i in range(5, 10)]
    assert len(store.list().items) == 10
    assert store.revision() == rv(made[-1])
    with pytest.raises(DatastoreError, match=f"latest revision is {rv(made[-1])}"):
        store.compact(rv(made[-1]) + 2)


def test_compaction_while_watching_never_skips_silently(store: Datastore) -> None:
    base = store.revision()
    for i in range(3):
        store.create(gnp(f"p{i}"))
    stop = threading.Event()
    iterator = store.watch(base, stop=stop, poll_interval=0.01)
    assert [next(iterator).name for _ in range(3)] == ["p0", "p1", "p2"]
    later = [store.create(gnp(f"p{i}")) for i in range(3, 6)]
    store.compact(rv(later[-1]))  # history up to p4 is gone
    timer = threading.Timer(30, stop.set)  # only bounds a failing test
    timer.start()
    got: list[str] = []
    try:
        # SQLite notices the compaction at its next poll. An etcd watcher that is caught up
        # already has p3..p5 on its stream (etcd cancels only watchers that still need the
        # discarded history; see test_etcd_watch.py for that case). Either way nothing may
        # be skipped silently.
        with pytest.raises(Compacted):
            while len(got) < 3:
                got.append(next(iterator).name)
            raise Compacted(0, 0)
    finally:
        timer.cancel()
    assert got in ([], ["p3", "p4", "p5"])


def test_watch_ends_when_store_is_closed(store: Datastore) -> None:
    base = store.revision()
    iterator = store.watch(base, poll_interval=0.01)
    store.create(gnp("a"))
    assert next(iterator).name == "a"
    store.close()
    assert list(iterator) == []
