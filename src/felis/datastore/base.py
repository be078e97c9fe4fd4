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

The multi-object writes take `checks`: a callback the backend calls inside the write's
transaction with a `ReadView` of what is stored, before the write changes anything. It refuses
the write by raising (nothing is written and its exception propagates), so a rule that spans
objects (a policy's tier must exist, a tier holding policies must stay) holds even when two
clients write at once. Whatever the callback read is unchanged when the write commits: SQLite
holds its write lock throughout; etcd pins what was read in the commit's compares and, when
another writer got in first, runs the whole round again, callback included, on a fresh read.
The callback may therefore run more than once and must do nothing but read and raise.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Iterator, Sequence
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


Key = tuple[str, str]
"""(kind, name) of a stored object; the name of a namespaced kind is `<namespace>/<name>`."""


class ReadView(Protocol):
    """The stored objects as a write transaction sees them, before that write (see the module
    docstring). Objects carry their resourceVersion."""

    def get_all(self, keys: Sequence[Key]) -> dict[Key, JSONObject | None]:
        """Each key's stored object, None when absent. The write fails and is retried (etcd) or
        cannot interleave (SQLite) when any of them is created, changed or deleted meanwhile."""
        ...

    def list(self, kind: str) -> builtins.list[JSONObject]:
        """Every stored object of `kind`, sorted by name. On etcd the write is retried when an
        object of `kind` is created or changed meanwhile, but not when one is only deleted: a
        check that needs an object to exist reads it with `get_all`."""
        ...


WriteCheck = Callable[[ReadView], None]
"""A `checks` callback: reads the view, raises to refuse the write."""


@dataclass(frozen=True)
class Mark:
    """A named record of felis' own bookkeeping, kept beside the resources but never one of
    them: listings and watches do not show it, and it is written in the same transaction as
    resources (`Datastore.write_marked`). `apply --confirm` keeps its pending confirmation in
    one (felis.resources.confirm)."""

    value: JSONObject | None
    """The record; None when there is none."""
    version: int
    """The compare-and-swap token of `write_marked`: 0 when the mark was never written (or,
    on etcd, is absent); every write changes it, and it never comes back to an earlier
    value."""
    revision: int
    """The datastore revision of the write that stored the mark: objects written by that same
    write have a resourceVersion at most this, objects written by any later write a greater
    one (0 when there is no mark)."""


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

    def create_all(
        self, objs: Sequence[JSONObject], *, checks: WriteCheck | None = None
    ) -> builtins.list[JSONObject]:
        """Create every object in one transaction; on any failure nothing is written. `checks`:
        see the module docstring."""
        ...

    def update(self, obj: JSONObject) -> JSONObject:
        """Compare-and-swap: `metadata.resourceVersion` must equal the stored one (Conflict
        otherwise, also when missing); NotFound if absent. uid/creationTimestamp are kept."""
        ...

    def apply(
        self, objs: Sequence[JSONObject], *, checks: WriteCheck | None = None
    ) -> builtins.list[ApplyResult]:
        """calicoctl-apply semantics for many objects in ONE all-or-nothing transaction
        (`checks`: see the module docstring).

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

    def delete_all(
        self, keys: Sequence[DeleteKey], *, checks: WriteCheck | None = None
    ) -> builtins.list[JSONObject]:
        """Delete every key in one transaction; on any failure nothing is deleted. `checks`:
        see the module docstring."""
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

    def read_mark(self, name: str) -> Mark:
        """The mark `name` as last written (see `Mark`)."""
        ...

    def write_marked(
        self,
        name: str,
        expect: int,
        value: JSONObject | None,
        *,
        apply: Sequence[JSONObject] = (),
        delete: Sequence[DeleteKey] = (),
        checks: WriteCheck | None = None,
    ) -> builtins.list[ApplyResult]:
        """In ONE all-or-nothing transaction: set the mark `name` to `value` (None removes
        it), `apply` the objects (with `apply`'s semantics and results) and delete the keys of
        `delete` (with `delete_all`'s). MarkChanged, writing nothing, unless the mark's version
        is still `expect`; `checks` as for the other multi-object writes."""
        ...

    def close(self) -> None: ...
