"""What a write checks against the datastore before writing anything.

The datastore refuses a bad write too, but in one transaction that stops at the first problem
and knows nothing of files. Checked here first, every problem is reported at once, each naming
its file, document and resource as manifest validation does. The write that follows stays
all-or-nothing: a change made by someone else in between still makes it fail as a whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from felis.datastore import AlreadyExists, Conflict, Datastore, NotFound
from felis.datastore.objects import BUILTIN_TIERS, object_key
from felis.model import DEFAULT_TIER, Located, qualified_name, write_problems

Key = tuple[str, str]
Stored = Mapping[Key, dict[str, Any]]
"""(kind, name) → the object as stored, with its resourceVersion; the name of a namespaced
kind is `<namespace>/<name>`, as the datastore keys it."""

TIERED_KINDS = frozenset(
    {"GlobalNetworkPolicy", "NetworkPolicy", "StagedGlobalNetworkPolicy", "StagedNetworkPolicy"}
)
"""The kinds whose objects name a tier that must exist (and keep it from being deleted)."""

WriteVerb = Literal["apply", "create", "replace"]

BUILTIN_TIER_NAMES = frozenset(name for name, _, _ in BUILTIN_TIERS)


def read_stored(store: Datastore, kinds: Iterable[str]) -> dict[Key, dict[str, Any]]:
    """The stored objects of `kinds`: one listing per kind, not one read per resource."""
    stored: dict[Key, dict[str, Any]] = {}
    for kind in sorted(set(kinds)):
        for obj in store.list(kind).items:
            stored[object_key(obj)] = obj
    return stored


def kinds_to_read(kinds: Iterable[str]) -> set[str]:
    """The kinds a check of resources of `kinds` looks at (a policy's tier, a tier's policies)."""
    wanted = set(kinds)
    if wanted & (TIERED_KINDS | {"Tier"}):
        wanted |= TIERED_KINDS | {"Tier"}
    return wanted


def _version(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"].get("resourceVersion", ""))


def _conflict(kind: str, name: str, given: str | None, current: Mapping[str, Any]) -> str | None:
    latest = _version(current)
    if given and given != latest:
        return str(Conflict(kind, name, given, latest))
    return None


def write_problems_against(items: Sequence[Located], stored: Stored, verb: WriteVerb) -> list[str]:
    """Every reason the datastore would refuse `verb` of `items`, one line each."""
    tiers = set(BUILTIN_TIER_NAMES)
    tiers |= {name for kind, name in stored if kind == "Tier"}
    tiers |= {item.resource.metadata.name for item in items if item.resource.kind == "Tier"}
    problems = []
    for item in items:
        resource = item.resource
        kind, name = resource.kind, qualified_name(resource)
        current = stored.get((kind, name))
        if verb == "create":
            problems += [
                item.error(path, reason) for path, reason in write_problems(resource, verb)
            ]
            if current is not None:
                problems.append(item.error(None, str(AlreadyExists(kind, name))))
        elif current is None:
            if verb == "replace":
                problems.append(item.error(None, str(NotFound(kind, name))))
        else:
            conflict = _conflict(kind, name, resource.metadata.resource_version, current)
            if conflict:
                problems.append(item.error("metadata.resourceVersion", conflict))
        # Calico refuses a policy whose tier does not exist, unless the same input creates it.
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
        name = qualified_name(item.resource)
        return cls(item.resource.kind, name, meta.resource_version or None, item)

    def problem(self, path: str | None, reason: str) -> str:
        if self.where is not None:
            return str(self.where.error(path, reason))
        return reason


def delete_problems(targets: Sequence[DeleteTarget], stored: Stored) -> list[str]:
    """Every reason the deletion of `targets` must not happen, one line each."""
    doomed = {(t.kind, t.name) for t in targets}
    problems = []
    for target in targets:
        if target.kind == "Tier" and target.name in BUILTIN_TIER_NAMES:
            problems.append(target.problem(None, f"Cannot delete {target.name} tier"))
            continue
        current = stored.get((target.kind, target.name))
        if current is None:
            problems.append(target.problem(None, str(NotFound(target.kind, target.name))))
            continue
        conflict = _conflict(target.kind, target.name, target.resource_version, current)
        if conflict:
            problems.append(target.problem("metadata.resourceVersion", conflict))
        if target.kind != "Tier":
            continue
        for (kind, name), obj in stored.items():
            tier = obj.get("spec", {}).get("tier") or DEFAULT_TIER
            if kind in TIERED_KINDS and tier == target.name and (kind, name) not in doomed:
                problems.append(
                    target.problem(
                        None,
                        f"Cannot delete a non-empty tier: Tier({target.name}) still holds "
                        f"{kind}({name})",
                    )
                )
                break
    return problems
