"""Namespaced kinds in the Datastore contract: `<namespace>/<name>` is the identity.

Runs against SQLite here; tests/cluster/test_datastore_namespaced_contract.py runs the same
scenarios against etcd too.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

import pytest
from dstest_helpers import gnp

from felis.datastore import Datastore, InvalidObject, NotFound, SqliteDatastore
from felis.datastore.objects import check_key, object_key, split_name

NP = "NetworkPolicy"


def netpol(namespace: str | None, name: str, order: float = 10) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": NP,
        "metadata": meta,
        "spec": {"order": order, "selector": "all()"},
    }


def netset(namespace: str, name: str, *nets: str) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"nets": list(nets)},
    }


def test_same_name_in_two_namespaces_coexists(store: Datastore) -> None:
    store.apply([netpol("team-a", "allow"), netpol("team-b", "allow", order=20)])
    a = store.get(NP, "team-a/allow")
    b = store.get(NP, "team-b/allow")
    assert (a["metadata"]["namespace"], a["spec"]["order"]) == ("team-a", 10)
    assert (b["metadata"]["namespace"], b["spec"]["order"]) == ("team-b", 20)
    assert a["metadata"]["name"] == b["metadata"]["name"] == "allow"
    assert a["metadata"]["uid"] != b["metadata"]["uid"]
    listed = store.list(NP).items
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in listed] == [
        ("team-a", "allow"),
        ("team-b", "allow"),
    ]
    # Deleting one leaves the other.
    gone = store.delete(NP, "team-a/allow")
    assert gone["metadata"]["namespace"] == "team-a"
    with pytest.raises(NotFound, match=r"NetworkPolicy\(team-a/allow\)"):
        store.get(NP, "team-a/allow")
    assert store.get(NP, "team-b/allow")["spec"]["order"] == 20


def test_apply_reports_unchanged_per_namespace(store: Datastore) -> None:
    first = store.apply([netpol("team-a", "allow"), netset("team-a", "ext", "10.0.0.0/8")])
    assert [r.action for r in first] == ["created", "created"]
    assert [r.name for r in first] == ["team-a/allow", "team-a/ext"]
    again = store.apply([netpol("team-a", "allow"), netpol("team-b", "allow")])
    assert [(r.action, r.name) for r in again] == [
        ("unchanged", "team-a/allow"),
        ("created", "team-b/allow"),
    ]


def test_cluster_scoped_and_namespaced_kinds_share_a_store(store: Datastore) -> None:
    store.apply([gnp("allow"), netpol("default", "allow")])
    assert store.get("GlobalNetworkPolicy", "allow")["metadata"].get("namespace") is None
    assert store.get(NP, "default/allow")["metadata"]["namespace"] == "default"
    kinds = [(o["kind"], o["metadata"]["name"]) for o in store.list().items]
    assert ("GlobalNetworkPolicy", "allow") in kinds
    assert (NP, "allow") in kinds


def test_watch_names_namespaced_objects_by_namespace_and_name(store: Datastore) -> None:
    start = store.revision()
    store.apply([netpol("team-a", "allow")])
    store.delete(NP, "team-a/allow")
    stop = threading.Event()
    stop.set()
    events = list(store.watch(start, stop=stop))
    assert [(e.type, e.kind, e.name) for e in events] == [
        ("ADDED", NP, "team-a/allow"),
        ("DELETED", NP, "team-a/allow"),
    ]
    assert events[1].object["metadata"]["namespace"] == "team-a"


@pytest.mark.parametrize(
    "obj",
    [netpol(None, "no-namespace"), netpol("", "empty-namespace"), netpol("a/b", "slash")],
    ids=["missing", "empty", "slash"],
)
def test_a_namespaced_object_needs_one_namespace(store: Datastore, obj: dict[str, Any]) -> None:
    with pytest.raises(InvalidObject):
        store.apply([obj])
    assert store.list(NP).items == []


@pytest.mark.parametrize("name", ["allow", "team-a/", "/allow", "a/b/c"])
def test_namespaced_keys_are_namespace_slash_name(store: Datastore, name: str) -> None:
    with pytest.raises(InvalidObject, match="<namespace>/<name>"):
        store.get(NP, name)


def test_key_helpers() -> None:
    assert object_key(netpol("team-a", "allow")) == (NP, "team-a/allow")
    assert object_key(gnp("allow")) == ("GlobalNetworkPolicy", "allow")
    assert split_name(NP, "team-a/allow") == ("team-a", "allow")
    assert split_name("GlobalNetworkPolicy", "allow") == ("", "allow")
    assert check_key("NetworkSet", "ns/x") == ("NetworkSet", "ns/x")


def test_existing_sqlite_files_keep_working(tmp_path: Any) -> None:
    """The namespace lives in the name column: a file of the schema felis has always written
    (version 1) takes namespaced objects as it is, and stays readable by that schema."""
    path = tmp_path / "felis.db"
    with SqliteDatastore(path) as old:
        old.apply([gnp("kept")])
    with SqliteDatastore(path) as store:
        store.apply([netpol("team-a", "kept")])
        names = sorted((o["kind"], o["metadata"]["name"]) for o in store.list().items)
    assert names == [("GlobalNetworkPolicy", "kept"), (NP, "kept")]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (1,)
        rows = conn.execute("SELECT kind, name FROM resources ORDER BY kind").fetchall()
    assert rows == [("GlobalNetworkPolicy", "kept"), (NP, "team-a/kept")]
