"""The inside of one SQLite write transaction (felis.datastore.sqlite): loads that see the
transaction's own writes, puts and removes that append to the event log, the read view a
write's `checks` get, and apply and delete with Calico's resourceVersion checks."""

from __future__ import annotations

import builtins
import json
import sqlite3
from collections.abc import Sequence

from felis.datastore.base import ApplyResult, EventType, Key, WriteCheck
from felis.datastore.errors import Conflict, NotFound
from felis.datastore.objects import (
    JSONObject,
    decode,
    encode,
    given_resource_version,
    new_stored_form,
    updated_stored_form,
)


class Txn:
    """The inside of one write transaction: reads see this transaction's own writes."""

    def __init__(self, conn: sqlite3.Connection, revision: int) -> None:
        self.conn = conn
        self.start_revision = revision
        self.revision = revision

    def load(self, kind: str, name: str) -> tuple[int, JSONObject] | None:
        row = self.conn.execute(
            "SELECT revision, value FROM resources WHERE kind = ? AND name = ?", (kind, name)
        ).fetchone()
        if row is None:
            return None
        return int(row[0]), json.loads(row[1])

    def put(self, event: EventType, kind: str, name: str, stored: JSONObject) -> JSONObject:
        self.revision += 1
        value = encode(stored)
        self.conn.execute(
            "INSERT INTO resources (kind, name, revision, value) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (kind, name) DO UPDATE SET revision = excluded.revision,"
            " value = excluded.value",
            (kind, name, self.revision, value),
        )
        visible = decode(value, self.revision)
        self._event(event, kind, name, visible)
        return visible

    def remove(self, kind: str, name: str, last: JSONObject) -> None:
        self.revision += 1
        self.conn.execute("DELETE FROM resources WHERE kind = ? AND name = ?", (kind, name))
        self._event("DELETED", kind, name, last)

    def _event(self, event: EventType, kind: str, name: str, obj: JSONObject) -> None:
        self.conn.execute(
            "INSERT INTO events (revision, type, kind, name, value) VALUES (?, ?, ?, ?, ?)",
            (self.revision, event, kind, name, encode(obj)),
        )


class TxnView:
    """The `ReadView` of a write transaction: it holds the write lock, so nothing read here can
    change before the write commits."""

    def __init__(self, txn: Txn) -> None:
        self._txn = txn

    def get_all(self, keys: Sequence[Key]) -> dict[Key, JSONObject | None]:
        found: dict[Key, JSONObject | None] = {}
        for kind, name in keys:
            row = self._txn.load(kind, name)
            if row is None:
                found[(kind, name)] = None
            else:
                row[1]["metadata"]["resourceVersion"] = str(row[0])
                found[(kind, name)] = row[1]
        return found

    def list(self, kind: str) -> builtins.list[JSONObject]:
        rows = self._txn.conn.execute(
            "SELECT revision, value FROM resources WHERE kind = ? ORDER BY name", (kind,)
        ).fetchall()
        return [decode(value, int(revision)) for revision, value in rows]


def run_checks(checks: WriteCheck | None, txn: Txn) -> None:
    if checks is not None:
        checks(TxnView(txn))


def apply_in(txn: Txn, keyed: Sequence[tuple[Key, JSONObject]]) -> builtins.list[ApplyResult]:
    results = []
    for (kind, name), obj in keyed:
        row = txn.load(kind, name)
        if row is None:
            stored = txn.put("ADDED", kind, name, new_stored_form(obj))
            results.append(ApplyResult("created", stored))
            continue
        revision, current = row
        given = given_resource_version(obj)
        if given is not None and given != str(revision):
            raise Conflict(kind, name, given, str(revision))
        wanted = updated_stored_form(obj, current)
        if wanted == current:
            current["metadata"]["resourceVersion"] = str(revision)
            results.append(ApplyResult("unchanged", current))
        else:
            results.append(ApplyResult("updated", txn.put("MODIFIED", kind, name, wanted)))
    return results


def delete_in(
    txn: Txn, checked: Sequence[tuple[str, str, str | None]]
) -> builtins.list[JSONObject]:
    deleted = []
    for kind, name, guard in checked:
        row = txn.load(kind, name)
        if row is None:
            raise NotFound(kind, name)
        revision, last = row
        if guard is not None and guard != str(revision):
            raise Conflict(kind, name, guard, str(revision))
        last["metadata"]["resourceVersion"] = str(revision)
        txn.remove(kind, name, last)
        deleted.append(last)
    return deleted
