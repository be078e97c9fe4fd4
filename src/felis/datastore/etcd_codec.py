"""Calico's etcd v3 layout: keys, value JSON and the read-side name rules.

Keys are `/calico/resources/v3/projectcalico.org/<plural>/<name>`, and
`…/<plural>/<namespace>/<name>` for a namespaced kind (whose datastore name is
`<namespace>/<name>`, so the key ends with the same string either way). A value is the object's
JSON as libcalico-go writes it: `kind`, `apiVersion`, `metadata`, `spec` in that order, metadata
keys in Kubernetes' ObjectMeta order, no `resourceVersion` (it is the key's mod_revision). Calico
policies (global, namespaced and staged, not the staged Kubernetes form) also carry the annotation
`projectcalico.org/metadata` = `{"name":"<name>"}`, which tells readers the real name; it is added
on every write and removed on read.

Values written by Calico ≤ v3.29 keep default-tier policies under `default.<name>` without that
annotation; `decode_value` reports them under `<name>`, as current Calico does.
"""

from __future__ import annotations

import json
from typing import Any

from felis.datastore.errors import InvalidObject
from felis.datastore.objects import NAMESPACED_KINDS, JSONObject, split_name
from felis.model import KINDS
from felis.model.constants import API_VERSION, DEFAULT_TIER, TIERED_KINDS

PREFIX = "/calico/resources/v3/projectcalico.org/"
METADATA_ANNOTATION = "projectcalico.org/metadata"
LEGACY_POLICY_PREFIX = f"{DEFAULT_TIER}."

# Calico's cluster-scoped kinds and their key plurals. felis.model is the authority for the
# kinds it models; this table covers the rest so that keys written by other Calico tools are
# recognised.
_PLURALS: dict[str, str] = {
    "GlobalNetworkPolicy": "globalnetworkpolicies",
    "HostEndpoint": "hostendpoints",
    "GlobalNetworkSet": "globalnetworksets",
    "Tier": "tiers",
    "Profile": "profiles",
    "FelixConfiguration": "felixconfigurations",
    "ClusterInformation": "clusterinformations",
    "StagedGlobalNetworkPolicy": "stagedglobalnetworkpolicies",
    "IPPool": "ippools",
    "IPReservation": "ipreservations",
    "BGPConfiguration": "bgpconfigurations",
    "BGPPeer": "bgppeers",
    "BGPFilter": "bgpfilters",
    "KubeControllersConfiguration": "kubecontrollersconfigurations",
    "CalicoNodeStatus": "caliconodestatuses",
    "IPAMConfiguration": "ipamconfigurations",
    "Node": "nodes",
}


_TOP_ORDER = ("kind", "apiVersion", "metadata", "spec")
# Kubernetes ObjectMeta field order (Go struct order, which encoding/json follows).
_META_ORDER = (
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
)


PLURALS: dict[str, str] = {**_PLURALS, **{kind: info.plural for kind, info in KINDS.items()}}
KINDS_BY_PLURAL: dict[str, str] = {plural: kind for kind, plural in PLURALS.items()}


def plural_of(kind: str) -> str:
    plural = PLURALS.get(kind)
    if plural is None:
        shown = kind if kind.isprintable() else repr(kind)
        raise InvalidObject(
            f"invalid object: kind {shown} cannot be stored in etcd (felis knows the Calico "
            f"kinds {', '.join(sorted(PLURALS))})"
        )
    return plural


def kind_prefix(kind: str) -> str:
    # Trailing slash: `tiers/` must not match `tiersX/…`.
    return f"{PREFIX}{plural_of(kind)}/"


def key_of(kind: str, name: str) -> str:
    namespace, bare = split_name(kind, name)
    if "/" in bare or "/" in namespace or (kind in NAMESPACED_KINDS and not namespace):
        raise InvalidObject(f"invalid object: {kind}({name!r}): metadata.name must not contain '/'")
    return kind_prefix(kind) + name


def legacy_key_of(kind: str, name: str) -> str | None:
    """Where Calico ≤ v3.29 kept the default-tier policy now called `name`."""
    if kind not in TIERED_KINDS:
        return None
    namespace, bare = split_name(kind, name)
    scope = f"{namespace}/" if namespace else ""
    return kind_prefix(kind) + scope + LEGACY_POLICY_PREFIX + bare


def split_key(key: str) -> tuple[str, str] | None:
    """(kind, key name) of a resource key, or None for keys felis does not handle."""
    if not key.startswith(PREFIX):
        return None
    plural, sep, name = key[len(PREFIX) :].partition("/")
    kind = KINDS_BY_PLURAL.get(plural)
    if kind is None or not sep or not name:
        return None
    namespace, bare = split_name(kind, name)
    if not bare or "/" in bare or (kind in NAMESPACED_KINDS and not namespace):
        return None
    return kind, name


def stub(kind: str, key_name: str) -> JSONObject:
    """What is known of an object from its key alone (its value already compacted away)."""
    namespace, bare = split_name(kind, key_name)
    meta = {"name": bare, "namespace": namespace} if namespace else {"name": bare}
    return canonical({"kind": kind, "metadata": meta})


def _ordered(mapping: dict[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    out = {field: mapping[field] for field in order if field in mapping}
    out.update((field, value) for field, value in mapping.items() if field not in out)
    return out


def canonical(obj: JSONObject) -> JSONObject:
    """The felis view of a stored object: apiVersion present, Calico's key order.

    Applied to both what is read and what is about to be written, so "unchanged" compares
    like with like.
    """
    out = dict(obj)
    out.setdefault("apiVersion", API_VERSION)
    out["metadata"] = _ordered(obj["metadata"], _META_ORDER)
    return _ordered(out, _TOP_ORDER)


def encode_value(obj: JSONObject) -> str:
    """The etcd value for a stored-form object (no resourceVersion; see module docstring)."""
    kind = obj["kind"]
    value = canonical(obj)
    meta = dict(value["metadata"])
    meta.pop("resourceVersion", None)
    if kind in TIERED_KINDS:
        annotations = dict(meta.get("annotations") or {})
        annotations[METADATA_ANNOTATION] = json.dumps(
            {"name": meta["name"]}, separators=(",", ":"), ensure_ascii=False
        )
        meta["annotations"] = annotations
    value["metadata"] = _ordered(meta, _META_ORDER)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def decode_value(kind: str, key_name: str, raw: bytes, mod_revision: int) -> JSONObject:
    """An etcd value as felis callers see it (resourceVersion = mod_revision).

    Raises ValueError for a value that is not a JSON object with a metadata object.
    """
    obj = json.loads(raw.decode("utf-8"))
    if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
        raise ValueError("not a Calico object")
    obj.setdefault("kind", kind)
    meta: dict[str, Any] = obj["metadata"]
    namespace, bare = split_name(kind, key_name)
    name = meta.get("name") or bare
    if kind in TIERED_KINDS:
        name = _policy_name(obj, name)
    meta["name"] = name
    if namespace:
        # The key is authoritative: it is where Calico's own readers look the object up.
        meta["namespace"] = namespace
    meta["resourceVersion"] = str(mod_revision)
    return canonical(obj)


def _policy_name(obj: JSONObject, name: str) -> str:
    meta = obj["metadata"]
    annotations = meta.get("annotations")
    if isinstance(annotations, dict) and METADATA_ANNOTATION in annotations:
        text = annotations.pop(METADATA_ANNOTATION)
        if not annotations:
            del meta["annotations"]
        try:
            named = json.loads(text).get("name")
        except (ValueError, AttributeError):
            named = None
        return named if isinstance(named, str) and named else name
    spec = obj.get("spec")
    tier = spec.get("tier") if isinstance(spec, dict) else None
    if tier in (None, "", DEFAULT_TIER) and name.startswith(LEGACY_POLICY_PREFIX):
        return name[len(LEGACY_POLICY_PREFIX) :]
    return name
