"""NetworkPolicy, NetworkSet and the staged policies: Calico's defaulting and validation.

Each invalid case names the field path the error must point at and a fragment of the reason.
"""

from __future__ import annotations

from typing import Any

import pytest

from felis.model import ManifestError, from_dict, qualified_name, resolve_kind, to_dict

OK = None


def doc(kind: str, spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    meta.setdefault("name", "p")
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": kind,
        "metadata": meta,
        "spec": spec if spec is not None else {},
    }


def np(spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    meta.setdefault("namespace", "team-a")
    return doc("NetworkPolicy", spec, **meta)


def sgnp(spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    return doc("StagedGlobalNetworkPolicy", spec, **meta)


def snp(spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    return doc("StagedNetworkPolicy", spec, **meta)


def sknp(spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    return doc("StagedKubernetesNetworkPolicy", spec, **meta)


def netset(nets: list[Any], **meta: Any) -> dict[str, Any]:
    return doc("NetworkSet", {"nets": nets}, **meta)


ALLOW = [{"action": "Allow"}]
HTTP = [{"action": "Allow", "http": {"methods": ["GET"]}}]
SERVICES = {"name": "kube-dns"}

CASES: list[tuple[str, dict[str, Any], tuple[str, str] | None]] = [
    # NetworkPolicy: names, namespaces and the spec checks of a namespaced policy.
    ("np ok", np({"selector": "app == 'web'", "ingress": ALLOW}), OK),
    ("np one dot", np(name="allow.web"), OK),
    ("np two dots", np(name="a.b.c"), ("metadata.name", "at most one")),
    ("np upper", np(name="Allow"), ("metadata.name", "lower case")),
    ("np knp prefix", np(name="knp.default.x"), ("metadata.name", "kubernetes API")),
    ("np ossg prefix", np(name="ossg.default.x.y"), OK),
    ("np namespace", np(namespace="Team_A"), ("metadata.namespace", "RFC 1123 label")),
    ("np namespace long", np(namespace="a" * 64), ("metadata.namespace", "63")),
    ("np no doNotTrack", np({"doNotTrack": True}), ("spec.doNotTrack", "not recognized")),
    ("np no nsSelector", np({"namespaceSelector": "x"}), ("spec.namespaceSelector", "not recog")),
    ("np global()", np({"selector": "global()"}), ("spec.selector", "global()")),
    ("np bad selector", np({"selector": "a ==="}), ("spec.selector", "invalid selector")),
    ("np types twice", np({"types": ["Ingress", "Ingress"]}), ("spec.types", "more than once")),
    ("np types three", np({"types": ["Ingress", "Egress", "Ingress"]}), ("spec.types", "at most")),
    ("np tier", np({"tier": "Bad_Tier"}), ("spec.tier", "invalid tier name")),
    (
        "np rule",
        np({"ingress": [{"action": "Allow", "protocol": "ICMP", "destination": {"ports": [80]}}]}),
        ("spec.ingress[0].destination.ports", "TCP or UDP"),
    ),
    ("np http egress", np({"egress": HTTP}), ("spec.egress[0].http", "egress rule")),
    ("np http ingress", np({"ingress": HTTP}), OK),
    (
        "np service no namespace",
        np({"egress": [{"action": "Allow", "destination": {"services": SERVICES}}]}),
        OK,
    ),
    (
        "np service in ingress dst",
        np({"ingress": [{"action": "Allow", "destination": {"services": SERVICES}}]}),
        ("spec.ingress[0].destination.services", "not allowed"),
    ),
    # NetworkSet: the GlobalNetworkSet rules, in a namespace.
    ("netset ok", netset(["10.0.0.1", "10.1.0.0/16", "fd00::/64"], namespace="x"), OK),
    ("netset unmasked ok", netset(["10.0.0.1/8"]), OK),
    ("netset bad", netset(["10.0.0.300"]), ("spec.nets[0]", "invalid CIDR")),
    (
        "netset ns label",
        netset([], labels={"projectcalico.org/namespace": "x"}),
        ('metadata.labels["projectcalico.org/namespace"]', "not a valid label"),
    ),
    ("netset name", netset([], name="a_b"), ("metadata.name", "lower case")),
    # StagedGlobalNetworkPolicy: a GlobalNetworkPolicy to be, or a Delete that carries nothing.
    ("sgnp set", sgnp({"stagedAction": "Set", "selector": "all()", "ingress": ALLOW}), OK),
    ("sgnp learn", sgnp({"stagedAction": "Learn"}), OK),
    ("sgnp unknown action", sgnp({"stagedAction": "Maybe"}), ("spec.stagedAction", "'Set'")),
    ("sgnp delete", sgnp({"stagedAction": "Delete", "tier": "default", "types": ["Egress"]}), OK),
    (
        "sgnp delete with rules",
        sgnp({"stagedAction": "Delete", "ingress": ALLOW}),
        ("spec", "zero-value if stagedAction is Delete (set: ingress)"),
    ),
    (
        "sgnp preDNAT+dnt",
        sgnp({"preDNAT": True, "doNotTrack": True, "applyOnForward": True}),
        ("spec.preDNAT", "cannot both be true"),
    ),
    ("sgnp aof", sgnp({"doNotTrack": True}), ("spec.applyOnForward", "must be true")),
    ("sgnp namespace", sgnp(namespace="x"), ("metadata.namespace", "not a namespaced")),
    ("sgnp name dots", sgnp(name="a.b.c"), ("metadata.name", "at most one")),
    # StagedNetworkPolicy.
    ("snp ok", snp({"selector": "all()", "egress": ALLOW}), OK),
    ("snp delete", snp({"stagedAction": "Delete"}), OK),
    (
        "snp delete selector",
        snp({"stagedAction": "Delete", "selector": "all()"}),
        ("spec", "(set: selector)"),
    ),
    ("snp http egress", snp({"egress": HTTP}), ("spec.egress[0].http", "not allowed")),
    ("snp doNotTrack", snp({"doNotTrack": True}), ("spec.doNotTrack", "not recognized")),
    # StagedKubernetesNetworkPolicy: Kubernetes' own spec; what cannot convert is refused.
    (
        "sknp ok",
        sknp(
            {
                "podSelector": {"matchLabels": {"app": "web"}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                        "ports": [
                            {"port": 80},
                            {"port": "http", "protocol": "UDP"},
                            {"port": 8000, "endPort": 8080},
                        ],
                    }
                ],
            }
        ),
        OK,
    ),
    (
        "sknp endPort",
        sknp({"egress": [{"ports": [{"port": 90, "endPort": 80}]}]}),
        ("spec.egress[0].ports[0].endPort", "greater than maximum"),
    ),
    (
        "sknp port range",
        sknp({"ingress": [{"ports": [{"port": 70000}]}]}),
        ("spec.ingress[0].ports[0].port", "invalid port format"),
    ),
    (
        "sknp port name",
        sknp({"ingress": [{"ports": [{"port": "a b"}]}]}),
        ("spec.ingress[0].ports[0].port", "named port"),
    ),
    (
        "sknp protocol",
        sknp({"ingress": [{"ports": [{"protocol": "ICMP"}]}]}),
        ("spec.ingress[0].ports[0].protocol", "'TCP'"),
    ),
    (
        "sknp operator",
        sknp({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Has"}]}}),
        ("spec.podSelector.matchExpressions[0].operator", "'In'"),
    ),
    ("sknp delete", sknp({"stagedAction": "Delete"}), OK),
    (
        "sknp delete types",
        sknp({"stagedAction": "Delete", "policyTypes": ["Ingress"]}),
        ("spec", "zero-value if stagedAction is Delete (set: policyTypes)"),
    ),
    ("sknp Calico field", sknp({"selector": "all()"}), ("spec.selector", "not recognized")),
]


@pytest.mark.parametrize(("obj", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_validation(obj: dict[str, Any], expected: tuple[str, str] | None) -> None:
    if expected is None:
        from_dict(obj)
        return
    path, fragment = expected
    with pytest.raises(ManifestError) as info:
        from_dict(obj)
    found = [(e.path, e.reason) for e in info.value.errors]
    assert any(p == path and fragment in r for p, r in found), found


def test_namespace_and_policy_defaults() -> None:
    policy = from_dict(doc("NetworkPolicy", {"egress": ALLOW}))
    assert qualified_name(policy) == "default/p"
    obj = to_dict(policy)
    assert obj["metadata"] == {
        "name": "p",
        "namespace": "default",
        "labels": {"projectcalico.org/tier": "default"},
    }
    assert obj["spec"] == {"tier": "default", "egress": [{"action": "Allow"}], "types": ["Egress"]}
    assert from_dict(obj) == policy
    assert qualified_name(from_dict(netset([], namespace="x"))) == "x/p"


def test_a_staged_delete_drops_its_defaulted_types() -> None:
    staged = to_dict(from_dict(snp({"stagedAction": "Delete"})))
    assert staged["spec"] == {"stagedAction": "Delete", "tier": "default"}
    kept = to_dict(from_dict(sgnp({"stagedAction": "Set", "ingress": ALLOW})))
    assert kept["spec"]["types"] == ["Ingress"]
    assert "namespace" not in kept["metadata"]
    k8s = to_dict(from_dict(sknp({"policyTypes": ["Egress"]})))
    assert k8s["metadata"] == {"name": "p", "namespace": "default"}


@pytest.mark.parametrize(
    ("alias", "kind", "namespaced"),
    [
        ("networkpolicy", "NetworkPolicy", True),
        ("pols", "NetworkPolicy", True),
        ("netsets", "NetworkSet", True),
        ("sgnp", "StagedGlobalNetworkPolicy", False),
        ("spol", "StagedNetworkPolicy", True),
        ("sknp", "StagedKubernetesNetworkPolicy", True),
    ],
)
def test_calicoctl_aliases(alias: str, kind: str, namespaced: bool) -> None:
    info = resolve_kind(alias)
    assert (info.kind, info.namespaced) == (kind, namespaced)


def test_a_list_of_a_namespaced_kind_loads() -> None:
    from felis.model import load_documents

    text = b"""
apiVersion: projectcalico.org/v3
kind: NetworkSetList
items:
  - metadata: {name: a, namespace: x}
    spec: {nets: [10.0.0.0/8]}
  - metadata: {name: a, namespace: "y"}
"""
    loaded = load_documents(text, "list.yaml")
    assert [qualified_name(r) for r in loaded] == ["x/a", "y/a"]
    # Unquoted, YAML reads `y` as a boolean: a namespace nobody meant, so it is refused.
    with pytest.raises(ManifestError, match=r"items\[1\]\.metadata\.namespace: expected a string"):
        load_documents(text.replace(b'"y"', b"y"), "list.yaml")
