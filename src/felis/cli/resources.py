"""calicoctl-style resource commands: validate, apply, create, replace, delete, get.

The semantics (parsing, checks against the datastore, all-or-nothing writes) are
`felis.resources`'; this module reads the command line and the input files and prints. The
summary line counts what happened, not what was asked for.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from typing import Annotated, TypeVar

import typer

from felis.cli.exits import BadUsage, CommandFailed
from felis.cli.inputs import read_sources
from felis.cli.output import GetFormat, render
from felis.datastore import Datastore, Missing, open_datastore
from felis.errors import FelisError
from felis.model import (
    DEFAULT_NAMESPACE,
    KINDS,
    KindInfo,
    Located,
    Resource,
    from_dict,
    qualified_name,
    resolve_kind,
)
from felis.resources import (
    DeleteTarget,
    MappingView,
    Problems,
    ResourceService,
    parse,
    preview_apply,
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


_T = TypeVar("_T")


def fail_on(problems: Sequence[str], what: str = "nothing was done") -> None:
    """Print every problem on its own line and stop, when there is any."""
    if problems:
        for line in problems:
            typer.echo(line, err=True)
        raise CommandFailed(f"{len(problems)} problem(s); {what}")


def reported(run: Callable[[], _T], what: str = "nothing was done") -> _T:
    """`run()`, its Problems printed one per line as fail_on prints them."""
    try:
        return run()
    except Problems as err:
        fail_on(err.lines(), what)
        raise  # not reached: fail_on raised


def read_manifests(filename: str, recursive: bool) -> list[Located]:
    """Every resource of every source with its document (`felis.resources.parse`), or
    CommandFailed after printing each problem on its line."""
    items = reported(lambda: parse(read_sources(filename, recursive=recursive)))
    if not items:
        raise FelisError(f"no resources specified in {filename}")
    return items


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
def _service(datastore: str | None) -> Iterator[ResourceService]:
    with closing(open_datastore(datastore)) as store:
        _settle_confirmation(store)
        yield ResourceService(store)


def _settle_confirmation(store: Datastore) -> None:
    """Every write first rolls back a change left unconfirmed past its window (the backstop
    of `apply --confirm`, should its watchdog be gone), and says when one still waits."""
    from felis.resources import confirm as confirming

    settled = confirming.backstop(store, actor=f"felis on {socket.gethostname()}")
    if settled is not None:
        typer.echo(
            f"note: the change applied with --confirm at "
            f"{confirming.timestamp(settled.applied_at)} was {confirming.outcome(settled)}",
            err=True,
        )
    try:
        current = confirming.read(store)
    except FelisError:
        return
    if current is not None and current.record.state == "pending":
        typer.echo(
            "note: a change applied with --confirm is pending until "
            f"{confirming.timestamp(current.record.deadline)} (`felis confirm --status`); "
            "its rollback is refused if this write changes the same resources",
            err=True,
        )


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
    confirm: Annotated[
        str | None,
        typer.Option(
            "--confirm",
            metavar="WINDOW",
            help="Roll the change back unless `felis confirm` runs within WINDOW (60s, 5m, 1h)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Create or update resources (all-or-nothing).

    --dry-run makes every check apply makes, against the datastore too, and prints what
    would be created, updated or left unchanged, writing nothing.

    --confirm WINDOW records how every changed resource was before; unless `felis confirm`
    runs within WINDOW, they are all restored at once, even if this shell is gone by then.
    """
    window = None
    if confirm is not None:
        if dry_run:
            raise BadUsage("--confirm and --dry-run exclude each other")
        from felis.resources.confirm import parse_window

        try:
            window = parse_window(confirm)
        except ValueError as err:
            raise BadUsage(str(err)) from None
    items = read_manifests(filename, recursive)
    kinds = [item.resource.kind for item in items]
    if dry_run:
        _dry_run(datastore, items)
        return
    if window is not None:
        _apply_confirmed(datastore, items, window, filename)
        return
    with _service(datastore) as service:
        results = reported(lambda: service.apply(items))
    _report("applied", kinds, Counter(result.action for result in results))


def _apply_confirmed(
    datastore: str | None, items: Sequence[Located], window: float, filename: str
) -> None:
    from felis.cli.confirm import watchdog_starter
    from felis.resources import confirm as confirming

    with closing(open_datastore(datastore)) as store:
        applied = reported(
            lambda: confirming.apply_confirmed(
                store,
                items,
                window,
                source=filename,
                start_watchdog=watchdog_starter(datastore),
            )
        )
    if applied.settled is not None:
        typer.echo(
            f"note: the change applied with --confirm at "
            f"{confirming.timestamp(applied.settled.applied_at)} was "
            f"{confirming.outcome(applied.settled)}",
            err=True,
        )
    _report(
        "applied",
        [item.resource.kind for item in items],
        Counter(result.action for result in applied.results),
    )
    if applied.record is None:
        typer.echo("Nothing changed: nothing to confirm")
        return
    typer.echo(
        f"Pending confirmation: run `felis confirm` by "
        f"{confirming.timestamp(applied.record.deadline)} ({window:g}s), or all "
        f"{len(applied.record.touched)} changed resource(s) are restored"
    )


def _dry_run(datastore: str | None, items: Sequence[Located]) -> None:
    what = "nothing would be written"
    try:
        with closing(open_datastore(datastore, read_only=True)) as store:
            planned = reported(lambda: ResourceService(store).preview_apply(items), what)
    except Missing:
        # What apply would start from: it creates the datastore.
        planned = reported(lambda: preview_apply(items, MappingView({})), what)
    actions: Counter[str] = Counter()
    for item, action in zip(items, planned, strict=True):
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
    with _service(datastore) as service:
        done = reported(lambda: service.create(items, skip_existing=skip_exists))
    kinds = [item.resource.kind for item in done.created]
    _report("created", kinds, None, done.skipped, "already exist")


def replace(
    filename: FilenameOption,
    recursive: RecursiveOption = False,
    datastore: DatastoreOption = None,
) -> None:
    """Update existing resources (all-or-nothing).

    Fails, writing nothing, if any does not exist.
    """
    items = read_manifests(filename, recursive)
    with _service(datastore) as service:
        results = reported(lambda: service.replace(items))
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
    # Opened read-only first: deleting from a datastore that does not exist must not create it.
    open_datastore(datastore, read_only=True).close()
    with _service(datastore) as service:
        done = reported(lambda: service.delete(targets, skip_missing=skip_not_exists))
    _report("deleted", [t.kind for t in done.deleted], None, done.skipped, "did not exist")


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
