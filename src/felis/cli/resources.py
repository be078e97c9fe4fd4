"""calicoctl-style resource commands: validate, apply, create, replace, delete, get.

Where felis deliberately differs from calicoctl (docs/cli.md says so too): a multi-document
write is all-or-nothing. calicoctl processes documents one by one and may leave a partial
success behind; felis checks every document first, against the datastore too, reports every
problem, and then writes them in one datastore transaction, so a bad or conflicting document
means nothing was written. The summary line counts what happened, not what was asked for.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from typing import Annotated, Any

import typer

from felis.cli.exits import BadUsage, CommandFailed
from felis.cli.inputs import read_sources
from felis.cli.output import GetFormat, render
from felis.cli.preflight import (
    DeleteTarget,
    Key,
    WriteVerb,
    delete_problems,
    kinds_to_read,
    read_stored,
    write_problems_against,
)
from felis.datastore import Datastore, Missing, open_datastore
from felis.datastore.objects import apply_action
from felis.errors import FelisError
from felis.model import (
    DEFAULT_NAMESPACE,
    KINDS,
    KindInfo,
    Located,
    Resource,
    from_dict,
    load_located,
    qualified_name,
    resolve_kind,
    to_dict,
)

DatastoreOption = Annotated[
    str | None,
    typer.Option(
        "--datastore",
        help="sqlite:///path or etcd://host:port[,host:port]; default $FELIS_DATASTORE, "
        "calicoctl's DATASTORE_TYPE/ETCD_ENDPOINTS, else sqlite:///var/lib/felis/felis.db",
        show_default=False,
    ),
]
FilenameOption = Annotated[
    str, typer.Option("--filename", "-f", help="Manifest file, directory, or - for stdin")
]
RecursiveOption = Annotated[
    bool, typer.Option("--recursive", "-R", help="Walk subdirectories of a -f directory")
]
NamespaceOption = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        "-n",
        help="Namespace of a namespaced kind (NetworkPolicy, NetworkSet, staged policies); "
        "default: default",
        show_default=False,
    ),
]


def fail_on(problems: Sequence[str], what: str = "nothing was done") -> None:
    """Print every problem on its own line and stop, when there is any."""
    if problems:
        for line in problems:
            typer.echo(line, err=True)
        raise CommandFailed(f"{len(problems)} problem(s); {what}")


def read_manifests(filename: str, recursive: bool) -> list[Located]:
    """Every resource of every source with its document, or CommandFailed after printing each
    problem on its line.

    All-or-nothing across sources, as in calicoctl. A resource given twice is an error: the
    second would silently win over the first.
    """
    items: list[Located] = []
    problems: list[str] = []
    for source in read_sources(filename, recursive=recursive):
        try:
            items.extend(load_located(source.data, source.name))
        except FelisError as err:
            problems.extend(err.lines() if hasattr(err, "lines") else [str(err)])
    fail_on(problems or _duplicates(items))
    if not items:
        raise FelisError(f"no resources specified in {filename}")
    return items


def _duplicates(items: Iterable[Located]) -> list[str]:
    first: dict[Key, Located] = {}
    problems = []
    for item in items:
        key = _key(item)
        earlier = first.setdefault(key, item)
        if earlier is not item:
            where = f"document {earlier.index}"
            if earlier.source != item.source:
                where = f"{earlier.source} {where}"
            reason = f"also given in {where}; each resource may appear only once"
            problems.append(str(item.error(None, reason)))
    return problems


def load_resources(filename: str, recursive: bool) -> list[Resource]:
    return [item.resource for item in read_manifests(filename, recursive)]


def read_datastore(url: str | None) -> list[Resource]:
    """Every stored resource, for the commands that only read: the datastore is opened
    read-only, so a mistyped path is an error instead of a new empty datastore."""
    with closing(open_datastore(url, read_only=True)) as store:
        objects = store.list().items
    return [from_dict(obj, source="datastore") for obj in objects]


def kind_argument(kind: str) -> KindInfo:
    try:
        return resolve_kind(kind)
    except FelisError as err:
        kinds = ", ".join(info.aliases[0] for info in KINDS.values())
        raise BadUsage(f"{err} (kinds: {kinds})") from None


def _key(item: Located) -> Key:
    return (item.resource.kind, qualified_name(item.resource))


def _namespace_of(info: KindInfo, namespace: str | None, all_namespaces: bool = False) -> str:
    """The namespace the command line selects for `info`, as calicoctl decides it: `-n`, else
    `default`; a cluster-scoped kind takes neither option."""
    if not info.namespaced:
        if namespace is not None or all_namespaces:
            raise BadUsage(f"{info.kind} is not namespaced")
        return ""
    if namespace is not None and all_namespaces:
        raise BadUsage("cannot use both --namespace and --all-namespaces flags at the same time")
    if namespace is not None and not namespace:
        raise BadUsage("--namespace may not be empty")
    return namespace or DEFAULT_NAMESPACE


def _key_name(info: KindInfo, namespace: str, name: str) -> str:
    if "/" in name:
        hint = " (give the namespace with -n)" if info.namespaced else ""
        raise BadUsage(f"a resource name may not contain '/'{hint}: {name}")
    return f"{namespace}/{name}" if info.namespaced else name


def _kind_phrase(kinds: Sequence[str]) -> str:
    unique = set(kinds)
    return f" '{kinds[0]}'" if len(unique) == 1 else ""


def _report(
    verb: str,
    kinds: Sequence[str],
    actions: Counter[str] | None = None,
    skipped: int = 0,
    why_skipped: str = "",
) -> None:
    line = f"Successfully {verb} {len(kinds)}{_kind_phrase(kinds)} resource(s)"
    if actions:
        line += ": " + _action_counts(actions)
    if skipped:
        line += f"; {skipped} skipped ({why_skipped})"
    typer.echo(line)


def _action_counts(actions: Counter[str]) -> str:
    return ", ".join(f"{actions[a]} {a}" for a in ("created", "updated", "unchanged") if actions[a])


@contextmanager
def _writing(
    datastore: str | None, items: Sequence[Located], verb: WriteVerb, *, skip_existing: bool = False
) -> Iterator[tuple[Datastore, list[Located]]]:
    """The datastore, initialised, and the items to write once every check against what it
    stores has passed (with `skip_existing`, those that exist are left out); closed afterwards."""
    with closing(open_datastore(datastore)) as store:
        store.ensure_initialized()
        stored = read_stored(store, kinds_to_read(r.resource.kind for r in items))
        if skip_existing:
            items = [item for item in items if _key(item) not in stored]
        fail_on(write_problems_against(items, stored, verb))
        yield store, list(items)


def _objects(items: Sequence[Located]) -> list[dict[str, Any]]:
    return [to_dict(item.resource) for item in items]


def validate(
    filename: FilenameOption,
    recursive: RecursiveOption = False,
) -> None:
    """Validate manifests offline, without a datastore.

    Exit code 0 only when every document is valid.
    """
    items = read_manifests(filename, recursive)
    _report("validated", [item.resource.kind for item in items])


def apply(
    filename: FilenameOption,
    recursive: RecursiveOption = False,
    datastore: DatastoreOption = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Check everything and show what would change; write nothing"
        ),
    ] = False,
) -> None:
    """Create or update resources (all-or-nothing).

    --dry-run makes every check apply makes, against the datastore too, and prints what
    would be created, updated or left unchanged, writing nothing.
    """
    items = read_manifests(filename, recursive)
    kinds = [item.resource.kind for item in items]
    if dry_run:
        _dry_run(datastore, items)
        return
    with _writing(datastore, items, "apply") as (store, todo):
        results = store.apply(_objects(todo))
    _report("applied", kinds, Counter(result.action for result in results))


def _dry_run(datastore: str | None, items: Sequence[Located]) -> None:
    try:
        with closing(open_datastore(datastore, read_only=True)) as store:
            stored = read_stored(store, kinds_to_read(item.resource.kind for item in items))
    except Missing:
        stored = {}  # what apply would start from: it creates the datastore
    fail_on(write_problems_against(items, stored, "apply"), "nothing would be written")
    actions: Counter[str] = Counter()
    for item, obj in zip(items, _objects(items), strict=True):
        action = apply_action(obj, stored.get(_key(item)))
        actions[action] += 1
        typer.echo(f"{item.resource.kind} {qualified_name(item.resource)}: would be {action}")
    typer.echo(
        f"Dry run: {len(items)} resource(s) would be applied: {_action_counts(actions)}; "
        "nothing was written"
    )


def create(
    filename: FilenameOption,
    recursive: RecursiveOption = False,
    skip_exists: Annotated[
        bool, typer.Option("--skip-exists", help="Existing resources are not an error")
    ] = False,
    datastore: DatastoreOption = None,
) -> None:
    """Create resources (all-or-nothing).

    Fails, writing nothing, if any already exists (unless --skip-exists).
    """
    items = read_manifests(filename, recursive)
    with _writing(datastore, items, "create", skip_existing=skip_exists) as (store, todo):
        if todo:
            store.create_all(_objects(todo))
    skipped = len(items) - len(todo)
    _report("created", [i.resource.kind for i in todo], None, skipped, "already exist")


def replace(
    filename: FilenameOption,
    recursive: RecursiveOption = False,
    datastore: DatastoreOption = None,
) -> None:
    """Update existing resources (all-or-nothing).

    Fails, writing nothing, if any does not exist.
    """
    items = read_manifests(filename, recursive)
    with _writing(datastore, items, "replace") as (store, todo):
        results = store.apply(_objects(todo))
    counts: Counter[str] = Counter(result.action for result in results)
    _report("replaced", [item.resource.kind for item in items], counts)


def delete(
    kind: Annotated[str | None, typer.Argument(help="Resource kind, e.g. gnp, hep, gns")] = None,
    names: Annotated[list[str] | None, typer.Argument(help="Resource names")] = None,
    filename: Annotated[
        str | None, typer.Option("--filename", "-f", help="Delete the resources in this manifest")
    ] = None,
    recursive: RecursiveOption = False,
    skip_not_exists: Annotated[
        bool, typer.Option("--skip-not-exists", "-s", help="Missing resources are not an error")
    ] = False,
    namespace: NamespaceOption = None,
    datastore: DatastoreOption = None,
) -> None:
    """Delete resources by kind and name, or those of a manifest.

    All-or-nothing: give KIND NAME... or -f FILE. Names of a namespaced kind are in the
    namespace -n (default: default); a manifest names its own.
    """
    targets = _delete_targets(kind, names, filename, recursive, namespace)
    # Read first, read-only: deleting from a datastore that does not exist must not create it.
    with closing(open_datastore(datastore, read_only=True)) as reader:
        stored = read_stored(reader, kinds_to_read(t.kind for t in targets))
    present = [t for t in targets if (t.kind, t.name) in stored]
    todo = present if skip_not_exists else targets
    fail_on(delete_problems(todo, stored))
    if todo:
        with closing(open_datastore(datastore)) as store:
            store.delete_all([(t.kind, t.name, t.resource_version) for t in todo])
    skipped = len(targets) - len(todo)
    _report("deleted", [t.kind for t in todo], None, skipped, "did not exist")


def _delete_targets(
    kind: str | None,
    names: list[str] | None,
    filename: str | None,
    recursive: bool,
    namespace: str | None = None,
) -> list[DeleteTarget]:
    if filename is not None:
        if kind is not None:
            raise BadUsage("delete: give either KIND NAME... or -f FILE, not both")
        if namespace is not None:
            raise BadUsage("delete: -n goes with KIND NAME...; a manifest names its namespaces")
        return [DeleteTarget.of(item) for item in read_manifests(filename, recursive)]
    if kind is None:
        raise BadUsage("delete: give KIND NAME... or -f FILE")
    info = kind_argument(kind)
    if not names:
        raise BadUsage(f"delete {kind}: give at least one NAME")
    if not all(names):
        raise BadUsage("delete: a resource name may not be empty")
    scope = _namespace_of(info, namespace)
    # Naming a resource twice deletes it once (the second deletion would find it gone).
    return [DeleteTarget(info.kind, _key_name(info, scope, name)) for name in dict.fromkeys(names)]


def get(
    kind: Annotated[str, typer.Argument(help="Resource kind, e.g. gnp, hep, gns, tier")],
    names: Annotated[list[str] | None, typer.Argument(help="Names (all when omitted)")] = None,
    output: Annotated[GetFormat, typer.Option("--output", "-o", help="Output format")] = (
        GetFormat.ps
    ),
    namespace: NamespaceOption = None,
    all_namespaces: Annotated[
        bool,
        typer.Option("--all-namespaces", "-A", help="List a namespaced kind across all namespaces"),
    ] = False,
    datastore: DatastoreOption = None,
) -> None:
    """Show resources.

    A namespaced kind is shown from the namespace -n (default: default), or from every
    namespace with -A; either option adds the NAMESPACE column, as in calicoctl.
    """
    info = kind_argument(kind)
    scope = _namespace_of(info, namespace, all_namespaces)
    if names and all_namespaces:
        raise BadUsage("cannot use --all-namespaces flag for getting a single resource")
    keys = [_key_name(info, scope, name) for name in dict.fromkeys(names or [])]
    missing: list[str] = []
    with closing(open_datastore(datastore, read_only=True)) as store:
        if keys:
            objects = []
            for key in keys:
                try:
                    objects.append(store.get(info.kind, key))
                except FelisError as err:
                    missing.append(str(err))
            revision = None
        else:
            listing = store.list(info.kind)
            objects, revision = listing.items, listing.revision
            if info.namespaced and not all_namespaces:
                objects = [o for o in objects if o["metadata"].get("namespace") == scope]
    if objects or not names:
        text = render(
            info.kind,
            objects,
            output,
            revision=revision,
            listing=not names,
            namespaced=info.namespaced and (namespace is not None or all_namespaces),
        )
        typer.echo(text, nl=False)
    fail_on(missing, "some resources were not found")


def register(app: typer.Typer) -> None:
    for command in (validate, apply, create, replace, delete, get):
        app.command()(command)
