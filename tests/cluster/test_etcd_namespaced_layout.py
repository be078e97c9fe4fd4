"""Namespaced kinds on etcd: Calico's `<plural>/<namespace>/<name>` keys, both ways."""

from __future__ import annotations

import json

import pytest
from etcd_harness import EtcdCluster, etcd_store

from felis.datastore import NotFound
from felis.model import load_documents, to_dict

pytestmark = pytest.mark.cluster

ROOT = "/calico/resources/v3/projectcalico.org/"

BUNDLE = b"""
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: allow-dns, namespace: team-a}
spec:
  order: 10
  selector: all()
  types: [Egress]
  egress: [{action: Allow, protocol: UDP, destination: {ports: [53]}}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: allow-dns, namespace: team-b}
spec:
  order: 20
  selector: all()
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: partners, labels: {role: partner}}
spec: {nets: [198.18.5.0/24]}
---
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: tighten, namespace: team-a}
spec: {stagedAction: Delete}
---
apiVersion: projectcalico.org/v3
kind: StagedKubernetesNetworkPolicy
metadata: {name: k8s-web, namespace: team-a}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
"""


def test_namespaced_objects_are_stored_at_calicos_keys(etcd: EtcdCluster) -> None:
    objects = [to_dict(r) for r in load_documents(BUNDLE, "bundle.yaml")]
    with etcd_store(etcd) as store:
        store.apply(objects)
        keys = etcd.etcdctl("get", "--prefix", ROOT, "--keys-only").split()
        assert keys == [
            ROOT + "networkpolicies/team-a/allow-dns",
            ROOT + "networkpolicies/team-b/allow-dns",
            ROOT + "networksets/default/partners",
            ROOT + "stagedkubernetesnetworkpolicies/team-a/k8s-web",
            ROOT + "stagednetworkpolicies/team-a/tighten",
        ]
        value = json.loads(
            etcd.etcdctl("get", ROOT + "networkpolicies/team-a/allow-dns", "--print-value-only")
        )
        assert list(value) == ["kind", "apiVersion", "metadata", "spec"]
        meta = value["metadata"]
        assert list(meta) == [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "labels",
            "annotations",
        ]
        assert (meta["name"], meta["namespace"]) == ("allow-dns", "team-a")
        # Calico's readers take a policy's name from this annotation; the staged Kubernetes
        # form has none.
        assert meta["annotations"] == {"projectcalico.org/metadata": '{"name":"allow-dns"}'}
        staged_k8s = json.loads(
            etcd.etcdctl(
                "get", ROOT + "stagedkubernetesnetworkpolicies/team-a/k8s-web", "--print-value-only"
            )
        )
        assert "annotations" not in staged_k8s["metadata"]

        got = store.get("NetworkPolicy", "team-b/allow-dns")
        assert (got["metadata"]["namespace"], got["spec"]["order"]) == ("team-b", 20)
        assert "annotations" not in got["metadata"]
        again = store.apply(objects)
        assert {r.action for r in again} == {"unchanged"}


def test_values_calico_wrote_under_namespaced_keys_are_read(etcd: EtcdCluster) -> None:
    """Calico ≤ v3.29 kept default-tier policies as `default.<name>`, also in a namespace; the
    namespace comes from the key even when the value leaves it out."""
    legacy = {
        "kind": "NetworkPolicy",
        "apiVersion": "projectcalico.org/v3",
        "metadata": {
            "name": "default.old",
            "namespace": "team-c",
            "uid": "0b7b6bd5-3d0e-4d0c-8a55-3f1f2b0a5c11",
            "creationTimestamp": "2024-05-01T10:00:00Z",
        },
        "spec": {"order": 5, "selector": "all()", "types": ["Ingress"]},
    }
    netset = {"kind": "NetworkSet", "metadata": {"name": "bare"}, "spec": {"nets": ["10.0.0.0/8"]}}
    etcd.etcdctl("put", ROOT + "networkpolicies/team-c/default.old", json.dumps(legacy))
    etcd.etcdctl("put", ROOT + "networksets/team-d/bare", json.dumps(netset))
    with etcd_store(etcd) as store:
        got = store.get("NetworkPolicy", "team-c/old")
        assert (got["metadata"]["name"], got["metadata"]["namespace"]) == ("old", "team-c")
        with pytest.raises(NotFound):
            store.get("NetworkPolicy", "team-d/old")
        bare = store.get("NetworkSet", "team-d/bare")
        assert bare["metadata"]["namespace"] == "team-d"
        listed = store.list().items
        assert sorted((o["kind"], o["metadata"]["namespace"]) for o in listed) == [
            ("NetworkPolicy", "team-c"),
            ("NetworkSet", "team-d"),
        ]
        store.delete("NetworkPolicy", "team-c/old")
    assert etcd.get_json(ROOT + "networkpolicies/team-c/default.old") is None
