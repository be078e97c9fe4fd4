"""The Datastore protocol: what every backend offers and the agent/CLI rely on.

A datastore is a versioned store of Calico JSON objects keyed by (kind, name), where the name of
a namespaced kind is `<namespace>/<name>` (felis.datastore.objects.NAMESPACED_KINDS). It never
interprets `spec`. It owns three metadata fields:

* `resourceVersion`: decimal string of the global revision of the object's last write.
  Revisions are positive integers and never decrease. SQLite gives every object of a
  multi-object write its own consecutive revision; etcd commits one transaction at one
  revision, so the objects of one write share it. Watchers must not assume gaps or uniqueness.
* `uid`: random UUID4, set on create, kept by every update.
* `creationTimestamp`: RFC3339 UTC (`2026-11-26T07:00:00Z`), set on create, kept by updates.

Values passed in are never mutated; values returned are fresh copies.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from felis.datastore.objects import JSONObject, object_key

EventType = Literal["ADDED", "MODIFIED", "DELETED"]
ApplyAction = Literal["created", "updated", "unchanged"]

# (kind, name) or (kind, name, resourceVersion-guard-or-None)
DeleteKey = tuple[str, str] | tuple[str, str, str | None]


@dataclass(frozen=True)
class Listing:
    """A consistent snapshot: `items` sorted by (kind, name) as of `revision`.

    Watching from `revision` afterwards yields exactly the changes made after the snapshot.
    """

    items: list[JSONObject]
    revision: int


@dataclass(frozen=True)
class WatchEvent:
    """One change. For DELETED, `object` is the object as it was last stored (its own
    resourceVersion), while `revision` is the revision of the deletion."""

    type: EventType
    kind: str
    name: str
    object: JSONObject
    revision: int


@dataclass(frozen=True)
class ApplyResult:
    action: ApplyAction
    object: JSONObject

    @property
    def kind(self) -> str:
        return str(self.object["kind"])

    @property
    def name(self) -> str:
        """The key name (`<namespace>/<name>` for a namespaced kind)."""
        return object_key(self.object)[1]


@runtime_checkable
class Datastore(Protocol):
    def get(self, kind: str, name: str) -> JSONObject:
        """The stored object; NotFound if absent."""
        ...

    def list(self, kind: str | None = None) -> Listing:
        """All objects of `kind` (every kind when None), sorted by (kind, name)."""
        ...

    def create(self, obj: JSONObject) -> JSONObject:
        """Store a new object. AlreadyExists if the key exists; InvalidObject if the input
        carries a resourceVersion (as Calico's client library refuses it on create)."""
        ...

    def create_all(self, objs: Sequence[JSONObject]) -> builtins.list[JSONObject]:
        """Create every object in one transaction; on any failure nothing is written."""
        ...

    def update(self, obj: JSONObject) -> JSONObject:
        """Compare-and-swap: `metadata.resourceVersion` must equal the stored one (Conflict
        otherwise, also when missing); NotFound if absent. uid/creationTimestamp are kept."""
        ...

    def apply(self, objs: Sequence[JSONObject]) -> builtins.list[ApplyResult]:
        """calicoctl-apply semantics for many objects in ONE all-or-nothing transaction.

        Absent object → created (a resourceVersion on it is ignored, as calicoctl does).
        Present object → if the input carries a resourceVersion it must match (Conflict, and
        nothing at all is written); the stored uid/creationTimestamp are kept and everything
        else comes from the input. If the result equals what is stored the object is not
        rewritten and keeps its resourceVersion ("unchanged"). Objects are processed in order,
        so a key given twice is applied twice.
        """
        ...

    def delete(self, kind: str, name: str, resource_version: str | None = None) -> JSONObject:
        """Remove and return the object (as last stored). NotFound if absent; Conflict if
        `resource_version` is given and differs from the stored one."""
        ...

    def delete_all(self, keys: Sequence[DeleteKey]) -> builtins.list[JSONObject]:
        """Delete every key in one transaction; on any failure nothing is deleted."""
        ...

    def watch(
        self,
        since_revision: int,
        *,
        stop: threading.Event | None = None,
        poll_interval: float = 0.05,
    ) -> Iterator[WatchEvent]:
        """Every change with revision > since_revision, in revision order, then block for new
        ones (polling every `poll_interval` seconds) until `stop` is set.

        Once `stop` is set the iterator ends instead of waiting, after yielding what was
        already committed (so a pre-set `stop` means "drain and return"). Compacted is raised
        by the call, or from the iterator, when that history is gone (also when it is
        compacted away while the watch runs): list again and watch from the new revision."""
        ...

    def compact(self, keep_revision: int) -> None:
        """Discard history older than `keep_revision` (events with a lower revision): a
        watch may then start from since_revision >= keep_revision - 1."""
        ...

    def revision(self) -> int:
        """The latest revision (0 for an empty, never-written store)."""
        ...

    def ensure_initialized(self) -> None:
        """Create Calico's built-in tiers when absent; a no-op (no new revision) otherwise."""
        ...

    def close(self) -> None: ...
