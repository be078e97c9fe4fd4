"""A three-member etcd cluster losing members under a felis client."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from etcd_harness import EtcdCluster, Member, etcd_store, poll

from felis.datastore import Unavailable, WatchEvent

pytestmark = pytest.mark.cluster

WRITES = 60


def gns(name: str) -> dict[str, Any]:
    return {"kind": "GlobalNetworkSet", "metadata": {"name": name}, "spec": {"nets": []}}


def leader(cluster: EtcdCluster) -> Member:
    for member in cluster.running():
        status = cluster.etcd_request(member, "/v3/maintenance/status", {})
        if status["leader"] == status["header"]["member_id"]:
            return member
    raise AssertionError("no leader")


def member_of(cluster: EtcdCluster, url: str) -> Member:
    (member,) = [m for m in cluster.members if m.client_url == url]
    return member


class Watcher(threading.Thread):
    """Collects every event from `since` until stopped; records what ended it."""

    def __init__(self, cluster: EtcdCluster, since: int) -> None:
        super().__init__(daemon=True)
        self.store = etcd_store(cluster)
        self.since = since
        self.stop = threading.Event()
        self.events: list[WatchEvent] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for event in self.store.watch(self.since, stop=self.stop, poll_interval=0.01):
                self.events.append(event)
        except BaseException as exc:
            self.error = exc

    def finish(self) -> None:
        self.stop.set()
        self.join(60)
        self.store.close()


def test_members_stopped_while_writing(etcd3: EtcdCluster) -> None:
    store = etcd_store(etcd3)
    watcher = Watcher(etcd3, store.revision())
    watcher.start()
    try:
        first = member_of(etcd3, store.client.preferred)  # where requests go first
        for i in range(WRITES):
            if i == WRITES // 3:
                etcd3.stop_member(first)
            if i == 2 * WRITES // 3:
                etcd3.start_member(first)
                etcd3.wait_healthy([first])
                etcd3.stop_member(leader(etcd3))  # an election in the middle of the writes
            (result,) = store.apply([gns(f"s{i:03d}")])
            assert result.action == "created"
        names = [o["metadata"]["name"] for o in store.list("GlobalNetworkSet").items]
        assert names == [f"s{i:03d}" for i in range(WRITES)]
        poll(lambda: len(watcher.events) >= WRITES or watcher.error is not None, what="events")
        assert watcher.error is None
        assert [e.name for e in watcher.events] == names
        assert [e.type for e in watcher.events] == ["ADDED"] * WRITES

        # Every member down: a quick one-line Unavailable naming the endpoints.
        for member in etcd3.running():
            etcd3.stop_member(member)
        with pytest.raises(Unavailable) as err:
            store.apply([gns("while-down")])
        assert all(url in str(err.value) for url in etcd3.endpoints)
        assert "\n" not in str(err.value)
        with pytest.raises(Unavailable):
            store.list()

        # Back up: the same client object works again and no write was half-done.
        for member in etcd3.members:
            etcd3.start_member(member)
        etcd3.wait_healthy()
        assert len(store.list("GlobalNetworkSet").items) == WRITES
        last = store.apply([gns("after")])[0].object
        assert store.get("GlobalNetworkSet", "after") == last
    finally:
        watcher.finish()
        store.close()


def test_watch_survives_losing_its_member(etcd3: EtcdCluster) -> None:
    with etcd_store(etcd3) as store:
        watcher = Watcher(etcd3, store.revision())
        watcher.start()
        try:
            store.apply([gns("before")])
            poll(lambda: len(watcher.events) == 1, what="first event")
            # The member the watch stream is attached to.
            etcd3.stop_member(member_of(etcd3, watcher.store.client.preferred))
            store.apply([gns("after-1")])
            store.apply([gns("after-2")])
            poll(lambda: len(watcher.events) == 3 or watcher.error is not None, what="events")
            assert watcher.error is None
            assert [e.name for e in watcher.events] == ["before", "after-1", "after-2"]
        finally:
            watcher.finish()
