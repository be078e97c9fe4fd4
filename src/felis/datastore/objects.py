"""Backend-neutral handling of the Calico JSON objects a datastore stores.

Both backends store the same shape and apply the same ownership rules, so those rules live
here once: which metadata fields the store owns, what "unchanged" means for apply, and the
built-in tiers.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from felis.datastore.errors import InvalidObject
from felis.model.constants import API_VERSION, BUILTIN_TIERS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from felis.datastore.base import ApplyAction, DeleteKey

JSONObject = dict[str, Any]

# Metadata fields the datastore owns: whatever a caller puts there is replaced.
OWNED_METADATA = ("resourceVersion", "uid", "creationTimestamp")

# Calico's namespaced kinds that felis stores. The protocol names an object by one string, so a
# namespaced one is `<namespace>/<name>`: Calico's own etcd key layout, and how calicoctl names
# it in messages (`NetworkPolicy(team-a/allow-dns)`). Neither part may contain a '/'.
NAMESPACED_KINDS = frozenset(
    {"NetworkPolicy", "NetworkSet", "StagedNetworkPolicy", "StagedKubernetesNetworkPolicy"}
)


def builtin_tier_objects() -> list[JSONObject]:
    """The built-in tiers as Calico creates them on datastore initialisation."""
    return [
        {
            "apiVersion": API_VERSION,
            "kind": "Tier",
            "metadata": {"name": name},
            "spec": {"order": order, "defaultAction": action},
        }
        for name, order, action in BUILTIN_TIERS
    ]


def now_rfc3339() -> str:
    """UTC, whole seconds, `Z` suffix: the form Kubernetes/Calico print."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_key(kind: object, name: object) -> tuple[str, str]:
    if not isinstance(kind, str) or not kind:
        raise InvalidObject(f"invalid object: kind must be a non-empty string, got {kind!r}")
    if not isinstance(name, str) or not name:
        raise InvalidObject(
            f"invalid object: {kind}: metadata.name must be a non-empty string, got {name!r}"
        )
    if kind in NAMESPACED_KINDS:
        namespace, slash, bare = name.partition("/")
        if not (slash and namespace and bare) or "/" in bare:
            raise InvalidObject(
                f"invalid object: {kind}({name!r}): a namespaced resource is named "
                "<namespace>/<name>"
            )
    return kind, name


def split_name(kind: str, name: str) -> tuple[str, str]:
    """(namespace, name) of a key name; the namespace is empty for a cluster-scoped kind."""
    if kind in NAMESPACED_KINDS:
        namespace, _, bare = name.partition("/")
        return namespace, bare
    return "", name


def object_key(obj: object) -> tuple[str, str]:
    """(kind, name) of a Calico object, or InvalidObject saying what is missing; the name of a
    namespaced object is `<namespace>/<name>`."""
    if not isinstance(obj, dict):
        raise InvalidObject(f"invalid object: expected a JSON object, got {type(obj).__name__}")
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        raise InvalidObject(f"invalid object: {obj.get('kind')!r}: metadata must be an object")
    kind, name = obj.get("kind"), metadata.get("name")
    if isinstance(kind, str) and kind in NAMESPACED_KINDS and isinstance(name, str) and name:
        namespace = metadata.get("namespace")
        if not isinstance(namespace, str) or not namespace:
            raise InvalidObject(
                f"invalid object: {kind}({name}): metadata.namespace must be a non-empty string, "
                f"got {namespace!r}"
            )
        name = f"{namespace}/{name}"
    return check_key(kind, name)


def given_resource_version(obj: JSONObject) -> str | None:
    """The caller's `metadata.resourceVersion`, or None when absent or empty."""
    value = obj["metadata"].get("resourceVersion")
    if value is None or value == "":
        return None
    return str(value)


def check_creatable(kind: str, name: str, obj: JSONObject) -> None:
    """InvalidObject when `obj` carries a resourceVersion: Calico's client refuses it on create."""
    if given_resource_version(obj) is not None:
        raise InvalidObject(
            f"invalid object: {kind}({name}): metadata.resourceVersion must not be set on create"
        )


def keyed_for_create(objs: Sequence[JSONObject]) -> list[tuple[tuple[str, str], JSONObject]]:
    """Each object with its (kind, name), all checked as creatable before any is written."""
    keyed = [(object_key(obj), obj) for obj in objs]
    for (kind, name), obj in keyed:
        check_creatable(kind, name, obj)
    return keyed


def delete_target(key: DeleteKey) -> tuple[str, str, str | None]:
    """(kind, name, resourceVersion guard or None) of one `delete_all` key."""
    kind, name = check_key(key[0], key[1])
    guard = key[2] if len(key) > 2 else None
    return kind, name, str(guard) if guard not in (None, "") else None


def stored_form(obj: JSONObject, uid: str, created: str) -> JSONObject:
    """A deep copy of `obj` as the store keeps it: owned fields set, resourceVersion absent.

    Empty labels/annotations maps are dropped (Go's omitempty does the same), so `labels: {}`
    and no labels at all compare equal when apply decides whether anything changed.
    """
    try:
        copy: JSONObject = json.loads(json.dumps(obj))
    except (TypeError, ValueError) as exc:
        kind, name = object_key(obj)
        raise InvalidObject(
            f"invalid object: {kind}({name}): not JSON-serialisable: {exc}"
        ) from None
    metadata: JSONObject = copy["metadata"]
    for field in OWNED_METADATA:
        metadata.pop(field, None)
    for field in ("labels", "annotations"):
        if field in metadata and not metadata[field]:
            del metadata[field]
    metadata["uid"] = uid
    metadata["creationTimestamp"] = created
    return copy


def new_stored_form(obj: JSONObject) -> JSONObject:
    """Stored form of an object being created: fresh uid and creation time."""
    return stored_form(obj, str(uuid.uuid4()), now_rfc3339())


def updated_stored_form(obj: JSONObject, current: JSONObject) -> JSONObject:
    """Stored form of an update: identity (uid, creationTimestamp) kept from `current`."""
    meta = current["metadata"]
    return stored_form(obj, str(meta.get("uid", "")), str(meta.get("creationTimestamp", "")))


def apply_action(obj: JSONObject, current: JSONObject | None) -> ApplyAction:
    """What `apply` would do with `obj` given `current`, the object as read from the store
    (None when absent): for a dry run, which must not write to find out."""
    if current is None:
        return "created"
    as_stored = {**current, "metadata": dict(current["metadata"])}
    as_stored["metadata"].pop("resourceVersion", None)
    return "unchanged" if updated_stored_form(obj, current) == as_stored else "updated"


def encode(obj: JSONObject) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def decode(value: str, revision: int) -> JSONObject:
    """A stored value as callers see it: with its resourceVersion."""
    obj: JSONObject = json.loads(value)
    obj["metadata"]["resourceVersion"] = str(revision)
    return obj
