"""Listing etcd in pages: one consistent snapshot however many requests it takes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from etcd_harness import EtcdCluster, etcd_store

from felis.datastore.etcd import EtcdDatastore
from felis.datastore.etcd_client import unb64

pytestmark = pytest.mark.cluster

OBJECTS = 23
PAGE = 4  # 23 objects: five full pages and a short one


def gns(name: str) -> dict[str, Any]:
    return {"kind": "GlobalNetworkSet", "metadata": {"name": name}, "spec": {"nets": []}}


def names_of(store: EtcdDatastore) -> list[str]:
    return [o["metadata"]["name"] for o in store.list("GlobalNetworkSet").items]


def spy_ranges(store: EtcdDatastore, between_pages: Callable[[int], None]) -> list[dict[str, Any]]:
    """Every paged /kv/range payload the store sends, failed ones included; `between_pages(n)`
    runs when the n-th of them has been answered."""
    sent: list[dict[str, Any]] = []
    call = store.client.call

    def spying(path: str, payload: dict[str, Any], *, write: bool = False) -> Any:
        paged = path == "/kv/range" and "limit" in payload
        if paged:
            sent.append(payload)
        answer = call(path, payload, write=write)
        if paged:
            between_pages(len(sent))
        return answer

    store.client.call = spying  # type: ignore[method-assign]
    return sent


def test_listing_larger_than_a_page_is_one_snapshot(etcd: EtcdCluster) -> None:
    with etcd_store(etcd) as store, etcd_store(etcd) as writer:
        store.page_keys = PAGE
        writer.apply([gns(f"s{i:02d}") for i in range(OBJECTS)])
        before = store.revision()

        def meddle(page: int) -> None:
            # Changes while the pages are read must not show: the snapshot is at page 1's
            # revision. s00 (already read) and s22 (still to come) both change.
            if page == 2:
                writer.delete("GlobalNetworkSet", "s22")
                writer.delete("GlobalNetworkSet", "s00")
                writer.apply([gns("s05a")])

        sent = spy_ranges(store, meddle)
        listing = store.list("GlobalNetworkSet")
        names = [o["metadata"]["name"] for o in listing.items]
        assert names == [f"s{i:02d}" for i in range(OBJECTS)]
        assert listing.revision == before
        assert len(sent) == -(-OBJECTS // PAGE)
        assert "revision" not in sent[0]
        assert all(p["revision"] == before for p in sent[1:])
        # Each page starts just after the previous page's last key: nothing read twice.
        starts = [unb64(p["key"]).decode() for p in sent[1:]]
        assert [s.rsplit("/", 1)[1] for s in starts] == [f"s{i:02d}\0" for i in (3, 7, 11, 15, 19)]
        assert names_of(store) == sorted([f"s{i:02d}" for i in range(1, OBJECTS - 1)] + ["s05a"])


def test_compaction_between_pages_restarts_the_snapshot(own_etcd: EtcdCluster) -> None:
    with etcd_store(own_etcd) as store, etcd_store(own_etcd) as writer:
        store.page_keys = PAGE
        writer.apply([gns(f"s{i:02d}") for i in range(OBJECTS)])
        first = store.revision()

        def compact_once(page: int) -> None:
            if page == 1:  # after the first page: its revision goes away
                writer.apply([gns("late")])
                writer.compact(writer.revision())

        sent = spy_ranges(store, compact_once)
        listing = store.list("GlobalNetworkSet")
        names = [o["metadata"]["name"] for o in listing.items]
        assert names == sorted([f"s{i:02d}" for i in range(OBJECTS)] + ["late"])
        assert listing.revision == first + 1
        # Page 2 failed at the old revision; the read then began again without one.
        restarts = [i for i, p in enumerate(sent) if "revision" not in p]
        assert restarts == [0, 2]
        assert all(p["revision"] == first + 1 for p in sent[3:])
