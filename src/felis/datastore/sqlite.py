"""Embedded datastore: one SQLite file, safe for several processes at once.

Layout:
* `meta(key, value)`: `schema` (format version), `revision` (the global revision counter) and
  `compact_revision` (events below it have been discarded).
* `resources(kind, name, revision, value)`: the current objects; `value` is the stored JSON
  without `resourceVersion`, which is derived from `revision`. `name` is the protocol's name,
  `<namespace>/<name>` for a namespaced kind: the namespace is part of the identity without a
  column of its own, so files written before felis knew namespaced kinds need no migration.
* `events(revision, type, kind, name, value)`: append-only history for watch; `value` is the
  object exactly as a watcher sees it (with resourceVersion).
* `marks(name, version, revision, value)`: felis' own records beside the resources
  (`base.Mark`), created on first use; never listed or watched.

Every write is one `BEGIN IMMEDIATE` transaction: it takes SQLite's write lock up front (waiting
up to the busy timeout), so writers in different processes serialise and a compare-and-swap
read and its write can never interleave with another writer. Each object written gets the
next revision; a multi-object write uses consecutive revisions, so events have no gaps and every
resourceVersion is unique. WAL mode lets readers and watchers proceed while a writer works.
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from felis.datastore.base import (
    ApplyResult,
    DeleteKey,
    Listing,
    Mark,
    WatchEvent,
    WriteCheck,
)
from felis.datastore.errors import (
    AlreadyExists,
    Compacted,
    Conflict,
    MarkChanged,
    Missing,
    NotFound,
    StorageUnavailable,
    Unavailable,
    compaction_beyond_latest,
)
from felis.datastore.objects import (
    JSONObject,
    builtin_tier_objects,
    check_key,
    decode,
    delete_target,
    encode,
    given_resource_version,
    keyed_for_create,
    new_stored_form,
    object_key,
    updated_stored_form,
)
from felis.datastore.sqlite_txn import Txn, apply_in, delete_in, run_checks

SCHEMA_VERSION = 1
DEFAULT_BUSY_TIMEOUT = 30.0
_WATCH_BATCH = 1000
_FELIS_TABLES = frozenset({"meta", "resources", "events"})
# felis' own records beside the resources (`Mark`); `value` NULL once removed.
_MARKS_TABLE = (
    "CREATE TABLE IF NOT EXISTS marks (name TEXT PRIMARY KEY, version INTEGER NOT NULL,"
    " revision INTEGER NOT NULL, value TEXT) WITHOUT ROWID"
)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS resources (kind TEXT NOT NULL, name TEXT NOT NULL,"
    " revision INTEGER NOT NULL, value TEXT NOT NULL, PRIMARY KEY (kind, name)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS events (revision INTEGER PRIMARY KEY,"
    " type TEXT NOT NULL CHECK (type IN ('ADDED', 'MODIFIED', 'DELETED')),"
    " kind TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL)",
    "INSERT OR IGNORE INTO meta (key, value) VALUES"
    f" ('schema', {SCHEMA_VERSION}), ('revision', 0), ('compact_revision', 0)",
)


def _one_line(text: str) -> str:
    return " ".join(text.split())


class SqliteDatastore:
    """The `Datastore` protocol on one SQLite file (see the module docstring)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        read_only: bool = False,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.read_only = read_only
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._closed = False
        # A connection must not be used across fork(); children open their own (see _live).
        self._pid = os.getpid()
        self._inherited: builtins.list[sqlite3.Connection] = []
        self._conn = self._connect()
        try:
            self._init_schema()
        except BaseException:
            self._conn.close()
            raise

    # -- connection handling -------------------------------------------------------------

    def _unavailable(self, action: str, exc: BaseException) -> Unavailable:
        reason = _one_line(str(exc))
        cause = _storage_cause(os.path.dirname(self.path))
        if cause and cause not in reason:
            # SQLite says "disk I/O error" when it cannot even create its -wal/-shm files.
            reason += f" ({cause})"
        # A full or read-only file system is fixed outside felis; anything else may be for good.
        kind = StorageUnavailable if cause else Unavailable
        return kind(f"sqlite datastore {self.path}: cannot {action}: {reason}")

    def _connect(self) -> sqlite3.Connection:
        if os.path.isdir(self.path):
            raise Unavailable(f"sqlite datastore {self.path}: cannot open: is a directory")
        if self.read_only and not os.path.exists(self.path):
            raise Missing(
                f"sqlite datastore {self.path}: does not exist (the first write creates it)"
            )
        parent = os.path.dirname(self.path)
        if not self.read_only:
            try:
                os.makedirs(parent, exist_ok=True)
            except OSError as exc:
                raise Unavailable(
                    f"sqlite datastore {self.path}: cannot create directory {parent}: "
                    f"{exc.strerror or exc}"
                ) from None
        try:
            uri = "file:" + urllib.parse.quote(self.path) + ("?mode=ro" if self.read_only else "")
            conn = sqlite3.connect(
                uri,
                uri=True,
                timeout=self.busy_timeout,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,  # guarded by self._lock instead
            )
        except sqlite3.Error as exc:
            raise self._unavailable("open", exc) from None
        try:
            # Before anything is changed: switching to WAL is itself a write to the file.
            self._refuse_foreign(conn)
            if not self.read_only:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise Unavailable(
                        f"sqlite datastore {self.path}: cannot open: WAL mode unavailable "
                        f"(journal mode {mode})"
                    )
            # FULL: a committed write survives power loss, not only a process crash.
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            conn.close()
            raise self._unavailable("open", exc) from None
        except BaseException:
            conn.close()
            raise
        return conn

    def _refuse_foreign(self, conn: sqlite3.Connection) -> None:
        """Unavailable for a SQLite database of some other program: felis must not add its
        tables to it (a wrong --datastore path would silently extend someone's file)."""
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }
        if tables and not tables >= _FELIS_TABLES:
            shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
            raise Unavailable(
                f"sqlite datastore {self.path}: cannot open: not a felis datastore "
                f"(it holds other tables: {_one_line(shown)})"
            )

    def _init_schema(self) -> None:
        conn = self._conn
        try:
            version = self._schema_version(conn)
            if version is None:
                if self.read_only:
                    raise Unavailable(
                        f"sqlite datastore {self.path}: cannot open: not a felis datastore"
                    )
                conn.execute("BEGIN IMMEDIATE")
                try:
                    # Under the write lock (another process may have created the schema
                    # meanwhile): felis' tables without felis' schema row are someone else's.
                    empty = conn.execute("SELECT 1 FROM sqlite_master").fetchone() is None
                    if self._schema_version(conn) is None and not empty:
                        raise Unavailable(
                            f"sqlite datastore {self.path}: cannot open: not a felis datastore "
                            "(no felis schema version)"
                        )
                    for statement in _SCHEMA:
                        conn.execute(statement)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.rollback()
                    raise
                version = self._schema_version(conn)
        except sqlite3.Error as exc:
            raise self._unavailable("open", exc) from None
        if version != SCHEMA_VERSION:
            raise Unavailable(
                f"sqlite datastore {self.path}: cannot open: unsupported schema version {version} "
                f"(this felis understands {SCHEMA_VERSION})"
            )

    @staticmethod
    def _schema_version(conn: sqlite3.Connection) -> int | None:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if exists is None:
            return None
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        return None if row is None else int(row[0])

    def _live(self) -> sqlite3.Connection:
        if self._closed:
            raise Unavailable(f"sqlite datastore {self.path}: closed")
        if os.getpid() != self._pid:
            # Keep the parent's connection referenced (closing it here could disturb the
            # parent's locks) and open our own.
            self._inherited.append(self._conn)
            self._conn = self._connect()
            self._pid = os.getpid()
        return self._conn

    @contextmanager
    def _transaction(self, begin: str, action: str) -> Iterator[sqlite3.Connection]:
        """`begin` … COMMIT; rolled back entirely if anything inside raises, and a SQLite
        error becomes Unavailable saying it could not `action`."""
        with self._lock:
            conn = self._live()
            try:
                conn.execute(begin)
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.rollback()
                if isinstance(exc, sqlite3.Error):
                    raise self._unavailable(action, exc) from None
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot: every SELECT inside sees the same committed state."""
        with self._transaction("BEGIN", "read") as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Txn]:
        """One write transaction (BEGIN IMMEDIATE: the write lock up front)."""
        with self._transaction("BEGIN IMMEDIATE", "write") as conn:
            txn = Txn(conn, _meta(conn, "revision"))
            yield txn
            if txn.revision != txn.start_revision:
                conn.execute("UPDATE meta SET value = ? WHERE key = 'revision'", (txn.revision,))

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __enter__(self) -> SqliteDatastore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads ---------------------------------------------------------------------------

    def get(self, kind: str, name: str) -> JSONObject:
        check_key(kind, name)
        with self._read() as conn:
            row = conn.execute(
                "SELECT revision, value FROM resources WHERE kind = ? AND name = ?", (kind, name)
            ).fetchone()
        if row is None:
            raise NotFound(kind, name)
        return decode(row[1], int(row[0]))

    def list(self, kind: str | None = None) -> Listing:
        with self._read() as conn:
            if kind is None:
                rows = conn.execute(
                    "SELECT revision, value FROM resources ORDER BY kind, name"
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT revision, value FROM resources WHERE kind = ? ORDER BY name", (kind,)
                ).fetchall()
            revision = _meta(conn, "revision")
        return Listing(items=[decode(value, int(rev)) for rev, value in rows], revision=revision)

    def revision(self) -> int:
        with self._read() as conn:
            return _meta(conn, "revision")

    # -- writes --------------------------------------------------------------------------

    def create(self, obj: JSONObject) -> JSONObject:
        return self.create_all([obj])[0]

    def create_all(
        self, objs: Sequence[JSONObject], *, checks: WriteCheck | None = None
    ) -> builtins.list[JSONObject]:
        keyed = keyed_for_create(objs)
        with self._write() as txn:
            run_checks(checks, txn)
            created = []
            for (kind, name), obj in keyed:
                if txn.load(kind, name) is not None:
                    raise AlreadyExists(kind, name)
                created.append(txn.put("ADDED", kind, name, new_stored_form(obj)))
            return created

    def update(self, obj: JSONObject) -> JSONObject:
        kind, name = object_key(obj)
        given = given_resource_version(obj)
        with self._write() as txn:
            row = txn.load(kind, name)
            if row is None:
                raise NotFound(kind, name)
            revision, current = row
            if given != str(revision):
                raise Conflict(kind, name, given, str(revision))
            return txn.put("MODIFIED", kind, name, updated_stored_form(obj, current))

    def apply(
        self, objs: Sequence[JSONObject], *, checks: WriteCheck | None = None
    ) -> builtins.list[ApplyResult]:
        keyed = [(object_key(obj), obj) for obj in objs]
        with self._write() as txn:
            run_checks(checks, txn)
            return apply_in(txn, keyed)

    def delete(self, kind: str, name: str, resource_version: str | None = None) -> JSONObject:
        return self.delete_all([(kind, name, resource_version)])[0]

    def delete_all(
        self, keys: Sequence[DeleteKey], *, checks: WriteCheck | None = None
    ) -> builtins.list[JSONObject]:
        checked = [delete_target(key) for key in keys]
        with self._write() as txn:
            run_checks(checks, txn)
            return delete_in(txn, checked)

    def ensure_initialized(self) -> None:
        tiers = builtin_tier_objects()
        with self._read() as conn:
            present = {
                row[0] for row in conn.execute("SELECT name FROM resources WHERE kind = 'Tier'")
            }
        if all(tier["metadata"]["name"] in present for tier in tiers):
            return
        with self._write() as txn:
            for tier in tiers:
                name = tier["metadata"]["name"]
                # Re-check under the write lock: another process may have created it meanwhile.
                if txn.load("Tier", name) is None:
                    txn.put("ADDED", "Tier", name, new_stored_form(tier))

    # -- marks ---------------------------------------------------------------------------

    def read_mark(self, name: str) -> Mark:
        with self._read() as conn:
            if not _has_marks(conn):
                return Mark(None, 0, 0)
            row = conn.execute(
                "SELECT version, revision, value FROM marks WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            return Mark(None, 0, 0)
        value = None if row[2] is None else json.loads(row[2])
        return Mark(value, int(row[0]), int(row[1]) if value is not None else 0)

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
        keyed = [(object_key(obj), obj) for obj in apply]
        checked = [delete_target(key) for key in delete]
        with self._write() as txn:
            # Created on first use, so that files written before marks existed need no
            # migration; a removed mark keeps its row so that its version never repeats.
            txn.conn.execute(_MARKS_TABLE)
            row = txn.conn.execute("SELECT version FROM marks WHERE name = ?", (name,)).fetchone()
            version = 0 if row is None else int(row[0])
            if version != expect:
                raise MarkChanged(name, expect, version)
            run_checks(checks, txn)
            results = apply_in(txn, keyed)
            delete_in(txn, checked)
            txn.conn.execute(
                "INSERT INTO marks (name, version, revision, value) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET version = excluded.version,"
                " revision = excluded.revision, value = excluded.value",
                (name, version + 1, txn.revision, None if value is None else encode(value)),
            )
            return results

    # -- history -------------------------------------------------------------------------

    def compact(self, keep_revision: int) -> None:
        with self._write() as txn:
            if keep_revision > txn.revision + 1:
                raise compaction_beyond_latest(keep_revision, txn.revision)
            if keep_revision <= _meta(txn.conn, "compact_revision"):
                return
            txn.conn.execute("DELETE FROM events WHERE revision < ?", (keep_revision,))
            txn.conn.execute(
                "UPDATE meta SET value = ? WHERE key = 'compact_revision'", (keep_revision,)
            )

    def watch(
        self,
        since_revision: int,
        *,
        stop: threading.Event | None = None,
        poll_interval: float = 0.05,
    ) -> Iterator[WatchEvent]:
        since = max(0, int(since_revision))
        # Fail at the call, not only at the first next(), when the history is already gone.
        with self._read() as conn:
            _check_compaction(conn, since)
        return self._watch(since, stop, poll_interval)

    def _watch(
        self, cursor: int, stop: threading.Event | None, poll_interval: float
    ) -> Iterator[WatchEvent]:
        # Own connection: a watcher blocks for long stretches and must not hold self._lock.
        conn = self._connect()
        read_at: int | None = None
        try:
            while not self._closed:
                try:
                    # Another connection's commit changes data_version; this one never writes.
                    # An idle agent then costs one pragma per poll, not a read transaction.
                    version = int(conn.execute("PRAGMA data_version").fetchone()[0])
                except sqlite3.Error as exc:
                    raise self._unavailable("watch", exc) from None
                if version == read_at:
                    if stop is None:
                        time.sleep(poll_interval)
                    elif stop.is_set() or stop.wait(poll_interval):
                        return
                    continue
                try:
                    conn.execute("BEGIN")
                    _check_compaction(conn, cursor)
                    rows = conn.execute(
                        "SELECT revision, type, kind, name, value FROM events"
                        " WHERE revision > ? ORDER BY revision LIMIT ?",
                        (cursor, _WATCH_BATCH),
                    ).fetchall()
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    raise self._unavailable("watch", exc) from None
                finally:
                    if conn.in_transaction:
                        conn.rollback()
                for revision, event, kind, name, value in rows:
                    cursor = int(revision)
                    yield WatchEvent(event, kind, name, json.loads(value), cursor)
                if len(rows) == _WATCH_BATCH:
                    continue  # more already committed: fetch it before considering `stop`
                read_at = version
                if stop is None:
                    time.sleep(poll_interval)
                elif stop.is_set() or stop.wait(poll_interval):
                    return
        finally:
            conn.close()


def _has_marks(conn: sqlite3.Connection) -> bool:
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'marks'"
    ).fetchone()
    return found is not None


def _storage_cause(directory: str) -> str:
    """What is wrong with the file system holding the datastore, if anything is: the usual
    reasons a write fails that SQLite reports vaguely ("disk I/O error")."""
    try:
        stats = os.statvfs(directory)
    except OSError:
        return ""
    if stats.f_flag & os.ST_RDONLY:
        return "read-only file system"
    if stats.f_bavail == 0:
        return "no space left on device"
    return ""


def _meta(conn: sqlite3.Connection, key: str) -> int:
    row: Any = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return int(row[0])


def _check_compaction(conn: sqlite3.Connection, since: int) -> None:
    oldest_kept = _meta(conn, "compact_revision")
    if since + 1 < oldest_kept:
        raise Compacted(since, oldest_kept)
