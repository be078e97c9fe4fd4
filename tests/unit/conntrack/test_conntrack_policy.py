import pytest
import yaml

from felis.conntrack.analysis import Listener
from felis.conntrack.policy import advice_yaml, policy_documents, resource_name, validate
from felis.errors import FelisError

LISTENER = Listener(
    proto="tcp",
    port=12211,
    local_addresses=("198.18.0.1",),
    interfaces=("eth0",),
    entries=4096,
    share=1.0,
    new_per_s=250.0,
    growth_per_s=0.0,
    peers=("198.18.0.10",),
    peer_nets=("198.18.0.0/24",),
    states={"TIME_WAIT": 4096},
)


def test_policy_allows_both_directions_untracked() -> None:
    hep, gnp = policy_documents(LISTENER, node="memcached-node-1", interface="eth0")
    assert hep["kind"] == "HostEndpoint"
    assert hep["spec"] == {
        "node": "memcached-node-1",
        "interfaceName": "eth0",
        "expectedIPs": ["198.18.0.1"],
    }
    spec = gnp["spec"]
    assert isinstance(spec, dict)
    assert spec["doNotTrack"] is True and spec["applyOnForward"] is True
    [ing] = spec["ingress"]
    [egr] = spec["egress"]
    assert ing["destination"] == {"ports": [12211]} and ing["source"] == {"nets": ["198.18.0.0/24"]}
    assert egr["source"] == {"ports": [12211]} and egr["destination"] == {"nets": ["198.18.0.0/24"]}
    assert spec["selector"] == "host-endpoint == 'memcached-node-1-eth0'"
    assert hep["metadata"]["labels"] == {"host-endpoint": "memcached-node-1-eth0"}  # type: ignore[index]


def test_advice_yaml_is_valid_for_felis_model() -> None:
    text = advice_yaml(LISTENER, node="memcached-node-1", interface="eth0", table_max=4096)
    docs = list(yaml.safe_load_all(text))
    assert [d["kind"] for d in docs] == ["HostEndpoint", "GlobalNetworkPolicy"]
    assert text.startswith("# Proposed by `felis conntrack advise`")
    validate(text)  # no exception


def test_validate_rejects_bad_policy() -> None:
    with pytest.raises(FelisError):
        validate(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n"
            "metadata: {name: x}\nspec: {doNotTrack: maybe}\n"
        )


def test_resource_name_is_calico_safe() -> None:
    assert resource_name("Node_1", "eth0") == "node-1-eth0"
    assert resource_name("notrack", "a..b", "TCP", "80") == "notrack-a..b-tcp-80"
