"""The Datastore protocol on etcd v3, in Calico's own key layout (docs/datastore-etcd.md).

Keys, values and name rules are in felis.datastore.etcd_codec, the HTTP side (etcd3gw over the
JSON gateway, failover, errors) in felis.datastore.etcd_client, watching in
felis.datastore.etcd_watch, a write round's slots and view in felis.datastore.etcd_round. This
module holds the write logic.

Every write method works in rounds: run the caller's `checks` on a view that records what it
reads, read every key involved, decide in memory exactly as the SQLite backend does (same
errors, same "unchanged" rule, objects processed in order), then commit everything in ONE etcd
transaction whose compares pin every key read to the mod_revision it was read at (0 = absent),
and every kind the checks listed to "nothing modified since the listing". If another writer got
in between, the transaction fails as a whole, nothing is written, and the round starts again
from a fresh read, checks included; a real compare-and-swap conflict is found by the
evaluation and raised without writing.

Differences from the SQLite backend that callers can see:
* a multi-object write commits at ONE revision: all objects it wrote share that
  resourceVersion, and watchers get their events with that same revision;
* revisions are etcd's: an empty etcd is at revision 1, and writes by other clients under other
  prefixes also advance it;
* one transaction is limited by the server (`--max-txn-ops`, 128 by default, counting one
  compare per object and per legacy `default.<name>` key); larger batches fail with a one-line
  error and write nothing.
"""

from __future__ import annotations

import builtins
import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from felis.datastore.base import (
    ApplyResult,
    DeleteKey,
    EventType,
    Listing,
    Mark,
    ReadView,
    WatchEvent,
    WriteCheck,
)
from felis.datastore.errors import (
    AlreadyExists,
    Conflict,
    DatastoreError,
    MarkChanged,
    NotFound,
    Unavailable,
    compaction_beyond_latest,
)
from felis.datastore.etcd_client import (
    GRPC_INVALID_ARGUMENT,
    GRPC_OUT_OF_RANGE,
    PAGE_KEYS,
    EtcdClient,
    ServerError,
    b64,
    unb64,
)
from felis.datastore.etcd_codec import (
    PREFIX,
    decode_value,
    encode_value,
    key_of,
    kind_prefix,
    legacy_key_of,
    split_key,
    stub,
)
from felis.datastore.etcd_plans import finish_round, plan_apply, plan_delete, plan_put
from felis.datastore.etcd_round import (
    MARK_PREFIX,
    MarkWrite,
    RoundView,
    Slot,
    listing_compares,
    without_rv,
)
from felis.datastore.etcd_watch import EtcdWatch
from felis.datastore.objects import (
    JSONObject,
    builtin_tier_objects,
    check_key,
    delete_target,
    given_resource_version,
    keyed_for_create,
    new_stored_form,
    object_key,
    updated_stored_form,
)
from felis.datastore.url import EtcdConfig

log = logging.getLogger("felis.datastore.etcd")

_T = TypeVar("_T")

# A transaction that lost against a concurrent writer is re-evaluated this many times before
# giving up (each loss means someone else made progress, so this only bounds pathological
# contention).
MAX_ROUNDS = 50
# Up to this many keys are read with one multi-range transaction; more are read as prefix
# ranges pinned at one revision (the server limits operations per transaction).
_MAX_POINT_READS = 100


def open_etcd(config: EtcdConfig) -> EtcdDatastore:
    return EtcdDatastore(config)


class EtcdDatastore:
    """The `Datastore` protocol on an etcd v3 cluster (see the module docstring)."""

    def __init__(
        self,
        config: EtcdConfig,
        *,
        timeout: float = 5.0,
        retry_for: float = 10.0,
    ) -> None:
        self.config = config
        self.client = EtcdClient(
            config.endpoints,
            ca_cert_file=config.ca_cert_file,
            cert_file=config.cert_file,
            key_file=config.key_file,
            username=config.username,
            password=config.password,
            timeout=timeout,
            retry_for=retry_for,
        )
        self.page_keys = PAGE_KEYS
        """Keys per request when listing (tests make it small)."""
        self._closed = False
        self._watches: builtins.list[EtcdWatch] = []
        self._lock = threading.Lock()

    @property
    def endpoints(self) -> str:
        return self.client.names

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            watches, self._watches = self._watches, []
        for watch in watches:
            watch.close()
        self.client.close()

    def __enter__(self) -> EtcdDatastore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _live(self) -> EtcdClient:
        if self._closed:
            raise Unavailable(f"etcd datastore {self.endpoints}: closed")
        return self.client

    def _server_error(self, err: ServerError) -> DatastoreError:
        if "too many operations" in err.message:
            return DatastoreError(
                f"etcd datastore {self.endpoints}: too many objects for one transaction "
                f"({err.message}; raise etcd's --max-txn-ops or write fewer objects at once)"
            )
        return DatastoreError(f"etcd datastore {self.endpoints}: {err.message}")

    # -- reading -------------------------------------------------------------------------

    def _decode(self, kind: str, key_name: str, kv: dict[str, Any]) -> JSONObject:
        try:
            return decode_value(kind, key_name, unb64(kv.get("value", "")), int(kv["mod_revision"]))
        except (ValueError, UnicodeDecodeError):
            key = unb64(kv["key"]).decode("utf-8", "replace")
            raise DatastoreError(
                f"etcd datastore {self.endpoints}: key {key!r} does not hold a Calico object"
            ) from None

    def _read_keys(self, keys: builtins.list[str]) -> dict[str, dict[str, Any]]:
        """Every key's kv (absent keys missing), all from one snapshot."""
        client = self._live()
        found: dict[str, dict[str, Any]] = {}
        try:
            if len(keys) <= _MAX_POINT_READS:
                result, _ = client.txn(
                    {"success": [{"request_range": {"key": b64(k)}} for k in keys]}
                )
                for response in result.get("responses", []):
                    for kv in response.get("response_range", {}).get("kvs", []):
                        found[unb64(kv["key"]).decode("utf-8")] = kv
                return found
            wanted = set(keys)
            prefixes = sorted({k.rsplit("/", 1)[0] + "/" for k in keys})
            revision: int | None = None
            for prefix in prefixes:
                kvs, header = client.range(prefix, prefix=True, revision=revision)
                revision = revision or header
                for kv in kvs:
                    key = unb64(kv["key"]).decode("utf-8")
                    if key in wanted:
                        found[key] = kv
            return found
        except ServerError as err:
            raise self._server_error(err) from None

    def _slots(self, wanted: builtins.list[tuple[str, str]]) -> dict[tuple[str, str], Slot]:
        keys: builtins.list[str] = []
        for kind, name in wanted:
            keys.append(key_of(kind, name))
            legacy = legacy_key_of(kind, name)
            if legacy is not None:
                keys.append(legacy)
        found = self._read_keys(list(dict.fromkeys(keys)))
        slots: dict[tuple[str, str], Slot] = {}
        for kind, name in wanted:
            if (kind, name) in slots:
                continue
            primary = key_of(kind, name)
            legacy = legacy_key_of(kind, name)
            looked = [primary] if legacy is None else [primary, legacy]
            reads = {k: int(found[k]["mod_revision"]) if k in found else 0 for k in looked}
            key, stored = primary, None
            for candidate in looked:
                if candidate in found:
                    obj = self._decode(kind, candidate[len(kind_prefix(kind)) :], found[candidate])
                    if object_key(obj)[1] == name:
                        key, stored = candidate, obj
                        break
            slots[(kind, name)] = Slot(kind, name, key, reads, stored)
        return slots

    def get(self, kind: str, name: str) -> JSONObject:
        check_key(kind, name)
        slot = self._slots([(kind, name)])[(kind, name)]
        if slot.stored is None:
            raise NotFound(kind, name)
        return slot.stored

    def list(self, kind: str | None = None) -> Listing:
        return self._list(PREFIX if kind is None else kind_prefix(kind))

    def _list(self, prefix: str) -> Listing:
        client = self._live()
        try:
            # In pages: a whole fleet's datastore in one answer can outlast the request
            # timeout on a busy member, and each retry would start it over from scratch.
            kvs, revision = client.range_paged(prefix, page=self.page_keys)
        except ServerError as err:
            raise self._server_error(err) from None
        items: dict[tuple[str, str], tuple[bool, JSONObject]] = {}
        for kv in kvs:
            key = unb64(kv["key"]).decode("utf-8", "replace")
            parsed = split_key(key)
            if parsed is None:
                continue
            try:
                obj = self._decode(parsed[0], parsed[1], kv)
            except DatastoreError as err:
                log.warning("%s (skipped)", err)
                continue
            name = object_key(obj)[1]
            exact = parsed[1] == name
            # A policy present under both `<name>` and a legacy `default.<name>` key: the key
            # named exactly wins, as get() does.
            previous = items.get((parsed[0], name))
            if previous is None or (exact and not previous[0]):
                items[(parsed[0], name)] = (exact, obj)
        ordered = [items[k][1] for k in sorted(items)]
        return Listing(items=ordered, revision=revision)

    def revision(self) -> int:
        try:
            return self._live().revision()
        except ServerError as err:
            raise self._server_error(err) from None

    # -- the write engine ----------------------------------------------------------------

    def _commit(
        self,
        slots: dict[tuple[str, str], Slot],
        listed: dict[str, int] | None = None,
        mark: MarkWrite | None = None,
    ) -> int | None:
        """One transaction for every planned change; its revision, None if it lost a race."""
        compares = listing_compares(listed or {})
        ops: builtins.list[dict[str, Any]] = []
        if mark is not None:
            compares += mark.compares()
            ops += mark.ops()
        for slot in slots.values():
            for key, mod in slot.reads.items():
                if key != slot.key and mod == 0:
                    continue  # an absent legacy key: only old Calico writes those
                compares.append(
                    {"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": mod}
                )
            if not slot.dirty:
                continue
            if slot.state is None:
                if slot.stored is not None:
                    ops.append({"request_delete_range": {"key": b64(slot.key)}})
            else:
                ops.append(
                    {
                        "request_put": {
                            "key": b64(slot.key),
                            "value": b64(encode_value(without_rv(slot.state))),
                        }
                    }
                )
        if not ops:
            return 0
        try:
            result, maybe_sent = self._live().txn({"compare": compares, "success": ops})
        except ServerError as err:
            raise self._server_error(err) from None
        if result.get("succeeded"):
            return int(result["header"]["revision"])
        if maybe_sent:
            return self._own_write(slots, mark)
        return None

    def _own_write(
        self, slots: dict[tuple[str, str], Slot], mark: MarkWrite | None = None
    ) -> int | None:
        """After a lost connection: did our retried transaction's first copy commit?

        It did exactly when every key now holds the bytes we wrote (a fresh uid makes a
        create's bytes unique; an update keeps the uid but was pinned to the old revision)
        and every key we deleted is gone.
        """
        dirty = [s for s in slots.values() if s.dirty]
        found = self._read_keys([s.key for s in dirty] + ([mark.key] if mark else []))
        revisions = set()
        if mark is not None:
            # A mark's body is unique to its write (felis puts an id and a time in it).
            kv = found.get(mark.key)
            if mark.body is None:
                if kv is not None:
                    return None
            elif kv is None or unb64(kv.get("value", "")) != mark.body.encode("utf-8"):
                return None
            else:
                revisions.add(int(kv["mod_revision"]))
        for slot in dirty:
            kv = found.get(slot.key)
            if slot.state is None:
                if kv is not None:
                    return None
                continue
            if kv is None or unb64(kv.get("value", "")) != encode_value(
                without_rv(slot.state)
            ).encode("utf-8"):
                return None
            revisions.add(int(kv["mod_revision"]))
        if len(revisions) > 1:
            return None
        return revisions.pop() if revisions else self.revision()

    def _transact(
        self,
        wanted: builtins.list[tuple[str, str]],
        plan: Callable[[dict[tuple[str, str], Slot]], _T],
        checks: WriteCheck | None = None,
        mark: MarkWrite | None = None,
    ) -> _T:
        """The write rounds of the module docstring: run `checks` on a fresh view, read every
        `wanted` key, let `plan` decide on the slots (either raises to refuse, writing nothing),
        commit; again from a fresh read while a concurrent writer keeps winning. Returns what
        `plan` returned, with the commit's resourceVersion filled in."""
        self._live()
        for _ in range(MAX_ROUNDS):
            view = RoundView(self._slots, self._list)
            if checks is not None:
                checks(view)
            # The slots the checks read are the ones written: one read, one pin, per key.
            slots = view.read(wanted)
            outcome = plan(slots)
            revision = self._commit(slots, view.listed, mark)
            if revision is not None:
                finish_round(slots, revision)
                return outcome
        raise DatastoreError(
            f"etcd datastore {self.endpoints}: gave up after {MAX_ROUNDS} attempts: the "
            "objects kept changing under concurrent writers"
        )

    # -- writes --------------------------------------------------------------------------

    def create(self, obj: JSONObject) -> JSONObject:
        return self.create_all([obj])[0]

    def create_all(
        self, objs: Sequence[JSONObject], *, checks: WriteCheck | None = None
    ) -> builtins.list[JSONObject]:
        keyed = keyed_for_create(objs)
        for (kind, name), _ in keyed:
            key_of(kind, name)
        forms = [new_stored_form(obj) for _, obj in keyed]

        def plan(slots: dict[tuple[str, str], Slot]) -> builtins.list[JSONObject]:
            created = []
            for ((kind, name), _), form in zip(keyed, forms, strict=True):
                slot = slots[(kind, name)]
                if slot.state is not None:
                    raise AlreadyExists(kind, name)
                created.append(plan_put(slot, form))
            return created

        return self._transact([key for key, _ in keyed], plan, checks)

    def update(self, obj: JSONObject) -> JSONObject:
        kind, name = object_key(obj)
        key_of(kind, name)
        given = given_resource_version(obj)

        def plan(slots: dict[tuple[str, str], Slot]) -> JSONObject:
            slot = slots[(kind, name)]
            if slot.state is None:
                raise NotFound(kind, name)
            latest = str(slot.version)
            if given != latest:
                raise Conflict(kind, name, given, latest)
            return plan_put(slot, updated_stored_form(obj, slot.state))

        return self._transact([(kind, name)], plan)

    def apply(
        self, objs: Sequence[JSONObject], *, checks: WriteCheck | None = None
    ) -> builtins.list[ApplyResult]:
        keyed = [(object_key(obj), obj) for obj in objs]
        for (kind, name), _ in keyed:
            key_of(kind, name)

        def plan(slots: dict[tuple[str, str], Slot]) -> builtins.list[ApplyResult]:
            return plan_apply(keyed, slots)

        return self._transact([key for key, _ in keyed], plan, checks)

    def delete(self, kind: str, name: str, resource_version: str | None = None) -> JSONObject:
        return self.delete_all([(kind, name, resource_version)])[0]

    def delete_all(
        self, keys: Sequence[DeleteKey], *, checks: WriteCheck | None = None
    ) -> builtins.list[JSONObject]:
        checked = []
        for item in keys:
            target = delete_target(item)
            key_of(target[0], target[1])
            checked.append(target)

        def plan(slots: dict[tuple[str, str], Slot]) -> builtins.list[JSONObject]:
            return plan_delete(checked, slots)

        return self._transact([(kind, name) for kind, name, _ in checked], plan, checks)

    def ensure_initialized(self) -> None:
        tiers = builtin_tier_objects()

        def plan(slots: dict[tuple[str, str], Slot]) -> None:
            # Nothing missing: nothing to write, and _commit sends nothing.
            for tier in tiers:
                slot = slots[("Tier", tier["metadata"]["name"])]
                if slot.state is None:
                    plan_put(slot, new_stored_form(tier))

        self._transact([("Tier", t["metadata"]["name"]) for t in tiers], plan)

    # -- marks ---------------------------------------------------------------------------

    def read_mark(self, name: str) -> Mark:
        try:
            kvs, _ = self._live().range(MARK_PREFIX + name)
        except ServerError as err:
            raise self._server_error(err) from None
        if not kvs:
            return Mark(None, 0, 0)
        mod = int(kvs[0]["mod_revision"])
        try:
            value = json.loads(unb64(kvs[0].get("value", "")))
        except ValueError:
            raise DatastoreError(
                f"etcd datastore {self.endpoints}: key {MARK_PREFIX + name!r} does not hold "
                "a felis mark"
            ) from None
        return Mark(value, mod, mod)

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
        checked = [delete_target(item) for item in delete]
        for kind, key_name in [key for key, _ in keyed] + [t[:2] for t in checked]:
            key_of(kind, key_name)
        body = None if value is None else json.dumps(value, sort_keys=True)
        mark = MarkWrite(MARK_PREFIX + name, expect, body)

        def guarded(view: ReadView) -> None:
            # Read again every round: a commit that lost only because the mark moved would
            # otherwise be retried against a version that can never come back.
            latest = self.read_mark(name).version
            if latest != expect:
                raise MarkChanged(name, expect, latest)
            if checks is not None:
                checks(view)

        def plan(slots: dict[tuple[str, str], Slot]) -> builtins.list[ApplyResult]:
            results = plan_apply(keyed, slots)
            plan_delete(checked, slots)
            return results

        wanted = [key for key, _ in keyed] + [(kind, key_name) for kind, key_name, _ in checked]
        return self._transact(wanted, plan, guarded, mark)

    # -- history -------------------------------------------------------------------------

    def compact(self, keep_revision: int) -> None:
        client = self._live()
        latest = self.revision()
        if keep_revision > latest + 1:
            raise compaction_beyond_latest(keep_revision, latest)
        try:
            # etcd cannot compact past its current revision; compacting to it already keeps
            # every event a watch from `keep_revision - 1` needs.
            client.compact(min(keep_revision, latest))
        except ServerError as err:
            if err.code == GRPC_OUT_OF_RANGE and "compacted" in err.message:
                return  # already compacted further: compaction never goes backwards
            raise self._server_error(err) from None

    def watch(
        self,
        since_revision: int,
        *,
        stop: threading.Event | None = None,
        poll_interval: float = 0.05,
    ) -> Iterator[WatchEvent]:
        since = max(0, int(since_revision))
        client = self._live()
        try:
            watch = EtcdWatch(client, PREFIX, since, self._event, stop, poll_interval)
        except ServerError as err:
            raise self._server_error(err) from None
        with self._lock:
            self._watches.append(watch)
        return self._iterate(watch)

    def _iterate(self, watch: EtcdWatch) -> Iterator[WatchEvent]:
        try:
            yield from watch
        except ServerError as err:
            raise self._server_error(err) from None
        finally:
            with self._lock:
                if watch in self._watches:
                    self._watches.remove(watch)

    def _event(self, raw: dict[str, Any]) -> WatchEvent | None:
        kv = raw["kv"]
        key = unb64(kv["key"]).decode("utf-8", "replace")
        parsed = split_key(key)
        if parsed is None:
            return None
        kind, key_name = parsed
        revision = int(kv["mod_revision"])
        try:
            if raw.get("type") == "DELETE":
                prev = raw.get("prev_kv")
                if prev is not None:
                    obj = self._decode(kind, key_name, prev)
                else:  # the previous value is already compacted away
                    obj = stub(kind, key_name)
                return WatchEvent("DELETED", kind, object_key(obj)[1], obj, revision)
            obj = self._decode(kind, key_name, kv)
        except DatastoreError as err:
            log.warning("%s (event skipped)", err)
            return None
        event_type: EventType = "ADDED" if kv.get("version") == "1" else "MODIFIED"
        return WatchEvent(event_type, kind, object_key(obj)[1], obj, revision)


__all__ = ["GRPC_INVALID_ARGUMENT", "EtcdDatastore", "open_etcd"]
