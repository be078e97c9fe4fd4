"""calicoctl's resource operations: parse, default and validate manifests, check them against
the datastore, write them.

Where felis deliberately differs from calicoctl (docs/cli.md says so too): a multi-document
write is all-or-nothing. calicoctl processes documents one by one and may leave a partial
success behind; felis checks every document, reports every problem, and writes them in one
datastore transaction, so a bad or conflicting document means nothing was written.

The checks against the datastore run inside that transaction (the `checks` of
`felis.datastore.base`): a policy created in tier T and the deletion of T by two clients at
once cannot both succeed, on SQLite or on etcd.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from felis.datastore import ApplyResult, Datastore, ReadView, WriteCheck
from felis.datastore.base import ApplyAction
from felis.datastore.objects import JSONObject, apply_action
from felis.errors import FelisError
from felis.model import Located, Resource, load_located, qualified_name, to_dict, write_problems
from felis.resources.checks import (
    DeleteTarget,
    Key,
    MappingView,
    StoreReader,
    WriteVerb,
    delete_problems,
    item_key,
    refuse,
    write_problems_against,
)


class ManifestSource(Protocol):
    """One manifest input: its name for messages and its bytes."""

    @property
    def name(self) -> str: ...

    @property
    def data(self) -> bytes: ...


def parse(sources: Iterable[ManifestSource]) -> list[Located]:
    """Every resource of every source, parsed, defaulted and validated, with its document; or
    Problems listing every problem of every source.

    All-or-nothing across sources, as in calicoctl. A resource given twice is an error: the
    second would silently win over the first.
    """
    items: list[Located] = []
    problems: list[str] = []
    for source in sources:
        try:
            items.extend(load_located(source.data, source.name))
        except FelisError as err:
            problems.extend(err.lines() if hasattr(err, "lines") else [str(err)])
    refuse(problems or _duplicates(items))
    return items


def _duplicates(items: Iterable[Located]) -> list[str]:
    first: dict[Key, Located] = {}
    problems = []
    for item in items:
        earlier = first.setdefault(item_key(item), item)
        if earlier is not item:
            where = f"document {earlier.index}"
            if earlier.source != item.source:
                where = f"{earlier.source} {where}"
            reason = f"also given in {where}; each resource may appear only once"
            problems.append(str(item.error(None, reason)))
    return problems


def objects_of(items: Sequence[Located]) -> list[JSONObject]:
    return [to_dict(item.resource) for item in items]


def stored_view(resources: Iterable[Resource]) -> MappingView:
    """A view of resources already read from the datastore (`plan`, `lint`)."""
    return MappingView({(r.kind, qualified_name(r)): to_dict(r) for r in resources})


def check_write(items: Sequence[Located], view: ReadView, verb: WriteVerb = "apply") -> None:
    """Problems unless `verb` of `items` would pass every check against `view`: what `plan` and
    `lint` make, so that they never promise what apply would refuse."""
    refuse(write_problems_against(items, view, verb))


def preview_apply(items: Sequence[Located], view: ReadView) -> list[ApplyAction]:
    """What apply would do with each item given `view` (created, updated or unchanged), after
    the checks apply makes; nothing is written."""
    check_write(items, view, "apply")
    current = view.get_all([item_key(item) for item in items])
    return [
        apply_action(obj, current[item_key(item)])
        for item, obj in zip(items, objects_of(items), strict=True)
    ]


@dataclass(frozen=True)
class Created:
    created: list[Located]
    skipped: int
    """Items left out because they already existed (with `skip_existing`)."""


@dataclass(frozen=True)
class Deleted:
    deleted: list[DeleteTarget]
    skipped: int
    """Targets left out because they did not exist (with `skip_missing`)."""


class ResourceService:
    """The resource operations on one open datastore (the caller opens and closes it)."""

    def __init__(self, store: Datastore) -> None:
        self.store = store

    def _checked(self, items: Sequence[Located], verb: WriteVerb) -> WriteCheck:
        def check(view: ReadView) -> None:
            refuse(write_problems_against(items, view, verb))

        return check

    def apply(self, items: Sequence[Located]) -> list[ApplyResult]:
        """Create or update every item (all-or-nothing)."""
        self.store.ensure_initialized()
        return self.store.apply(objects_of(items), checks=self._checked(items, "apply"))

    def create(self, items: Sequence[Located], *, skip_existing: bool = False) -> Created:
        """Create every item (all-or-nothing); with `skip_existing`, those that exist when the
        command starts are left out (one created meanwhile still fails the whole write)."""
        self.store.ensure_initialized()
        todo = list(items)
        if skip_existing:
            present = StoreReader(self.store).present(item_key(item) for item in items)
            todo = [item for item in items if item_key(item) not in present]
        if any(write_problems(item.resource, "create") for item in todo):
            # The datastore refuses these before its transaction starts: the other checks are
            # made on a plain read, so that every problem is still reported at once.
            refuse(write_problems_against(todo, StoreReader(self.store), "create"))
        if todo:
            self.store.create_all(objects_of(todo), checks=self._checked(todo, "create"))
        return Created(todo, len(items) - len(todo))

    def replace(self, items: Sequence[Located]) -> list[ApplyResult]:
        """Update every item, each of which must exist (all-or-nothing)."""
        self.store.ensure_initialized()
        return self.store.apply(objects_of(items), checks=self._checked(items, "replace"))

    def delete(self, targets: Sequence[DeleteTarget], *, skip_missing: bool = False) -> Deleted:
        """Delete every target (all-or-nothing); with `skip_missing`, those absent when the
        command starts are left out (one deleted meanwhile still fails the whole delete)."""
        todo = list(targets)
        if skip_missing:
            present = StoreReader(self.store).present(t.key for t in targets)
            todo = [t for t in targets if t.key in present]
        if todo:

            def check(view: ReadView) -> None:
                refuse(delete_problems(todo, view))

            keys = [(t.kind, t.name, t.resource_version) for t in todo]
            self.store.delete_all(keys, checks=check)
        return Deleted(todo, len(targets) - len(todo))

    def preview_apply(self, items: Sequence[Located]) -> list[ApplyAction]:
        """`preview_apply` against what the datastore stores now."""
        return preview_apply(items, StoreReader(self.store))
