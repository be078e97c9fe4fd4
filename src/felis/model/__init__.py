"""Calico v3 resources: typed models, Calico's defaulting and validation, safe loading.

resources = load_documents(data, "policy.yaml")   # ManifestError lists every problem
obj = to_dict(resources[0])                         # Calico's JSON form
same = from_dict(obj)
"""

from felis.model.constants import API_VERSION, DEFAULT_TIER
from felis.model.errors import DocumentError, ManifestError
from felis.model.kinds import KINDS, LIST_KINDS, KindInfo, resolve_kind
from felis.model.loader import (
    Located,
    from_dict,
    load_documents,
    load_file,
    load_located,
    read_bounded,
    to_dict,
)
from felis.model.namespaced import DEFAULT_NAMESPACE, qualified_name
from felis.model.resources import (
    EndpointPort,
    EntityRule,
    GlobalNetworkPolicy,
    GlobalNetworkPolicySpec,
    GlobalNetworkSet,
    GlobalNetworkSetSpec,
    HostEndpoint,
    HostEndpointSpec,
    HTTPMatch,
    HTTPPath,
    ICMPFields,
    NetworkPolicy,
    NetworkSet,
    ObjectMeta,
    Resource,
    Rule,
    RuleMetadata,
    ServiceAccountMatch,
    ServiceMatch,
    StagedGlobalNetworkPolicy,
    StagedKubernetesNetworkPolicy,
    StagedNetworkPolicy,
    Tier,
    TierSpec,
    TierStatus,
)
from felis.model.validate import TIER_LABEL, write_problems
from felis.model.values import Port, ProtocolValue
from felis.model.yamlsafe import Limits

__all__ = [
    "API_VERSION",
    "DEFAULT_NAMESPACE",
    "DEFAULT_TIER",
    "KINDS",
    "LIST_KINDS",
    "TIER_LABEL",
    "DocumentError",
    "EndpointPort",
    "EntityRule",
    "GlobalNetworkPolicy",
    "GlobalNetworkPolicySpec",
    "GlobalNetworkSet",
    "GlobalNetworkSetSpec",
    "HTTPMatch",
    "HTTPPath",
    "HostEndpoint",
    "HostEndpointSpec",
    "ICMPFields",
    "KindInfo",
    "Limits",
    "Located",
    "ManifestError",
    "NetworkPolicy",
    "NetworkSet",
    "ObjectMeta",
    "Port",
    "ProtocolValue",
    "Resource",
    "Rule",
    "RuleMetadata",
    "ServiceAccountMatch",
    "ServiceMatch",
    "StagedGlobalNetworkPolicy",
    "StagedKubernetesNetworkPolicy",
    "StagedNetworkPolicy",
    "Tier",
    "TierSpec",
    "TierStatus",
    "from_dict",
    "load_documents",
    "load_file",
    "load_located",
    "qualified_name",
    "read_bounded",
    "resolve_kind",
    "to_dict",
    "write_problems",
]
