"""Versioned store of Calico JSON objects: the protocol, the SQLite backend, URL selection."""

from felis.datastore.base import (
    ApplyResult,
    Datastore,
    DeleteKey,
    Listing,
    Mark,
    ReadView,
    WatchEvent,
    WriteCheck,
)
from felis.datastore.errors import (
    AlreadyExists,
    Compacted,
    Conflict,
    DatastoreError,
    InvalidObject,
    MarkChanged,
    Missing,
    NotFound,
    StorageUnavailable,
    Unavailable,
)
from felis.datastore.sqlite import SqliteDatastore
from felis.datastore.url import (
    DEFAULT_URL,
    EtcdConfig,
    SqliteConfig,
    open_datastore,
    parse_url,
    resolve_config,
)

__all__ = [
    "DEFAULT_URL",
    "AlreadyExists",
    "ApplyResult",
    "Compacted",
    "Conflict",
    "Datastore",
    "DatastoreError",
    "DeleteKey",
    "EtcdConfig",
    "InvalidObject",
    "Listing",
    "Mark",
    "MarkChanged",
    "Missing",
    "NotFound",
    "ReadView",
    "SqliteConfig",
    "SqliteDatastore",
    "StorageUnavailable",
    "Unavailable",
    "WatchEvent",
    "WriteCheck",
    "open_datastore",
    "parse_url",
    "resolve_config",
]
