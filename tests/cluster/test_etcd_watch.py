"""Watching etcd across member restarts and compaction."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from etcd_harness import EtcdCluster, etcd_store

from felis.datastore import Compacted, WatchEvent

pytestmark = pytest.mark.cluster


def gns(name: str, **labels: str) -> dict[str, Any]:
    return {"kind": "GlobalNetworkSet", "metadata": {"name": name, "labels": labels}, "spec": {}}


def _bounded_stop(seconds: float = 60) -> tuple[threading.Event, threading.Timer]:
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)  # only bounds a failing test
    timer.start()
    return stop, timer


def _take(iterator: Iterator[WatchEvent], count: int) -> list[WatchEvent]:
    return [next(iterator) for _ in range(count)]


def test_watch_resumes_after_the_member_restarts(own_etcd: EtcdCluster) -> None:
    member = own_etcd.members[0]
    with etcd_store(own_etcd) as store:
        base = store.revision()
        store.apply([gns("a")])
        stop, timer = _bounded_stop()
        try:
            iterator = store.watch(base, stop=stop, poll_interval=0.01)
            assert [e.name for e in _take(iterator, 1)] == ["a"]
            # The stream breaks under the watcher; changes happen before it looks again.
            own_etcd.restart_member(member)
            own_etcd.wait_healthy()
            store.apply([gns("b")])
            store.apply([gns("a", v="2")])
            store.delete("GlobalNetworkSet", "b")
            events = _take(iterator, 3)
        finally:
            timer.cancel()
            stop.set()
    assert [(e.type, e.name) for e in events] == [
        ("ADDED", "b"),
        ("MODIFIED", "a"),
        ("DELETED", "b"),
    ]
    revisions = [e.revision for e in events]
    assert revisions == sorted(set(revisions))  # no repeat of what was already seen


def test_compaction_while_disconnected_raises_compacted(own_etcd: EtcdCluster) -> None:
    member = own_etcd.members[0]
    with etcd_store(own_etcd) as store:
        base = store.revision()
        store.apply([gns("a")])
        stop, timer = _bounded_stop()
        try:
            iterator = store.watch(base, stop=stop, poll_interval=0.01)
            assert next(iterator).name == "a"
            own_etcd.restart_member(member)
            own_etcd.wait_healthy()
            store.apply([gns("b")])
            store.apply([gns("c")])
            store.compact(store.revision())  # "b" is history the watcher never saw
            with pytest.raises(Compacted) as err:
                next(iterator)
        finally:
            timer.cancel()
            stop.set()
        assert "list again and resync" in str(err.value)
        # The documented recovery: list, then watch from the listing's revision.
        listing = store.list("GlobalNetworkSet")
        assert [o["metadata"]["name"] for o in listing.items] == ["a", "b", "c"]
        stop, timer = _bounded_stop()
        try:
            iterator = store.watch(listing.revision, stop=stop, poll_interval=0.01)
            store.apply([gns("d")])
            assert next(iterator).name == "d"
        finally:
            timer.cancel()
            stop.set()


def test_watch_from_a_compacted_revision_fails_at_the_call(own_etcd: EtcdCluster) -> None:
    with etcd_store(own_etcd) as store:
        first = store.apply([gns("a")])[0].object
        store.apply([gns("b")])
        store.apply([gns("c")])
        latest = store.revision()
        store.compact(latest)
        with pytest.raises(Compacted) as err:
            store.watch(int(first["metadata"]["resourceVersion"]))
        assert err.value.oldest_kept == latest
