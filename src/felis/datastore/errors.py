"""Errors raised by every datastore backend.

Each message is one printable line that names the resource the way calicoctl does
(`<Kind>(<name>)`), so the CLI can print it unchanged.
"""

from __future__ import annotations

from felis.errors import FelisError


def _printable(text: str) -> str:
    # Names come from user manifests; a stray newline must not split an error line.
    return text if text.isprintable() else repr(text)


def resource_ref(kind: str, name: str) -> str:
    """`GlobalNetworkPolicy(foo)`: how calicoctl names a resource in its messages."""
    return f"{_printable(kind)}({_printable(name)})"


class DatastoreError(FelisError):
    """Base class of every datastore failure."""


class InvalidObject(DatastoreError):
    """The object handed to a write is not a storable Calico object (no kind, no name, …)."""


class NotFound(DatastoreError):
    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"resource does not exist: {resource_ref(kind, name)}")
        self.kind = kind
        self.name = name


class AlreadyExists(DatastoreError):
    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"resource already exists: {resource_ref(kind, name)}")
        self.kind = kind
        self.name = name


class Conflict(DatastoreError):
    """A compare-and-swap on `metadata.resourceVersion` lost: someone else wrote first."""

    def __init__(self, kind: str, name: str, given: str | None, latest: str) -> None:
        if given:
            detail = f"resource version '{_printable(given)}' is out of date (latest: {latest})"
        else:
            detail = f"metadata.resourceVersion is required (latest: {latest})"
        super().__init__(f"update conflict: {resource_ref(kind, name)}: {detail}")
        self.kind = kind
        self.name = name
        self.given = given
        self.latest = latest


class Compacted(DatastoreError):
    """The history a watch asked for has been discarded; list again and resync."""

    def __init__(self, since_revision: int, oldest_kept: int) -> None:
        super().__init__(
            f"watch from revision {since_revision} is not possible: history before revision "
            f"{oldest_kept} has been compacted (list again and resync)"
        )
        self.since_revision = since_revision
        self.oldest_kept = oldest_kept


def compaction_beyond_latest(keep_revision: int, latest: int) -> DatastoreError:
    """What every backend says when asked to keep history that does not exist yet."""
    return DatastoreError(
        f"cannot compact to revision {keep_revision}: latest revision is {latest}"
    )


class Unavailable(DatastoreError):
    """The store cannot be opened, read or written (path or endpoint, and the reason)."""


class StorageUnavailable(Unavailable):
    """The file system refused the store's file (full, read-only, I/O error): a condition an
    operator fixes outside felis, after which the same call succeeds."""


class Missing(Unavailable):
    """The store does not exist and was opened read-only, so it was not created: reading
    commands must not leave an empty datastore behind (a mistyped path would look valid)."""


class MarkChanged(DatastoreError):
    """A write conditioned on a mark's version (`Datastore.write_marked`) lost: another writer
    changed the mark first, and nothing was written."""

    def __init__(self, name: str, expected: int, latest: int) -> None:
        super().__init__(
            f"datastore mark {_printable(name)!r} changed meanwhile "
            f"(expected version {expected}, found {latest}); nothing was written"
        )
        self.name = name
        self.expected = expected
        self.latest = latest
