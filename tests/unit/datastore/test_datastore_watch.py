from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from dstest_helpers import collect_events, finish, gnp, start_worker, wait_for_files

from felis.datastore import Compacted, DatastoreError, SqliteDatastore


def drained(store: SqliteDatastore, since: int) -> list[tuple[str, str, int]]:
    stop = threading.Event()
    stop.set()  # pre-set: yield what is committed, then return
    return [(e.type, e.name, e.revision) for e in store.watch(since, stop=stop)]


def test_watch_from_zero_replays_history_in_order(ds: SqliteDatastore) -> None:
    ds.create(gnp("a"))
    ds.apply([gnp("b"), gnp("a", order=1)])
    ds.delete("GlobalNetworkPolicy", "b")
    assert drained(ds, 0) == [
        ("ADDED", "a", 1),
        ("ADDED", "b", 2),
        ("MODIFIED", "a", 3),
        ("DELETED", "b", 4),
    ]


def test_watch_event_objects(ds: SqliteDatastore) -> None:
    created = ds.create(gnp("a"))
    ds.delete("GlobalNetworkPolicy", "a")
    stop = threading.Event()
    stop.set()
    added, deleted = list(ds.watch(0, stop=stop))
    assert added.object == created
    assert (added.kind, added.name) == ("GlobalNetworkPolicy", "a")
    # A deletion carries the object as it was last stored; the event has its own revision.
    assert deleted.object == created
    assert deleted.revision == 2


def test_watch_from_listing_revision_sees_only_later_changes(ds: SqliteDatastore) -> None:
    ds.apply([gnp("a"), gnp("b")])
    listing = ds.list()

    def writer() -> None:
        ds.apply([gnp("c")])
        ds.apply([gnp("a", order=2)])
        ds.delete("GlobalNetworkPolicy", "b")

    events = collect_events(ds, listing.revision, 3, on_start=writer)
    assert [(e.type, e.name, e.revision) for e in events] == [
        ("ADDED", "c", 3),
        ("MODIFIED", "a", 4),
        ("DELETED", "b", 5),
    ]
    assert events[1].object["spec"]["order"] == 2


def test_watch_blocks_then_sees_writes_from_another_thread(ds: SqliteDatastore) -> None:
    writer = threading.Thread(target=lambda: [ds.create(gnp(f"p{i}")) for i in range(20)])
    events = collect_events(ds, 0, 20, on_start=writer.start)
    writer.join()
    assert [e.name for e in events] == [f"p{i}" for i in range(20)]
    assert [e.revision for e in events] == list(range(1, 21))


def test_stop_ends_a_blocked_watch(ds: SqliteDatastore) -> None:
    stop = threading.Event()
    seen: list[str] = []
    done = threading.Event()

    def consume() -> None:
        seen.extend(e.name for e in ds.watch(0, stop=stop, poll_interval=0.01))
        done.set()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    ds.create(gnp("a"))
    deadline = time.monotonic() + 30
    while not seen and time.monotonic() < deadline:
        time.sleep(0.005)
    assert seen == ["a"]
    assert not done.is_set()  # still blocked waiting for more
    stop.set()
    assert done.wait(30)
    thread.join()


def test_watch_sees_changes_made_by_another_process(db_path: Path, tmp_path: Path) -> None:
    with SqliteDatastore(db_path) as store:
        store.create(gnp("before"))
        since = store.revision()
        ready, go = tmp_path / "ready", tmp_path / "go"
        proc = start_worker("apply", str(db_path), str(ready), str(go), "remote", "30", "7")
        wait_for_files([ready], [proc], 60)
        events = collect_events(store, since, 30, on_start=go.touch)
        finish([proc])
    assert [e.name for e in events] == [f"remote-{i:05d}" for i in range(30)]
    assert [e.revision for e in events] == list(range(since + 1, since + 31))
    assert {e.type for e in events} == {"ADDED"}


def test_compaction(ds: SqliteDatastore) -> None:
    for i in range(10):
        ds.create(gnp(f"p{i}"))
    ds.compact(6)  # events 1..5 are gone
    with pytest.raises(Compacted) as err:
        ds.watch(4)
    assert "\n" not in str(err.value)
    assert "4" in str(err.value) and "6" in str(err.value)
    assert [r for _, _, r in drained(ds, 5)] == [6, 7, 8, 9, 10]
    assert [r for _, _, r in drained(ds, 8)] == [9, 10]
    # Compacting backwards is a no-op; compaction never changes the data or the revision.
    ds.compact(2)
    assert [r for _, _, r in drained(ds, 5)] == [6, 7, 8, 9, 10]
    assert len(ds.list().items) == 10
    assert ds.revision() == 10
    ds.compact(11)
    assert drained(ds, 10) == []
    with pytest.raises(Compacted):
        ds.watch(9)
    with pytest.raises(DatastoreError, match="latest revision is 10"):
        ds.compact(12)


def test_compaction_while_watching_raises_from_the_iterator(ds: SqliteDatastore) -> None:
    for i in range(3):
        ds.create(gnp(f"p{i}"))
    iterator = ds.watch(0, stop=threading.Event(), poll_interval=0.01)
    first = next(iterator)  # the watch has read its first batch (events 1..3)
    assert first.revision == 1
    assert [next(iterator).revision for _ in range(2)] == [2, 3]
    for i in range(3, 6):
        ds.create(gnp(f"p{i}"))
    ds.compact(5)  # the watcher's next event (4) is gone
    with pytest.raises(Compacted):
        next(iterator)


def test_watch_ends_when_store_is_closed(db_path: Path) -> None:
    store = SqliteDatastore(db_path)
    iterator = store.watch(0, poll_interval=0.01)
    store.create(gnp("a"))
    assert next(iterator).name == "a"
    store.close()
    assert list(iterator) == []
