"""`felis apply --confirm WINDOW`: a change that undoes itself unless it is confirmed in time,
as Junos' `commit confirmed` does (docs/operations.md#changing-rules-on-a-busy-host).

The apply writes its objects and, in the same datastore transaction, a record (a datastore
`Mark`, never a Calico object) of how every object it changed was before, "did not exist"
included, and of the deadline. Until the deadline `felis confirm` marks the record confirmed and
the change stays. After it, the first actor to look restores every object in one transaction that
also settles the record, so exactly one actor rolls back and nothing is half restored. The
actors are: the watchdog the apply leaves behind (its own session, no terminal: a lost SSH
connection does not end it), any running agent (at each interface check, every 5 s by
default), and any later write, `felis confirm` or `felis confirm --status`. None of them needs
the applying process, which may be gone.

An object changed by someone else after the apply is never overwritten: the rollback is then
refused as a whole, written nothing, and the record says which objects and why. Restoring
anyway could silently undo a colleague's later fix, and a partial rollback could leave a
combination that nobody ever applied; whoever changed the object since evidently still has
access, and `felis confirm --status` tells them what to repair.

Times are wall-clock seconds since the epoch, as several hosts may act on one etcd.
"""

from __future__ import annotations

import getpass
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from felis.datastore import ApplyResult, Datastore, Mark, MarkChanged, Missing, ReadView
from felis.datastore.errors import DatastoreError, resource_ref
from felis.datastore.objects import JSONObject, apply_action
from felis.errors import FelisError
from felis.model import Located
from felis.model.constants import BUILTIN_TIER_NAMES, DEFAULT_TIER, TIERED_KINDS
from felis.resources.checks import (
    DeleteTarget,
    Key,
    StoreReader,
    delete_problems,
    item_key,
    refuse,
    write_problems_against,
)
from felis.resources.service import objects_of

log = logging.getLogger("felis.confirm")

MARK = "apply-confirm"
"""The datastore mark that holds the record: one per datastore, so at most one change waits
for its confirmation at a time."""

MIN_WINDOW = 1.0
MAX_WINDOW = 24 * 3600.0

State = Literal["pending", "confirmed", "rolled-back", "refused"]

clock: Callable[[], float] = time.time
"""Wall-clock time; tests replace it."""

_ATTEMPTS = 5
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


class ConfirmError(FelisError):
    """A confirmation that cannot be made: nothing pending, or too late (one line)."""


class UnreadableRecord(DatastoreError):
    """The mark holds something this felis cannot read (another version wrote it)."""


def parse_window(text: str) -> float:
    """`60s`, `5m`, `1h`, `90` (seconds) → seconds; ValueError naming the problem."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if match is None:
        raise ValueError(
            f"invalid --confirm window {text!r}: give a duration such as 60s, 5m or 1h"
        )
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not MIN_WINDOW <= seconds <= MAX_WINDOW:
        raise ValueError(
            f"invalid --confirm window {text!r}: must be between {MIN_WINDOW:g}s and 24h"
        )
    return seconds


def timestamp(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def whoami() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


# -- the record ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Touched:
    """One object the apply changed, as it was before (None: it did not exist)."""

    kind: str
    name: str
    before: JSONObject | None

    @property
    def key(self) -> Key:
        return (self.kind, self.name)

    @property
    def ref(self) -> str:
        return resource_ref(self.kind, self.name)


@dataclass(frozen=True)
class Record:
    """What the mark holds: the change, its deadline, and how it ended when it did."""

    id: str
    state: State
    applied_at: float
    deadline: float
    by: str
    source: str
    touched: tuple[Touched, ...]
    watchdog: str = ""
    settled_at: float | None = None
    settled_by: str = ""
    reasons: tuple[str, ...] = ()

    def to_json(self) -> JSONObject:
        return {
            "id": self.id,
            "state": self.state,
            "appliedAt": self.applied_at,
            "deadline": self.deadline,
            "by": self.by,
            "source": self.source,
            "watchdog": self.watchdog,
            "touched": [{"kind": t.kind, "name": t.name, "before": t.before} for t in self.touched],
            "settledAt": self.settled_at,
            "settledBy": self.settled_by,
            "reasons": list(self.reasons),
        }

    @classmethod
    def from_json(cls, value: JSONObject) -> Record:
        try:
            state = value["state"]
            if state not in ("pending", "confirmed", "rolled-back", "refused"):
                raise ValueError(f"unknown state {state!r}")
            return cls(
                id=str(value["id"]),
                state=state,
                applied_at=float(value["appliedAt"]),
                deadline=float(value["deadline"]),
                by=str(value.get("by", "")),
                source=str(value.get("source", "")),
                watchdog=str(value.get("watchdog", "")),
                touched=tuple(
                    Touched(str(t["kind"]), str(t["name"]), t["before"]) for t in value["touched"]
                ),
                settled_at=None if value.get("settledAt") is None else float(value["settledAt"]),
                settled_by=str(value.get("settledBy", "")),
                reasons=tuple(str(r) for r in value.get("reasons", [])),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise UnreadableRecord(
                f"the datastore's pending-confirmation record is unreadable ({err}); "
                "`felis confirm` removes it"
            ) from None

    def settled(self, state: State, by: str, reasons: Sequence[str] = ()) -> Record:
        return replace(self, state=state, settled_at=clock(), settled_by=by, reasons=tuple(reasons))


@dataclass(frozen=True)
class Current:
    """The record as read, with the mark's version and revision (see `Mark`)."""

    record: Record
    version: int
    revision: int

    @property
    def expired(self) -> bool:
        return self.record.state == "pending" and clock() >= self.record.deadline


def read(store: Datastore) -> Current | None:
    return _current(store.read_mark(MARK))


def _current(mark: Mark) -> Current | None:
    if mark.value is None:
        return None
    return Current(Record.from_json(mark.value), mark.version, mark.revision)


class Watchdog(Protocol):
    """The process that rolls back at the deadline (`apply_confirmed`'s `start_watchdog`)."""

    @property
    def description(self) -> str: ...

    def stop(self) -> None:
        """End it: no record was written for it to watch."""
        ...


# -- apply ---------------------------------------------------------------------------------


class _Moved(Exception):
    """An object changed between the read that made the record and the write."""


@dataclass(frozen=True)
class Applied:
    results: list[ApplyResult]
    record: Record | None
    """None when nothing changed: there is nothing to confirm or roll back."""
    settled: Record | None = None
    """An earlier, expired confirmation this command rolled back (or refused to) first."""


def apply_confirmed(
    store: Datastore,
    items: Sequence[Located],
    window: float,
    *,
    source: str,
    start_watchdog: Callable[[str, float], Watchdog],
) -> Applied:
    """Apply `items` (all-or-nothing, every check `apply` makes) and record how each object it
    changes was before, to be restored unless confirmed within `window` seconds.

    `start_watchdog(id, deadline)` starts the process that rolls back at the deadline. It
    starts before the write, so that the record never exists without one (the applying
    process may be killed right after its write), and is stopped when nothing was recorded.
    """
    actor = f"felis apply on {socket.gethostname()}"
    store.ensure_initialized()
    settled = settle(store, actor=actor)
    record_id = str(uuid.uuid4())
    deadline = clock() + window
    watchdog = start_watchdog(record_id, deadline)
    written = False
    try:
        applied = _apply_recorded(store, items, deadline, record_id, source, watchdog.description)
        written = applied.record is not None
        return replace(applied, settled=applied.settled or settled)
    finally:
        if not written:
            watchdog.stop()


def _apply_recorded(
    store: Datastore,
    items: Sequence[Located],
    deadline: float,
    record_id: str,
    source: str,
    watchdog: str,
) -> Applied:
    objs = objects_of(items)
    keys = [item_key(item) for item in items]
    settled = None
    for _ in range(_ATTEMPTS):
        mark = store.read_mark(MARK)
        current = _current(mark)
        if current is not None and current.record.state == "pending":
            if current.expired:
                settled = settle(store, actor=f"felis apply on {socket.gethostname()}")
                continue
            raise ConfirmError(
                "another change applied with --confirm is pending until "
                f"{timestamp(current.record.deadline)} ({current.record.by}, "
                f"{current.record.source}): `felis confirm` it or let it roll back first"
            )
        before = StoreReader(store).get_all(keys)
        touched = tuple(
            Touched(kind, name, before[(kind, name)])
            for (kind, name), obj in zip(keys, objs, strict=True)
            if apply_action(obj, before[(kind, name)]) != "unchanged"
        )

        def checks(view: ReadView, before: dict[Key, JSONObject | None] = before) -> None:
            refuse(write_problems_against(items, view, "apply"))
            # The record says how the objects were when read above: the write must replace
            # exactly those versions.
            if _versions(view.get_all(keys)) != _versions(before):
                raise _Moved

        record = Record(
            id=record_id,
            state="pending",
            applied_at=clock(),
            deadline=deadline,
            by=whoami(),
            source=source,
            touched=touched,
            watchdog=watchdog,
        )
        try:
            if not touched:
                return Applied(store.apply(objs, checks=checks), None, settled)
            results = store.write_marked(
                MARK, mark.version, record.to_json(), apply=objs, checks=checks
            )
        except (_Moved, MarkChanged):
            continue
        return Applied(results, record, settled)
    raise DatastoreError(
        f"gave up after {_ATTEMPTS} attempts: the objects kept changing under other writers"
    )


def _versions(objects: dict[Key, JSONObject | None]) -> dict[Key, str | None]:
    return {
        key: None if obj is None else str(obj["metadata"].get("resourceVersion"))
        for key, obj in objects.items()
    }


# -- confirm, roll back --------------------------------------------------------------------


def confirm(store: Datastore, *, actor: str) -> Record:
    """Keep the pending change: its record stays, marked confirmed (so that its watchdog, and
    whoever asks, can tell). ConfirmError when nothing is pending, or when the window has
    ended (the change is then rolled back, if nobody did yet)."""
    for _ in range(_ATTEMPTS):
        mark = store.read_mark(MARK)
        try:
            current = _current(mark)
        except UnreadableRecord as err:
            store.write_marked(MARK, mark.version, None)
            raise ConfirmError(f"{err}: removed it; nothing was rolled back") from None
        if current is None:
            raise ConfirmError("nothing to confirm: no change applied with --confirm is pending")
        record = current.record
        if current.expired:
            settle(store, actor=actor)
            continue
        if record.state == "confirmed":
            raise ConfirmError(
                f"nothing to confirm: the change applied at {timestamp(record.applied_at)} "
                f"was {outcome(record)}"
            )
        if record.state != "pending":
            raise ConfirmError(too_late(record))
        done = record.settled("confirmed", actor)
        try:
            store.write_marked(MARK, current.version, done.to_json())
        except MarkChanged:
            continue
        return done
    raise DatastoreError(f"gave up after {_ATTEMPTS} attempts: the confirmation kept changing")


def too_late(record: Record) -> str:
    return f"too late: the change applied at {timestamp(record.applied_at)} was {outcome(record)}"


def settle(store: Datastore, *, actor: str) -> Record | None:
    """Roll back the pending change if its window has ended; the record as this call settled
    it (None when there was nothing to do, or another actor did it first)."""
    current = read(store)
    if current is None or not current.expired:
        return None
    return rollback(store, current, actor=actor)


def rollback(store: Datastore, current: Current, *, actor: str) -> Record | None:
    """Restore every touched object in one transaction that also settles the record; or,
    when any of them changed since the apply, write nothing but the refusal. None when another
    actor settled (or confirmed) the record first."""
    record = current.record

    def checks(view: ReadView) -> None:
        reasons = clobbered(record, current.revision, view)
        if reasons:
            raise _Refused(reasons)

    restore = [_without_version(t.before) for t in record.touched if t.before is not None]
    remove = [t.key for t in record.touched if t.before is None]
    done = record.settled("rolled-back", actor)
    try:
        store.write_marked(
            MARK, current.version, done.to_json(), apply=restore, delete=remove, checks=checks
        )
    except MarkChanged:
        return None
    except _Refused as refused:
        done = record.settled("refused", actor, refused.reasons)
        try:
            store.write_marked(MARK, current.version, done.to_json())
        except MarkChanged:
            return None
        log.warning(
            "rollback of the change applied at %s refused: %s",
            timestamp(record.applied_at),
            "; ".join(refused.reasons),
        )
        return done
    log.warning(
        "the change applied at %s was not confirmed by %s: rolled back (%d object(s))",
        timestamp(record.applied_at),
        timestamp(record.deadline),
        len(record.touched),
    )
    return done


class _Refused(Exception):
    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


def _without_version(obj: JSONObject) -> JSONObject:
    return {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}}


def _version(obj: JSONObject) -> int:
    return int(obj["metadata"].get("resourceVersion") or 0)


def clobbered(record: Record, revision: int, view: ReadView) -> list[str]:
    """Every reason restoring `record` would overwrite or break what others wrote after the
    apply, whose write was at `revision` (see `Mark.revision`)."""
    now = view.get_all([t.key for t in record.touched])
    reasons = []
    for touched in record.touched:
        obj = now[touched.key]
        if obj is None:
            reasons.append(f"{touched.ref} was deleted after the apply")
        elif _version(obj) > revision:
            reasons.append(
                f"{touched.ref} was changed after the apply (resourceVersion {_version(obj)})"
            )
    removed = {t.key for t in record.touched if t.before is None}
    # A tier the apply created may since hold someone else's policy.
    if not reasons and any(kind == "Tier" for kind, _ in removed):
        # Every removal goes in, so that a policy the rollback removes too does not count.
        targets = [DeleteTarget(kind, name) for kind, name in sorted(removed)]
        reasons += [p for p in delete_problems(targets, view) if "non-empty tier" in p]
    # A policy goes back to a tier that someone may have deleted since.
    restored_tiers = {t.name for t in record.touched if t.kind == "Tier" and t.before is not None}
    needed = {
        str((t.before.get("spec") or {}).get("tier") or DEFAULT_TIER): t.ref
        for t in record.touched
        if t.before is not None and t.kind in TIERED_KINDS
    }
    wanted = sorted(set(needed) - BUILTIN_TIER_NAMES - restored_tiers)
    present = view.get_all([("Tier", tier) for tier in wanted])
    for tier in wanted:
        if present[("Tier", tier)] is None:
            reasons.append(
                f"{resource_ref('Tier', tier)}, which {needed[tier]} was in, no longer exists"
            )
    return reasons


# -- the watchdog and the backstop --------------------------------------------------------


def watch(
    open_store: Callable[[bool], AbstractContextManager[Datastore]],
    record_id: str,
    deadline: float,
    *,
    actor: str,
    sleep: Callable[[float], None] = time.sleep,
    give_up_after: float = 600.0,
) -> Record | None:
    """The watchdog's life: wait for the deadline of record `record_id`, then roll it back.

    `open_store(read_only)` opens the datastore; it is read read-only while waiting, so that a
    datastore removed meanwhile is not created again. Ends as soon as the record is settled
    (confirmed, most often). While the mark holds no record or another one, this one is not
    written yet (the apply starts the watchdog before its write) or was settled and replaced:
    either way there is nothing to do after the deadline. An unreachable datastore is retried
    until `give_up_after` seconds past the deadline; the agents' backstop covers the rest.
    """
    while True:
        now = clock()
        try:
            with open_store(True) as store:
                current = read(store)
            if current is not None and current.record.id == record_id:
                if current.record.state != "pending":
                    return None
                if current.expired:
                    with open_store(False) as store:
                        return settle(store, actor=actor)
            elif now > deadline + 1.0:
                return None
        except Missing:
            if now > deadline + 1.0:
                return None
        except FelisError as err:
            if now > deadline + give_up_after:
                log.error("giving up: %s", err)
                return None
            log.warning("%s; retrying", err)
        sleep(max(0.05, min(1.0, deadline - clock())))


_last_backstop_error: list[str] = [""]


def backstop(store: Datastore, *, actor: str) -> Record | None:
    """`settle` for callers that must go on whatever happens (the agent): never raises. The
    same failure is logged once, not at every check (an etcd role without access to the
    marks' key would otherwise fill the log)."""
    try:
        settled = settle(store, actor=actor)
    except FelisError as err:
        if str(err) != _last_backstop_error[0]:
            log.warning("could not check for an unconfirmed change: %s", err)
        _last_backstop_error[0] = str(err)
        return None
    _last_backstop_error[0] = ""
    return settled


# -- what `felis confirm --status` shows ----------------------------------------------------


def describe(current: Current | None) -> list[str]:
    """`felis confirm --status`: the record, one fact a line."""
    if current is None:
        return ["nothing pending: no change applied with --confirm awaits confirmation"]
    record = current.record
    head = f"change applied at {timestamp(record.applied_at)} by {record.by} from {record.source}"
    if record.state == "pending":
        left = max(0.0, record.deadline - clock())
        lines = [
            f"pending: {head}",
            f"rolls back at {timestamp(record.deadline)} (in {left:.0f}s) unless `felis confirm`",
        ]
        if record.watchdog:
            lines.append(f"watchdog: {record.watchdog}")
    else:
        lines = [f"{record.state}: {head}", outcome(record)]
    for touched in record.touched:
        if touched.before is None:
            lines.append(f"  {touched.ref}: created by the apply; deleted on rollback")
        else:
            lines.append(f"  {touched.ref}: updated by the apply; restored on rollback")
    return lines


def outcome(record: Record) -> str:
    """How a settled record ended, on one line."""
    when = timestamp(record.settled_at) if record.settled_at is not None else "?"
    if record.state == "confirmed":
        return f"confirmed at {when} by {record.settled_by}"
    ended = f"not confirmed by {timestamp(record.deadline)}"
    if record.state == "rolled-back":
        return f"{ended}: rolled back at {when} by {record.settled_by}"
    return (
        f"{ended}: rollback refused at {when} by {record.settled_by}, "
        f"nothing was restored ({'; '.join(record.reasons)})"
    )


def as_json(current: Current | None) -> dict[str, Any] | None:
    return None if current is None else current.record.to_json()
