"""What felis writes to etcd is what Calico's tools read, and the other way round."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from etcd_harness import EtcdCluster, etcd_store

from felis.datastore import DatastoreError, NotFound, Unavailable, open_datastore
from felis.datastore.url import EtcdConfig, open_config, resolve_config
from felis.model import load_file, to_dict

pytestmark = pytest.mark.cluster

SEED = Path(__file__).resolve().parents[2] / "examples" / "memcached-seed.yaml"
ROOT = "/calico/resources/v3/projectcalico.org/"
GNP_KEY = ROOT + "globalnetworkpolicies/"

# Reference §8.2's example values, with the generated uid and timestamp left as holes.
SEED_GNP_VALUE = (
    '{"kind":"GlobalNetworkPolicy","apiVersion":"projectcalico.org/v3",'
    '"metadata":{"name":"memcached-server","uid":"%(uid)s","creationTimestamp":"%(ts)s",'
    '"labels":{"projectcalico.org/tier":"default"},'
    '"annotations":{"projectcalico.org/metadata":"{\\"name\\":\\"memcached-server\\"}"}},'
    '"spec":{"tier":"default",'
    '"ingress":[{"action":"Allow","protocol":"TCP","source":{"selector":"memcached == \'client\'"},'
    '"destination":{"ports":[12211]}}],'
    '"egress":[{"action":"Allow","protocol":"TCP","source":{"ports":[12211]},'
    '"destination":{"selector":"memcached == \'client\'"}}],'
    '"selector":"memcached == \'server\'","types":["Ingress","Egress"],'
    '"doNotTrack":true,"applyOnForward":true}}'
)
SEED_HEP_VALUE = (
    '{"kind":"HostEndpoint","apiVersion":"projectcalico.org/v3",'
    '"metadata":{"name":"memcached-node-1-eth0","uid":"%(uid)s","creationTimestamp":"%(ts)s",'
    '"labels":{"memcached":"server"}},'
    '"spec":{"node":"memcached-node-1","interfaceName":"eth0","expectedIPs":["10.128.0.162"]}}'
)


def test_seed_is_stored_exactly_as_calico_stores_it(etcd: EtcdCluster) -> None:
    with etcd_store(etcd) as store:
        results = store.apply([to_dict(r) for r in load_file(SEED)])
    hep, gnp = (r.object for r in results)
    keys = etcd.etcdctl("get", "--prefix", ROOT, "--keys-only").split()
    assert keys == [GNP_KEY + "memcached-server", ROOT + "hostendpoints/memcached-node-1-eth0"]

    stored = etcd.get_json(GNP_KEY + "memcached-server")
    assert stored is not None
    meta = gnp["metadata"]
    assert stored["value"] == SEED_GNP_VALUE % {"uid": meta["uid"], "ts": meta["creationTimestamp"]}
    assert stored["mod_revision"] == int(meta["resourceVersion"])
    assert "resourceVersion" not in stored["value"]

    stored_hep = etcd.get_json(ROOT + "hostendpoints/memcached-node-1-eth0")
    assert stored_hep is not None
    meta = hep["metadata"]
    assert stored_hep["value"] == SEED_HEP_VALUE % {
        "uid": meta["uid"],
        "ts": meta["creationTimestamp"],
    }
    # Read back, the annotation is gone and the object is what the manifest said.
    assert "annotations" not in gnp["metadata"]
    assert gnp["spec"] == to_dict(load_file(SEED)[1])["spec"]


def test_builtin_tiers_layout(etcd: EtcdCluster) -> None:
    with etcd_store(etcd) as store:
        store.ensure_initialized()
    value = json.loads(etcd.etcdctl("get", ROOT + "tiers/default", "--print-value-only"))
    assert list(value) == ["kind", "apiVersion", "metadata", "spec"]
    assert list(value["metadata"]) == ["name", "uid", "creationTimestamp"]
    assert value["spec"] == {"order": 1000000, "defaultAction": "Deny"}


def _legacy_value(name: str, tier: str | None = "default") -> str:
    spec: dict[str, object] = {"order": 10, "selector": "role == 'db'"}
    if tier is not None:
        spec["tier"] = tier
    return json.dumps(
        {
            "kind": "GlobalNetworkPolicy",
            "apiVersion": "projectcalico.org/v3",
            "metadata": {
                "name": name,
                "uid": "0b7b6bd5-3d0e-4d0c-8a55-3f1f2b0a5c11",
                "creationTimestamp": "2024-05-01T10:00:00Z",
                "labels": {"projectcalico.org/tier": tier or "default"},
            },
            "spec": spec,
        },
        separators=(",", ":"),
    )


def test_old_default_dot_keys_are_read_under_the_plain_name(etcd: EtcdCluster) -> None:
    etcd.etcdctl("put", GNP_KEY + "default.legacy", _legacy_value("default.legacy"))
    etcd.etcdctl("put", GNP_KEY + "default.untiered", _legacy_value("default.untiered", None))
    # Another tier's name keeps its prefix (only the default tier's was implicit).
    etcd.etcdctl("put", GNP_KEY + "default.other", _legacy_value("default.other", "other"))
    mod = etcd.get_json(GNP_KEY + "default.legacy")
    assert mod is not None
    with etcd_store(etcd) as store:
        got = store.get("GlobalNetworkPolicy", "legacy")
        assert got["metadata"]["name"] == "legacy"
        assert got["metadata"]["resourceVersion"] == str(mod["mod_revision"])
        assert got["metadata"]["uid"] == "0b7b6bd5-3d0e-4d0c-8a55-3f1f2b0a5c11"
        assert store.get("GlobalNetworkPolicy", "untiered")["spec"]["order"] == 10
        assert store.get("GlobalNetworkPolicy", "default.other")["spec"]["tier"] == "other"
        with pytest.raises(NotFound):
            store.get("GlobalNetworkPolicy", "other")
        listed = store.list("GlobalNetworkPolicy").items
        assert [o["metadata"]["name"] for o in listed] == ["default.other", "legacy", "untiered"]

        # Creating the plain name again is refused: the object exists (under its old key).
        with pytest.raises(DatastoreError, match=r"already exists: GlobalNetworkPolicy\(legacy\)"):
            store.create(
                {"kind": "GlobalNetworkPolicy", "metadata": {"name": "legacy"}, "spec": {}}
            )

        # An update is written back to the key the object lives under, now annotated.
        changed = dict(got, spec={**got["spec"], "order": 20})
        (result,) = store.apply([changed])
        assert result.action == "updated"
        assert result.object["metadata"]["uid"] == got["metadata"]["uid"]
        value = json.loads(etcd.etcdctl("get", GNP_KEY + "default.legacy", "--print-value-only"))
        assert value["metadata"]["annotations"] == {
            "projectcalico.org/metadata": '{"name":"legacy"}'
        }
        assert value["spec"]["order"] == 20
        assert etcd.get_json(GNP_KEY + "legacy") is None

        deleted = store.delete("GlobalNetworkPolicy", "legacy")
        assert deleted["metadata"]["name"] == "legacy"
        assert etcd.get_json(GNP_KEY + "default.legacy") is None


def test_values_written_by_calico_tools_are_read(etcd: EtcdCluster) -> None:
    value = SEED_GNP_VALUE % {"uid": "u-1", "ts": "2026-08-22T10:00:00Z"}
    etcd.etcdctl("put", GNP_KEY + "memcached-server", value)
    with etcd_store(etcd) as store:
        got = store.get("GlobalNetworkPolicy", "memcached-server")
        assert got["metadata"]["labels"] == {"projectcalico.org/tier": "default"}
        assert "annotations" not in got["metadata"]
        assert got["metadata"]["uid"] == "u-1"
        # Re-applying the same manifest finds nothing to change.
        (result,) = store.apply([to_dict(load_file(SEED)[1])])
        assert result.action == "unchanged"


def test_list_revision_is_the_header_revision(etcd: EtcdCluster) -> None:
    with etcd_store(etcd) as store:
        store.apply([to_dict(r) for r in load_file(SEED)])
        etcd.etcdctl("put", "/unrelated/key", "x")  # other writers advance the revision too
        listing = store.list("HostEndpoint")
    header = json.loads(etcd.etcdctl("get", "/nothing", "-w", "json"))["header"]
    assert listing.revision == int(header["revision"])


def test_watch_sees_etcdctl_changes_with_the_deleted_object(etcd: EtcdCluster) -> None:
    with etcd_store(etcd) as store:
        created = store.create(to_dict(load_file(SEED)[0]))
        since = int(created["metadata"]["resourceVersion"])
        stop = threading.Event()
        timer = threading.Timer(30, stop.set)
        timer.start()
        try:
            iterator = store.watch(since, stop=stop, poll_interval=0.01)
            etcd.etcdctl("del", ROOT + "hostendpoints/memcached-node-1-eth0")
            etcd.etcdctl("put", ROOT + "hostendpoints/not-json", "{oops")
            etcd.etcdctl(
                "put",
                ROOT + "globalnetworksets/x",
                '{"kind":"GlobalNetworkSet","metadata":{"name":"x"},"spec":{}}',
            )
            events = [next(iterator), next(iterator)]
        finally:
            timer.cancel()
            stop.set()
    assert [(e.type, e.kind, e.name) for e in events] == [
        ("DELETED", "HostEndpoint", "memcached-node-1-eth0"),
        ("ADDED", "GlobalNetworkSet", "x"),  # the broken value is skipped, not fatal
    ]
    assert events[0].object == created
    assert events[1].object["apiVersion"] == "projectcalico.org/v3"


def test_calicoctl_environment_selects_etcd(
    etcd: EtcdCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FELIS_DATASTORE", raising=False)
    monkeypatch.setenv("DATASTORE_TYPE", "etcdv3")
    monkeypatch.setenv("ETCD_ENDPOINTS", "http://127.0.0.1:1")  # overridden by the prefixed one
    monkeypatch.setenv("CALICO_ETCD_ENDPOINTS", ",".join(etcd.endpoints))
    config = resolve_config()
    assert isinstance(config, EtcdConfig)
    store = open_datastore()
    try:
        store.ensure_initialized()
        assert len(store.list("Tier").items) == 3
    finally:
        store.close()
    assert etcd.etcdctl("get", ROOT + "tiers/default", "--keys-only").strip()


def test_no_endpoint_answering_is_a_quick_one_line_unavailable() -> None:
    config = EtcdConfig(endpoints=("http://127.0.0.1:9", "http://127.0.0.1:7"))
    store = open_config(config)
    try:
        for call in (store.revision, lambda: store.get("Tier", "default"), store.list):
            with pytest.raises(Unavailable) as err:
                call()
            message = str(err.value)
            assert "\n" not in message
            assert "http://127.0.0.1:9" in message and "http://127.0.0.1:7" in message
        with pytest.raises(Unavailable):
            store.watch(0)
    finally:
        store.close()


def test_too_many_objects_for_one_transaction_writes_nothing(etcd: EtcdCluster) -> None:
    objs = [
        {"kind": "GlobalNetworkSet", "metadata": {"name": f"s{i:03d}"}, "spec": {}}
        for i in range(300)
    ]
    with etcd_store(etcd) as store:
        before = store.revision()
        with pytest.raises(DatastoreError) as err:
            store.apply(objs)
        assert "--max-txn-ops" in str(err.value) and "\n" not in str(err.value)
        assert store.revision() == before
        assert store.list("GlobalNetworkSet").items == []
        # The same objects in server-sized batches go through.
        for start in range(0, 300, 100):
            store.apply(objs[start : start + 100])
        assert len(store.list("GlobalNetworkSet").items) == 300
