"""Manifest loading (reference §9.1): streams, lists, arrays, JSON, defaulting, round trips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from model_docs import V3, gnp, gns, hep, ingress, tier

from felis.errors import FelisError
from felis.model import (
    KINDS,
    DocumentError,
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    HostEndpoint,
    ManifestError,
    Port,
    ProtocolValue,
    Tier,
    from_dict,
    load_documents,
    load_file,
    resolve_kind,
    to_dict,
)

SEED = Path(__file__).resolve().parents[3] / "examples" / "memcached-seed.yaml"


def _yaml(*docs: dict[str, Any]) -> bytes:
    return yaml.safe_dump_all(list(docs), sort_keys=False).encode()


# --------------------------------------------------------------------------- seed manifest


def test_seed_manifest_loads_and_defaults_as_in_reference() -> None:
    resources = load_documents(SEED.read_bytes(), str(SEED))
    assert [r.kind for r in resources] == ["HostEndpoint", "GlobalNetworkPolicy"]
    hep_, policy = resources
    assert isinstance(hep_, HostEndpoint)
    assert hep_.spec.node == "memcached-node-1"
    assert hep_.spec.interface_name == "eth0"
    assert hep_.spec.expected_ips == ["10.128.0.162"]
    assert hep_.metadata.labels == {"memcached": "server"}
    assert isinstance(policy, GlobalNetworkPolicy)
    assert policy.spec.tier == "default"
    assert policy.spec.types == ["Ingress", "Egress"]
    assert policy.metadata.labels == {"projectcalico.org/tier": "default"}
    assert policy.spec.do_not_track and policy.spec.apply_on_forward
    assert policy.spec.ingress[0].protocol == ProtocolValue("TCP")
    assert policy.spec.ingress[0].destination.ports == [Port.single(12211)]
    assert policy.spec.egress[0].source.ports == [Port.single(12211)]
    assert policy.spec.egress[0].destination.selector == "memcached == 'client'"


def test_seed_policy_encodes_like_calico_etcd_value() -> None:
    policy = load_documents(SEED.read_bytes(), "seed")[1]
    # Reference §8.2, minus the datastore-owned uid/creationTimestamp/annotation.
    assert json.dumps(to_dict(policy), separators=(",", ":")) == (
        '{"kind":"GlobalNetworkPolicy","apiVersion":"projectcalico.org/v3",'
        '"metadata":{"name":"memcached-server","labels":{"projectcalico.org/tier":"default"}},'
        '"spec":{"tier":"default",'
        '"ingress":[{"action":"Allow","protocol":"TCP","source":{"selector":"memcached == '
        '\'client\'"},"destination":{"ports":[12211]}}],'
        '"egress":[{"action":"Allow","protocol":"TCP","source":{"ports":[12211]},'
        '"destination":{"selector":"memcached == \'client\'"}}],'
        '"selector":"memcached == \'server\'","types":["Ingress","Egress"],'
        '"doNotTrack":true,"applyOnForward":true}}'
    )


# --------------------------------------------------------------------------- defaulting


@pytest.mark.parametrize(
    ("spec", "types"),
    [
        ({}, ["Ingress"]),
        ({"ingress": [{"action": "Allow"}]}, ["Ingress"]),
        ({"egress": [{"action": "Allow"}]}, ["Egress"]),
        ({"ingress": [{"action": "Allow"}], "egress": [{"action": "Deny"}]}, ["Ingress", "Egress"]),
        ({"types": ["Egress"]}, ["Egress"]),
        ({"types": ["Egress", "Ingress"], "ingress": [{"action": "Allow"}]}, ["Egress", "Ingress"]),
        ({"types": []}, ["Ingress"]),
        # No special case for preDNAT / doNotTrack (§1.10).
        ({"preDNAT": True, "applyOnForward": True}, ["Ingress"]),
        ({"doNotTrack": True, "applyOnForward": True, "egress": [{"action": "Allow"}]}, ["Egress"]),
    ],
)
def test_policy_types_default(spec: dict[str, Any], types: list[str]) -> None:
    policy = from_dict(gnp(spec))
    assert isinstance(policy, GlobalNetworkPolicy)
    assert policy.spec.types == types


def test_tier_and_tier_label_default() -> None:
    policy = from_dict(gnp({}, labels={"app": "x"}))
    assert isinstance(policy, GlobalNetworkPolicy)
    assert policy.spec.tier == "default"
    assert policy.metadata.labels == {"app": "x", "projectcalico.org/tier": "default"}


def test_tier_label_follows_spec_tier_and_is_overwritten() -> None:
    policy = from_dict(gnp({"tier": "security"}, labels={"projectcalico.org/tier": "wrong"}))
    assert isinstance(policy, GlobalNetworkPolicy)
    assert policy.metadata.labels["projectcalico.org/tier"] == "security"


def test_tier_default_action_defaults_to_deny() -> None:
    resource = from_dict(tier({"order": 10}))
    assert isinstance(resource, Tier)
    assert resource.spec.default_action == "Deny"
    assert to_dict(resource)["spec"] == {"order": 10, "defaultAction": "Deny"}


def test_other_kinds_are_not_labelled() -> None:
    assert from_dict(hep()).metadata.labels == {}
    assert from_dict(gns(["10.0.0.0/8"])).metadata.labels == {}


# --------------------------------------------------------------------------- encoding


ROUND_TRIP_DOCS = [
    hep(),
    hep(
        {
            "node": "n1",
            "interfaceName": "*",
            "expectedIPs": ["10.0.0.1", "fd00::1"],
            "profiles": ["projectcalico-default-allow"],
            "ports": [
                {"name": "web", "protocol": "TCP", "port": 80},
                {"name": "dns", "protocol": 17, "port": 53},
            ],
        },
        labels={"role": "edge"},
        annotations={"note": "x"},
    ),
    gns(["10.0.0.1", "192.168.0.0/16", "dead:beef::/96"], labels={"k": "v"}),
    tier({"order": 100.5, "defaultAction": "Pass"}),
    gnp(
        {
            "tier": "default",
            "order": 12.25,
            "selector": "role == 'db'",
            "types": ["Ingress", "Egress"],
            "doNotTrack": True,
            "applyOnForward": True,
            "namespaceSelector": "",
            "performanceHints": ["AssumeNeededOnEveryNode"],
            "ingress": [
                {
                    "action": "Allow",
                    "ipVersion": 4,
                    "protocol": "TCP",
                    "notProtocol": 17,
                    "source": {
                        "nets": ["10.0.0.0/8"],
                        "notNets": ["10.1.0.0/16"],
                        "selector": "a == 'b'",
                        "notSelector": "has(c)",
                        "namespaceSelector": "global()",
                        "ports": [80, "1000:2000", "http"],
                        "notPorts": [81],
                    },
                    "destination": {"ports": [443]},
                    "http": {"methods": ["GET"], "paths": [{"exact": "/x"}, {"prefix": "/y"}]},
                    "metadata": {"annotations": {"why": "because"}},
                },
                {
                    "action": "Allow",
                    "protocol": "ICMP",
                    "icmp": {"type": 8, "code": 0},
                    "notICMP": {"type": 3},
                },
                {
                    "action": "Deny",
                    "protocol": 132,
                    "source": {"serviceAccounts": {"names": ["sa"], "selector": "x == 'y'"}},
                },
                {"action": "Pass", "source": {"services": {"name": "svc", "namespace": "ns"}}},
                {"action": "Allow", "icmp": None, "http": {}, "metadata": {}},
            ],
            "egress": [{"action": "Deny", "protocol": "UDP", "destination": {"notPorts": ["53"]}}],
        },
        name="everything",
        uid="0b8f",
        resourceVersion="42",
        creationTimestamp="2026-08-22T10:00:00Z",
    ),
]


@pytest.mark.parametrize(
    "doc", ROUND_TRIP_DOCS, ids=lambda d: d["kind"] + "/" + d["metadata"]["name"]
)
def test_round_trip(doc: dict[str, Any]) -> None:
    resource = from_dict(doc)
    encoded = to_dict(resource)
    assert from_dict(encoded) == resource
    assert to_dict(from_dict(json.loads(json.dumps(encoded)))) == encoded
    assert list(encoded) in (["kind", "apiVersion", "metadata", "spec"],)


def test_encoding_follows_go_rules() -> None:
    policy = from_dict(ROUND_TRIP_DOCS[-1])
    encoded = to_dict(policy)
    spec = encoded["spec"]
    assert list(spec) == [
        "tier", "order", "ingress", "egress", "selector", "types",
        "doNotTrack", "applyOnForward", "performanceHints",
    ]  # fmt: skip
    first = spec["ingress"][0]
    assert list(first) == [
        "action", "ipVersion", "protocol", "notProtocol",
        "source", "destination", "http", "metadata",
    ]  # fmt: skip
    assert list(first["source"]) == [
        "nets", "selector", "namespaceSelector", "ports", "notNets", "notSelector", "notPorts",
    ]  # fmt: skip
    assert first["source"]["ports"] == [80, "1000:2000", "http"]
    assert first["notProtocol"] == 17
    # Empty but present pointers stay (Go emits non-nil pointers), empty sides are omitted.
    assert spec["ingress"][4] == {"action": "Allow", "http": {}, "metadata": {}}
    assert spec["egress"][0]["destination"]["notPorts"] == [53]
    assert spec["order"] == 12.25
    meta = encoded["metadata"]
    assert list(meta) == ["name", "uid", "resourceVersion", "creationTimestamp", "labels"]


def test_integral_order_is_emitted_as_integer() -> None:
    policy = from_dict(gnp({"order": 100}))
    assert to_dict(policy)["spec"]["order"] == 100
    assert isinstance(to_dict(policy)["spec"]["order"], int)


def test_numeric_protocol_string_becomes_number() -> None:
    policy = from_dict(ingress(protocol="6", destination={"ports": ["80"]}))
    rule = to_dict(policy)["spec"]["ingress"][0]
    assert rule["protocol"] == 6
    assert rule["destination"]["ports"] == [80]


def test_python_construction_by_field_name() -> None:
    from felis.model import EntityRule, GlobalNetworkPolicySpec, ObjectMeta, Rule

    policy = GlobalNetworkPolicy(
        metadata=ObjectMeta(name="built"),
        spec=GlobalNetworkPolicySpec(
            ingress=[
                Rule(
                    action="Allow",
                    protocol=ProtocolValue("TCP"),
                    destination=EntityRule(ports=[Port.single(22)]),
                )
            ],
            do_not_track=True,
            apply_on_forward=True,
        ),
    )
    assert policy.spec.types == ["Ingress"]
    assert from_dict(to_dict(policy)) == policy


# --------------------------------------------------------------------------- streams


def test_multi_document_stream_keeps_order() -> None:
    data = _yaml(hep(name="a"), gnp(name="b"), gns(["10.0.0.0/8"], name="c"), tier(name="d"))
    resources = load_documents(data, "multi.yaml")
    assert [(r.kind, r.metadata.name) for r in resources] == [
        ("HostEndpoint", "a"),
        ("GlobalNetworkPolicy", "b"),
        ("GlobalNetworkSet", "c"),
        ("Tier", "d"),
    ]
    assert isinstance(resources[2], GlobalNetworkSet)


def test_list_kind_documents() -> None:
    listing = {
        "apiVersion": V3,
        "kind": "GlobalNetworkPolicyList",
        "metadata": {"resourceVersion": "7"},
        "items": [gnp(name="one"), {"metadata": {"name": "two"}, "spec": {}}],
    }
    resources = load_documents(_yaml(listing, hep()), "list.yaml")
    assert [r.metadata.name for r in resources] == ["one", "two", "hep"]


def test_list_item_of_wrong_kind_is_an_error_with_item_path() -> None:
    listing = {"apiVersion": V3, "kind": "HostEndpointList", "items": [hep(), gnp(name="x")]}
    with pytest.raises(ManifestError) as info:
        load_documents(_yaml(listing), "list.yaml")
    assert [e.path for e in info.value.errors] == ["items[1].kind"]


def test_list_item_errors_carry_item_prefix() -> None:
    listing = {
        "apiVersion": V3,
        "kind": "HostEndpointList",
        "items": [hep(), hep({"node": "node1"})],
    }
    with pytest.raises(ManifestError) as info:
        load_documents(_yaml(listing), "list.yaml")
    assert str(info.value) == (
        "list.yaml: document 1 (HostEndpoint hep): items[1].spec: at least one of "
        "interfaceName or expectedIPs must be specified"
    )


def test_array_documents_yaml_and_json() -> None:
    data = json.dumps([hep(name="a"), gns(["10.0.0.0/8"], name="b")]).encode()
    assert [r.metadata.name for r in load_documents(data, "arr.json")] == ["a", "b"]
    data = _yaml(hep(name="c")) + b"---\n" + yaml.safe_dump([gnp(name="d"), gnp(name="e")]).encode()
    assert [r.metadata.name for r in load_documents(data, "arr.yaml")] == ["c", "d", "e"]


def test_single_json_document() -> None:
    resources = load_documents(json.dumps(hep()).encode(), "hep.json")
    assert resources[0].metadata.name == "hep"


def test_json_stream_separated_by_dashes() -> None:
    data = json.dumps(hep(name="a")).encode() + b"\n---\n" + json.dumps(hep(name="b")).encode()
    assert [r.metadata.name for r in load_documents(data, "x")] == ["a", "b"]


def test_empty_documents_are_skipped_but_counted() -> None:
    data = _yaml(hep()) + b"---\n---\n" + _yaml(hep({"node": "node1"}))
    with pytest.raises(ManifestError) as info:
        load_documents(data, "gaps.yaml")
    assert [e.index for e in info.value.errors] == [3]


@pytest.mark.parametrize(
    "data", [b"", b"   \n", b"---\n", b"# only a comment\n", b"---\n...\n---\n"]
)
def test_empty_input(data: bytes) -> None:
    with pytest.raises(ManifestError) as info:
        load_documents(data, "empty.yaml")
    assert str(info.value) == "empty.yaml: no resources specified in empty.yaml"


def test_all_or_nothing_collects_every_document() -> None:
    data = _yaml(hep(name="ok"), hep({"node": "node1"}, name="bad1"), gns(["x"], name="bad2"))
    with pytest.raises(ManifestError) as info:
        load_documents(data, "m.yaml")
    error = info.value
    assert isinstance(error, FelisError)
    assert error.lines() == [
        "m.yaml: document 2 (HostEndpoint bad1): spec: at least one of interfaceName or "
        "expectedIPs must be specified",
        "m.yaml: document 3 (GlobalNetworkSet bad2): spec.nets[0]: invalid CIDR or IP address 'x'",
    ]
    assert str(error) == error.lines()[0] + " (and 1 more)"
    assert "\n" not in str(error)


def test_non_mapping_documents() -> None:
    with pytest.raises(ManifestError) as info:
        load_documents(b"hello\n---\n42\n", "s.yaml")
    assert info.value.lines() == [
        "s.yaml: document 1: document must be a mapping (a resource), not a string",
        "s.yaml: document 2: document must be a mapping (a resource), not a number",
    ]


def test_namespace_is_rejected_in_documents() -> None:
    with pytest.raises(ManifestError, match="namespace should not be specified"):
        load_documents(_yaml(gnp(namespace="default")), "ns.yaml")


def test_strict_unknown_top_level_field() -> None:
    doc = hep()
    doc["status"] = {}
    with pytest.raises(ManifestError) as info:
        load_documents(_yaml(doc), "u.yaml")
    assert info.value.errors[0].path == "status"
    assert "not recognized" in info.value.errors[0].reason


def test_null_fields_mean_absent() -> None:
    data = b"""apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: p
  labels:
spec:
  order: ~
  selector:
  ingress:
"""
    policy = load_documents(data, "n.yaml")[0]
    assert isinstance(policy, GlobalNetworkPolicy)
    assert policy.spec.order is None and policy.spec.selector == "" and policy.spec.ingress == []


def test_yaml_scalars_are_typed_like_go() -> None:
    data = b"""apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: p
  creationTimestamp: 2026-08-22T10:00:00Z
spec:
  ingress:
  - action: Allow
    protocol: TCP
    destination:
      ports: [1:20, 0x50, 8080]
"""
    policy = load_documents(data, "t.yaml")[0]
    assert isinstance(policy, GlobalNetworkPolicy)
    # Not sexagesimal 80, not a datetime: what Go's decoder would see.
    assert policy.spec.ingress[0].destination.ports == [
        Port(1, 20),
        Port.single(80),
        Port.single(8080),
    ]
    assert policy.metadata.creation_timestamp == "2026-08-22T10:00:00Z"


def test_yaml_scalars_fill_string_fields_like_calicoctl() -> None:
    data = b"""apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: h
  labels: {enabled: yes, version: 1.10, count: 0x10, plain: text}
spec:
  node: n
  interfaceName: eth0
"""
    resource = load_documents(data, "s.yaml")[0]
    assert resource.metadata.labels == {
        "enabled": "true",
        "version": "1.1",
        "count": "16",
        "plain": "text",
    }
    # YAML 1.1 reads a bare `n` as false; Calico's decoder then stores "false".
    assert isinstance(resource, HostEndpoint)
    assert resource.spec.node == "false"


def test_yaml_merge_keys_and_anchors() -> None:
    data = b"""apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p}
spec:
  ingress:
  - &base {action: Allow, protocol: TCP, destination: {ports: [22]}}
  - <<: *base
    action: Deny
"""
    policy = load_documents(data, "m.yaml")[0]
    assert isinstance(policy, GlobalNetworkPolicy)
    assert [r.action for r in policy.spec.ingress] == ["Allow", "Deny"]
    assert policy.spec.ingress[1].destination.ports == [Port.single(22)]


def test_duplicate_keys_are_rejected() -> None:
    with pytest.raises(ManifestError, match="duplicate mapping key 'kind'"):
        load_documents(b"kind: HostEndpoint\nkind: Tier\n", "d.yaml")
    with pytest.raises(ManifestError, match="duplicate mapping key 'kind'"):
        load_documents(b'{"kind": "Tier", "kind": "Tier"}', "d.json")


def test_unsafe_yaml_tags_are_refused() -> None:
    for data in (
        b"!!python/object/apply:os.system ['true']\n",
        b"kind: !!python/name:os.system\n",
        b"a: !custom 1\n",
        b"a: !!binary aGVsbG8=\n",
    ):
        with pytest.raises(ManifestError, match="unsupported YAML tag"):
            load_documents(data, "evil.yaml")


def test_syntax_error_is_one_line_with_position() -> None:
    with pytest.raises(ManifestError) as info:
        load_documents(_yaml(hep()) + b"---\nkind: [unclosed\n", "bad.yaml")
    message = str(info.value)
    assert message.startswith("bad.yaml: document 2: invalid YAML:")
    assert "line 10" in message
    assert "\n" not in message


def test_load_file_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "seed.yaml"
    path.write_bytes(SEED.read_bytes())
    assert len(load_file(path)) == 2
    with pytest.raises(ManifestError, match="cannot read file"):
        load_file(tmp_path / "absent.yaml")


def test_document_error_format_omits_unknown_parts() -> None:
    assert str(DocumentError("f", None, None, None, None, "boom")) == "f: boom"
    assert str(DocumentError("f", 2, "Tier", None, "spec", "x")) == "f: document 2 (Tier): spec: x"
    assert str(DocumentError("f", 2, None, "n\nm", None, "y\tz")) == "f: document 2 (n\\nm): y\\tz"


# --------------------------------------------------------------------------- kinds


@pytest.mark.parametrize(
    ("alias", "kind", "plural"),
    [
        ("hostendpoint", "HostEndpoint", "hostendpoints"),
        ("HostEndpoints", "HostEndpoint", "hostendpoints"),
        ("hep", "HostEndpoint", "hostendpoints"),
        ("HEPS", "HostEndpoint", "hostendpoints"),
        ("globalnetworkpolicy", "GlobalNetworkPolicy", "globalnetworkpolicies"),
        ("GlobalNetworkPolicies", "GlobalNetworkPolicy", "globalnetworkpolicies"),
        ("gnp", "GlobalNetworkPolicy", "globalnetworkpolicies"),
        ("gnps", "GlobalNetworkPolicy", "globalnetworkpolicies"),
        ("globalnetworkset", "GlobalNetworkSet", "globalnetworksets"),
        ("globalnetworksets", "GlobalNetworkSet", "globalnetworksets"),
        ("gnetsets", "GlobalNetworkSet", "globalnetworksets"),
        ("gns", "GlobalNetworkSet", "globalnetworksets"),
        ("tier", "Tier", "tiers"),
        ("Tiers", "Tier", "tiers"),
    ],
)
def test_resolve_kind(alias: str, kind: str, plural: str) -> None:
    info = resolve_kind(alias)
    assert (info.kind, info.plural) == (kind, plural)
    assert info.model.__name__ == kind
    assert KINDS[kind] is info
    assert alias.lower() in info.aliases


@pytest.mark.parametrize("alias", ["wep", "workloadendpoint", "", "gnp ", "x\ny"])
def test_resolve_kind_unknown(alias: str) -> None:
    with pytest.raises(FelisError) as info:
        resolve_kind(alias)
    assert str(info.value).startswith("resource type '")
    assert str(info.value).endswith("' is not supported")
    assert "\n" not in str(info.value)
