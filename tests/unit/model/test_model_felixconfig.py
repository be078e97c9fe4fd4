"""FelixConfiguration: the checked fields with Calico's rules, every other Calico field stored as
written, unknown fields refused, calicoctl's defaults. Each bad document names its field."""

from __future__ import annotations

from typing import Any

import pytest

from felis.model import ManifestError, from_dict, load_documents, resolve_kind, to_dict
from felis.model.felixconfig import SPEC_FIELDS, FelixConfiguration
from felis.model.resources import Resource

V3 = "projectcalico.org/v3"


def felix(spec: dict[str, Any] | None = None, name: str = "default", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": V3,
        "kind": "FelixConfiguration",
        "metadata": {"name": name, **meta},
        "spec": spec if spec is not None else {},
    }


CALICO_DEFAULTS = {
    "bpfConnectTimeLoadBalancing": "TCP",
    "bpfHostNetworkedNATWithoutCTLB": "Enabled",
    "floatingIPs": "Disabled",
}


GOOD: list[tuple[str, dict[str, Any]]] = [
    ("empty default", felix()),
    ("per-node name", felix(name="node.worker-1.example.com")),
    ("any other name", felix(name="staging")),
    ("nodeSelector on another name", felix({"nodeSelector": "zone == 'a'"}, name="zone-a")),
    (
        "failsafe forms",
        felix(
            {
                "failsafeInboundHostPorts": [
                    {"protocol": "TCP", "port": 22},
                    {"protocol": "udp", "port": 68},
                    {"protocol": "SCTP", "port": 3868},
                    {"port": 2222},
                    {"protocol": "TCP", "port": 22, "net": "10.0.0.0/8"},
                    {"protocol": "UDP", "port": 53, "net": "fd00::/8"},
                    {"protocol": "TCP", "port": 443, "net": "192.0.2.7"},
                ],
                "failsafeOutboundHostPorts": [],
            }
        ),
    ),
    ("chainInsertMode any case", felix({"chainInsertMode": "append"})),
    ("defaultEndpointToHostAction", felix({"defaultEndpointToHostAction": "ACCEPT"})),
    ("logPrefix specifiers", felix({"logPrefix": "calico-drop %t/%k: %n"})),
    ("mark mask", felix({"iptablesMarkMask": 0xFFFF0000, "nftablesMarkMask": 0x1F00})),
    ("interfaceExclude", felix({"interfaceExclude": "kube-ipvs0,/^veth.*/,cni_0"})),
    ("xdpEnabled", felix({"xdpEnabled": False})),
    (
        "refresh intervals",
        felix({"ipsetsRefreshInterval": "1m30s", "nftablesRefreshInterval": "0.5h"}),
    ),
    ("refresh interval 0 turns it off", felix({"ipsetsRefreshInterval": "0s"})),
    (
        "other Calico fields, as written",
        felix(
            {
                "ipipEnabled": True,
                "reportingInterval": "0s",
                "logSeverityScreen": "Info",
                "bpfLogLevel": "",
                "kubeNodePortRanges": ["30000:32767"],
                "routeTableRange": {"min": 1, "max": 250},
                "healthTimeoutOverrides": [{"name": "x", "timeout": "30s"}],
            }
        ),
    ),
]


@pytest.mark.parametrize(("label", "doc"), GOOD, ids=[label for label, _ in GOOD])
def test_valid(label: str, doc: dict[str, Any]) -> None:
    resource = from_dict(doc)
    assert isinstance(resource, FelixConfiguration)


BAD: list[tuple[str, dict[str, Any], str, str]] = [
    ("unknown field", felix({"failsafePorts": []}), "spec.failsafePorts", "not recognized"),
    ("snake_case name", felix({"log_prefix": "x"}), "spec.log_prefix", "not recognized"),
    ("wrong case", felix({"LogPrefix": "x"}), "spec.LogPrefix", "not recognized"),
    ("top-level unknown", {**felix(), "status": {}}, "status", "not recognized"),
    ("bad name", felix(name="Node.A"), "metadata.name", "lower case"),
    ("namespace", felix(namespace="x"), "metadata.namespace", "not a namespaced"),
    (
        "nodeSelector on default",
        felix({"nodeSelector": "all()"}),
        "spec.nodeSelector",
        "must not be set on the 'default'",
    ),
    (
        "nodeSelector on node.x",
        felix({"nodeSelector": "all()"}, name="node.x"),
        "spec.nodeSelector",
        "per-node",
    ),
    ("bad nodeSelector", felix({"nodeSelector": "a ==="}, name="s"), "spec.nodeSelector", "sel"),
    ("chainInsertMode", felix({"chainInsertMode": "Top"}), "spec.chainInsertMode", "Insert or"),
    (
        "defaultEndpointToHostAction",
        felix({"defaultEndpointToHostAction": "Reject"}),
        "spec.defaultEndpointToHostAction",
        "Drop, Accept or Return",
    ),
    ("logPrefix chars", felix({"logPrefix": "drop!"}), "spec.logPrefix", "invalid log prefix"),
    ("logPrefix type", felix({"logPrefix": ["x"]}), "spec.logPrefix", "expected a string"),
    ("mask as string", felix({"iptablesMarkMask": "0xff"}), "spec.iptablesMarkMask", "integer"),
    ("mask too wide", felix({"iptablesMarkMask": 1 << 32}), "spec.iptablesMarkMask", "at most"),
    ("mask negative", felix({"nftablesMarkMask": -1}), "spec.nftablesMarkMask", "at least 0"),
    ("mask 4 bits", felix({"iptablesMarkMask": 0xF0}), "spec.iptablesMarkMask", "at least 5"),
    ("mask zero", felix({"iptablesMarkMask": 0}), "spec.iptablesMarkMask", "0 bit(s)"),
    (
        "interfaceExclude space",
        felix({"interfaceExclude": "kube-ipvs0, veth1"}),
        "spec.interfaceExclude",
        "' veth1'",
    ),
    (
        "interfaceExclude regex",
        felix({"interfaceExclude": "/veth(/"}),
        "spec.interfaceExclude",
        "regular expression",
    ),
    ("xdpEnabled", felix({"xdpEnabled": "yes"}), "spec.xdpEnabled", "boolean"),
    (
        "failsafe not a list",
        felix({"failsafeInboundHostPorts": "tcp:22"}),
        "spec.failsafeInboundHostPorts",
        "array",
    ),
    (
        "failsafe protocol",
        felix({"failsafeInboundHostPorts": [{"port": 22}, {"protocol": "ICMP", "port": 1}]}),
        "spec.failsafeInboundHostPorts[1].protocol",
        "TCP, UDP or SCTP",
    ),
    (
        "failsafe port missing",
        felix({"failsafeOutboundHostPorts": [{"protocol": "UDP"}]}),
        "spec.failsafeOutboundHostPorts[0].port",
        "required",
    ),
    (
        "failsafe port range",
        felix({"failsafeOutboundHostPorts": [{"port": 65536}]}),
        "spec.failsafeOutboundHostPorts[0].port",
        "at most 65535",
    ),
    (
        "failsafe port 0",
        felix({"failsafeOutboundHostPorts": [{"port": 0}]}),
        "spec.failsafeOutboundHostPorts[0].port",
        "at least 1",
    ),
    (
        "failsafe port string",
        felix({"failsafeInboundHostPorts": [{"port": "22"}]}),
        "spec.failsafeInboundHostPorts[0].port",
        "integer",
    ),
    (
        "failsafe net",
        felix({"failsafeInboundHostPorts": [{"port": 22, "net": "10.0.0.0/33"}]}),
        "spec.failsafeInboundHostPorts[0].net",
        "invalid CIDR",
    ),
    (
        "refresh interval without a unit",
        felix({"ipsetsRefreshInterval": 90}),
        "spec.ipsetsRefreshInterval",
        "invalid duration '90'",
    ),
    (
        "refresh interval negative",
        felix({"nftablesRefreshInterval": "-5s"}),
        "spec.nftablesRefreshInterval",
        "invalid duration '-5s'",
    ),
    (
        "failsafe unknown key",
        felix({"failsafeInboundHostPorts": [{"port": 22, "cidr": "10.0.0.0/8"}]}),
        "spec.failsafeInboundHostPorts[0].cidr",
        "not recognized",
    ),
]


@pytest.mark.parametrize(("label", "doc", "path", "reason"), BAD, ids=[label for label, *_ in BAD])
def test_invalid_names_the_field(label: str, doc: dict[str, Any], path: str, reason: str) -> None:
    with pytest.raises(ManifestError) as info:
        from_dict(doc, source="fc.yaml")
    lines = info.value.lines()
    assert any(f": {path}: " in line and reason in line for line in lines), lines
    assert all(line.startswith("fc.yaml: document 1 (FelixConfiguration ") for line in lines)


def test_every_problem_of_a_document_is_reported() -> None:
    doc = felix(
        {
            "chainInsertMode": "Top",
            "logPrefix": "a!",
            "failsafeInboundHostPorts": [{"protocol": "icmp", "port": 1, "net": "x"}],
            "unknown": 1,
        }
    )
    with pytest.raises(ManifestError) as info:
        from_dict(doc)
    paths = sorted(line.split(": ")[2] for line in info.value.lines())
    assert paths == [
        "spec.chainInsertMode",
        "spec.failsafeInboundHostPorts[0].net",
        "spec.failsafeInboundHostPorts[0].protocol",
        "spec.logPrefix",
        "spec.unknown",
    ]


def test_other_fields_are_stored_as_written_in_calicos_order() -> None:
    spec = {
        "reportingInterval": "0s",
        "logPrefix": "felix",
        "ipipEnabled": True,
        "failsafeOutboundHostPorts": [],
        "routeTableRange": {"min": 1, "max": 250},
        "failsafeInboundHostPorts": [{"port": 22}, {"protocol": "UDP", "port": 68, "net": ""}],
    }
    stored = to_dict(from_dict(felix(spec)))
    assert stored["spec"] == {
        "logPrefix": "felix",
        "ipipEnabled": True,
        "reportingInterval": "0s",
        # `[]` is kept: it means no entries, where an absent list means the defaults.
        "failsafeOutboundHostPorts": [],
        "failsafeInboundHostPorts": [{"port": 22}, {"protocol": "UDP", "port": 68}],
        "routeTableRange": {"min": 1, "max": 250},
        **CALICO_DEFAULTS,
    }
    order = [key for key in stored["spec"] if key in SPEC_FIELDS]
    assert order == sorted(order, key=SPEC_FIELDS.index)
    assert to_dict(from_dict(stored)) == stored


def test_calicoctl_defaults() -> None:
    assert to_dict(from_dict(felix()))["spec"] == CALICO_DEFAULTS
    spec = to_dict(from_dict(felix({"bpfConnectTimeLoadBalancingEnabled": True})))["spec"]
    assert spec["bpfConnectTimeLoadBalancing"] == "Enabled"
    assert spec["bpfHostNetworkedNATWithoutCTLB"] == "Disabled"
    kept = to_dict(from_dict(felix({"floatingIPs": "Enabled", "nodeSelector": None})))["spec"]
    assert kept["floatingIPs"] == "Enabled" and "nodeSelector" not in kept


def test_yaml_bundle_loads_and_kind_aliases_resolve() -> None:
    bundle = b"""
apiVersion: projectcalico.org/v3
kind: FelixConfigurationList
items:
  - metadata: {name: default}
    spec:
      iptablesMarkMask: 0xff000000
      failsafeInboundHostPorts: [{protocol: TCP, port: 22}]
  - metadata: {name: node.a}
    spec: {chainInsertMode: Append}
"""
    loaded: list[Resource] = load_documents(bundle, "bundle.yaml")
    first, second = loaded
    assert isinstance(first, FelixConfiguration) and isinstance(second, FelixConfiguration)
    assert first.spec.iptables_mark_mask == 0xFF000000
    assert second.node == "a" and first.node is None
    for alias in ("felixconfiguration", "felixconfigurations", "felixconfig", "FelixConfigs"):
        info = resolve_kind(alias)
        assert info.kind == "FelixConfiguration" and info.plural == "felixconfigurations"


def test_built_in_python_the_first_problem_raises() -> None:
    with pytest.raises(ValueError, match=r"spec.chainInsertMode: unsupported value 'Top'"):
        FelixConfiguration.model_validate(felix({"chainInsertMode": "Top"}), by_alias=True)


def test_etcd_key_is_calicos() -> None:
    from felis.datastore import etcd_codec

    prefix = "/calico/resources/v3/projectcalico.org/felixconfigurations/"
    assert etcd_codec.key_of("FelixConfiguration", "node.worker-1") == prefix + "node.worker-1"
    assert etcd_codec.split_key(prefix + "default") == ("FelixConfiguration", "default")
