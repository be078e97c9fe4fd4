from __future__ import annotations

import threading

from dstest_helpers import gnp

from felis.datastore import SqliteDatastore

BUILTIN = {
    "default": {"order": 1000000, "defaultAction": "Deny"},
    "kube-admin": {"order": 1000, "defaultAction": "Pass"},
    "kube-baseline": {"order": 10000000, "defaultAction": "Pass"},
}


def test_ensure_initialized_creates_builtin_tiers(ds: SqliteDatastore) -> None:
    ds.ensure_initialized()
    tiers = ds.list("Tier").items
    assert {t["metadata"]["name"]: t["spec"] for t in tiers} == BUILTIN
    for tier in tiers:
        assert tier["apiVersion"] == "projectcalico.org/v3"
        assert tier["kind"] == "Tier"
        assert tier["metadata"]["uid"]
    assert ds.revision() == 3


def test_ensure_initialized_is_idempotent(ds: SqliteDatastore) -> None:
    ds.ensure_initialized()
    before = ds.list()
    ds.ensure_initialized()
    assert ds.list() == before
    assert ds.revision() == 3


def test_ensure_initialized_only_adds_what_is_missing(ds: SqliteDatastore) -> None:
    ds.ensure_initialized()
    ds.create(gnp("p"))
    admin = ds.get("Tier", "kube-admin")
    ds.delete("Tier", "default")
    ds.ensure_initialized()
    assert ds.get("Tier", "kube-admin") == admin
    assert ds.get("Tier", "default")["metadata"]["resourceVersion"] == "6"
    assert ds.revision() == 6


def test_ensure_initialized_leaves_existing_tiers_alone(ds: SqliteDatastore) -> None:
    ds.create({"kind": "Tier", "metadata": {"name": "default"}, "spec": {"order": 5, "x": "mine"}})
    ds.ensure_initialized()
    assert ds.get("Tier", "default")["spec"] == {"order": 5, "x": "mine"}
    assert len(ds.list("Tier").items) == 3


def test_one_store_shared_by_threads(ds: SqliteDatastore) -> None:
    ds.ensure_initialized()
    errors: list[BaseException] = []

    def work(prefix: str) -> None:
        try:
            for i in range(50):
                ds.apply([gnp(f"{prefix}-{i}")])
                ds.get("GlobalNetworkPolicy", f"{prefix}-{i}")
                ds.list("GlobalNetworkPolicy")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(ds.list("GlobalNetworkPolicy").items) == 200
    assert ds.revision() == 203
