"""What a write must satisfy against what the datastore stores, as calicoctl and Calico's client
library decide it (docs/calico-semantics.md#checks-against-the-datastore).

Every function here reads through a `ReadView` and returns every problem at once, one line
each, naming the file, document and resource as manifest validation does. The same functions
run inside the datastore's write transaction (`felis.resources.service`) and, against a plain
read, for the commands that only preview a write (`apply --dry-run`, `plan`, `lint`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from felis.datastore import AlreadyExists, Conflict, Datastore, NotFound, ReadView
from felis.datastore.objects import JSONObject, object_key
from felis.errors import FelisError
from felis.model import Located, qualified_name, write_problems
from felis.model.constants import BUILTIN_TIER_NAMES, DEFAULT_TIER, TIERED_KINDS

Key = tuple[str, str]

WriteVerb = Literal["apply", "create", "replace"]


class Problems(FelisError):
    """A write refused for every reason in `problems`, one printable line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        more = len(self.problems) - 1
        super().__init__(self.problems[0] + (f" (and {more} more)" if more else ""))

    def lines(self) -> list[str]:
        return list(self.problems)


def refuse(problems: Sequence[str]) -> None:
    """Raise Problems when there is any."""
    if problems:
        raise Problems(problems)


def item_key(item: Located) -> Key:
    return (item.resource.kind, qualified_name(item.resource))


def _tier_of(spec: Any) -> str:
    return str(spec.get("tier") or DEFAULT_TIER)


def _version(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"].get("resourceVersion", ""))


def _conflict(kind: str, name: str, given: str | None, current: Mapping[str, Any]) -> str | None:
    latest = _version(current)
    if given and given != latest:
        return str(Conflict(kind, name, given, latest))
    return None


def write_problems_against(items: Sequence[Located], view: ReadView, verb: WriteVerb) -> list[str]:
    """Every reason the datastore must refuse `verb` of `items`."""
    current = view.get_all([item_key(item) for item in items])
    creating = {item.resource.metadata.name for item in items if item.resource.kind == "Tier"}
    named = {
        getattr(item.resource.spec, "tier", "") or DEFAULT_TIER
        for item in items
        if item.resource.kind in TIERED_KINDS
    }
    # A tier is there when built in, stored, or created by the same write.
    wanted = sorted(named - BUILTIN_TIER_NAMES - creating)
    stored_tiers = view.get_all([("Tier", tier) for tier in wanted])
    tiers = BUILTIN_TIER_NAMES | creating | {name for (_, name), obj in stored_tiers.items() if obj}
    problems = []
    for item in items:
        resource = item.resource
        kind, name = item_key(item)
        stored = current[(kind, name)]
        if verb == "create":
            problems += [
                item.error(path, reason) for path, reason in write_problems(resource, verb)
            ]
            if stored is not None:
                problems.append(item.error(None, str(AlreadyExists(kind, name))))
        elif stored is None:
            if verb == "replace":
                problems.append(item.error(None, str(NotFound(kind, name))))
        else:
            conflict = _conflict(kind, name, resource.metadata.resource_version, stored)
            if conflict:
                problems.append(item.error("metadata.resourceVersion", conflict))
        if kind in TIERED_KINDS:
            tier = getattr(resource.spec, "tier", "") or DEFAULT_TIER
            if tier not in tiers:
                problems.append(item.error("spec.tier", str(NotFound("Tier", tier))))
    return [str(problem) for problem in problems]


@dataclass(frozen=True)
class DeleteTarget:
    """One resource to delete: named on the command line, or a document of a manifest."""

    kind: str
    name: str
    resource_version: str | None = None
    where: Located | None = None

    @classmethod
    def of(cls, item: Located) -> DeleteTarget:
        meta = item.resource.metadata
        return cls(
            item.resource.kind, qualified_name(item.resource), meta.resource_version or None, item
        )

    @property
    def key(self) -> Key:
        return (self.kind, self.name)

    def problem(self, path: str | None, reason: str) -> str:
        if self.where is not None:
            return str(self.where.error(path, reason))
        return reason


def delete_problems(targets: Sequence[DeleteTarget], view: ReadView) -> list[str]:
    """Every reason the deletion of `targets` must not happen."""
    builtin = {t.key for t in targets if t.kind == "Tier" and t.name in BUILTIN_TIER_NAMES}
    current = view.get_all([t.key for t in targets if t.key not in builtin])
    holders = _tier_holders(
        view, {t.name for t in targets if t.kind == "Tier"} - BUILTIN_TIER_NAMES, targets
    )
    problems = []
    for target in targets:
        if target.key in builtin:
            problems.append(target.problem(None, f"Cannot delete {target.name} tier"))
            continue
        stored = current[target.key]
        if stored is None:
            problems.append(target.problem(None, str(NotFound(target.kind, target.name))))
            continue
        conflict = _conflict(target.kind, target.name, target.resource_version, stored)
        if conflict:
            problems.append(target.problem("metadata.resourceVersion", conflict))
        holder = holders.get(target.name) if target.kind == "Tier" else None
        if holder is not None:
            kind, name = holder
            problems.append(
                target.problem(
                    None,
                    f"Cannot delete a non-empty tier: Tier({target.name}) still holds "
                    f"{kind}({name})",
                )
            )
    return problems


def _tier_holders(
    view: ReadView, tiers: set[str], targets: Sequence[DeleteTarget]
) -> dict[str, Key]:
    """Tier name → the first policy (by kind, then name) in it that is not deleted too."""
    if not tiers:
        return {}
    doomed = {t.key for t in targets}
    holders: dict[str, Key] = {}
    for kind in sorted(TIERED_KINDS):
        for obj in view.list(kind):
            tier = _tier_of(obj.get("spec") or {})
            key = object_key(obj)
            if tier in tiers and key not in doomed:
                holders.setdefault(tier, key)
    return holders


class MappingView:
    """A `ReadView` of objects already read (a preview has no transaction to check in)."""

    def __init__(self, objects: Mapping[Key, JSONObject]) -> None:
        self._objects = objects

    def get_all(self, keys: Sequence[Key]) -> dict[Key, JSONObject | None]:
        return {key: self._objects.get(key) for key in keys}

    def list(self, kind: str) -> list[JSONObject]:
        return [obj for key, obj in sorted(self._objects.items()) if key[0] == kind]


class StoreReader:
    """A `ReadView` that reads a datastore outside any transaction, one listing per kind: for
    a preview, and to find what exists before a write (the write checks again inside)."""

    def __init__(self, store: Datastore) -> None:
        self._store = store
        self._listed: dict[str, dict[Key, JSONObject]] = {}

    def _kind(self, kind: str) -> dict[Key, JSONObject]:
        if kind not in self._listed:
            items = self._store.list(kind).items
            self._listed[kind] = {object_key(obj): obj for obj in items}
        return self._listed[kind]

    def get_all(self, keys: Sequence[Key]) -> dict[Key, JSONObject | None]:
        return {key: self._kind(key[0]).get(key) for key in keys}

    def list(self, kind: str) -> list[JSONObject]:
        return list(self._kind(kind).values())

    def present(self, keys: Iterable[Key]) -> set[Key]:
        keys = list(keys)
        return {key for key, obj in self.get_all(keys).items() if obj is not None}
