"""calicoctl-style resource commands: validate, apply, create, replace, delete, get.

Where felis deliberately differs from calicoctl (docs/cli.md says so too): a multi-document
write is all-or-nothing. calicoctl processes documents one by one and may leave a partial
success behind; felis validates every document first and then writes them in one datastore
transaction, so a bad or conflicting document means nothing was written.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from typing import Annotated, Any

import typer

from felis.cli.inputs import read_sources
from felis.cli.output import OUTPUT_FORMATS, render
from felis.datastore import Datastore, open_datastore
from felis.errors import FelisError
from felis.model import Resource, load_documents, resolve_kind, to_dict

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


class CommandFailed(FelisError):
    """Errors were already printed line by line; only the exit code is left to set."""


def _echo_errors(lines: Sequence[str]) -> None:
    for line in lines:
        typer.echo(line, err=True)


def load_resources(filename: str, recursive: bool) -> list[Resource]:
    """Every resource of every source, or CommandFailed after printing each problem on its line.

    Parsing is all-or-nothing across sources, as in calicoctl.
    """
    resources: list[Resource] = []
    problems: list[str] = []
    for source in read_sources(filename, recursive=recursive):
        try:
            resources.extend(load_documents(source.data, source.name))
        except FelisError as err:
            lines = err.lines() if hasattr(err, "lines") else [str(err)]
            problems.extend(lines)
    if problems:
        _echo_errors(problems)
        raise CommandFailed(f"{len(problems)} problem(s) in the input; nothing was done")
    if not resources:
        raise FelisError(f"no resources specified in {filename}")
    return resources


def _kind_phrase(kinds: Sequence[str]) -> str:
    unique = set(kinds)
    return f" '{kinds[0]}'" if len(unique) == 1 else ""


def _success(verb: str, kinds: Sequence[str]) -> None:
    typer.echo(f"Successfully {verb} {len(kinds)}{_kind_phrase(kinds)} resource(s)")


def _check_tiers(store: Datastore, resources: Sequence[Resource]) -> None:
    """Calico refuses a policy whose tier does not exist (rule G12), unless the same input
    creates that tier."""
    incoming = {r.metadata.name for r in resources if r.kind == "Tier"}
    for resource in resources:
        if resource.kind != "GlobalNetworkPolicy":
            continue
        tier = getattr(resource.spec, "tier", None) or "default"
        if tier in incoming:
            continue
        if not _exists(store, "Tier", tier):
            raise FelisError(
                f"GlobalNetworkPolicy {resource.metadata.name}: spec.tier: "
                f"resource does not exist: Tier({tier})"
            )


def _exists(store: Datastore, kind: str, name: str) -> bool:
    try:
        store.get(kind, name)
    except FelisError:
        return False
    return True


@contextmanager
def _writing(
    datastore: str | None, resources: Sequence[Resource]
) -> Iterator[tuple[Datastore, list[dict[str, Any]]]]:
    """The datastore, initialised and checked for the policies' tiers, and the resources'
    objects to write to it; closed afterwards."""
    with closing(open_datastore(datastore)) as store:
        store.ensure_initialized()
        _check_tiers(store, resources)
        yield store, [to_dict(resource) for resource in resources]


def validate(
    filename: FilenameOption,
    recursive: RecursiveOption = False,
) -> None:
    """Validate manifests offline (no datastore): exit 0 only when every document is valid."""
    resources = load_resources(filename, recursive)
    _success("validated", [r.kind for r in resources])


def apply(
    filename: FilenameOption,
    recursive: RecursiveOption = False,
    datastore: DatastoreOption = None,
) -> None:
    """Create or update resources (all-or-nothing)."""
    resources = load_resources(filename, recursive)
    with _writing(datastore, resources) as (store, objects):
        results = store.apply(objects)
    counts = Counter(result.action for result in results)
    _success("applied", [r.kind for r in resources])
    if counts["unchanged"]:
        typer.echo(f"({counts['unchanged']} unchanged)", err=True)


def create(
    filename: FilenameOption,
    recursive: RecursiveOption = False,
    skip_exists: Annotated[
        bool, typer.Option("--skip-exists", help="Existing resources are not an error")
    ] = False,
    datastore: DatastoreOption = None,
) -> None:
    """Create resources; fails (and writes nothing) if any already exists."""
    resources = load_resources(filename, recursive)
    for resource in resources:
        if resource.metadata.resource_version:
            raise FelisError(
                f"{resource.kind} {resource.metadata.name}: metadata.resourceVersion: "
                "must not be set on create (use apply or replace)"
            )
    with _writing(datastore, resources) as (store, objects):
        store.create_all(
            [o for o in objects if not _exists(store, o["kind"], o["metadata"]["name"])]
            if skip_exists
            else objects
        )
    _success("created", [r.kind for r in resources])


def replace(
    filename: FilenameOption,
    recursive: RecursiveOption = False,
    datastore: DatastoreOption = None,
) -> None:
    """Update existing resources (all-or-nothing); fails if any does not exist."""
    resources = load_resources(filename, recursive)
    with _writing(datastore, resources) as (store, objects):
        for obj in objects:
            store.get(obj["kind"], obj["metadata"]["name"])  # NotFound names the resource
        store.apply(objects)
    _success("replaced", [r.kind for r in resources])


BUILTIN_TIERS = frozenset({"default", "kube-admin", "kube-baseline"})


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
    datastore: DatastoreOption = None,
) -> None:
    """Delete resources by KIND NAME... or by -f FILE (all-or-nothing)."""
    keys: list[tuple[str, str, str | None]] = []
    if filename is not None:
        if kind is not None:
            raise FelisError("give either KIND NAME... or -f FILE, not both")
        for resource in load_resources(filename, recursive):
            keys.append(
                (resource.kind, resource.metadata.name, resource.metadata.resource_version or None)
            )
    else:
        if kind is None or not names:
            raise FelisError("delete needs KIND NAME... or -f FILE")
        info = resolve_kind(kind)
        for name in names:
            if not name:
                raise FelisError("resource name may not be empty")
            keys.append((info.kind, name, None))
    for key_kind, name, _ in keys:
        if key_kind == "Tier" and name in BUILTIN_TIERS:
            raise FelisError(f"Cannot delete {name} tier")
    with closing(open_datastore(datastore)) as store:
        if skip_not_exists:
            keys = [k for k in keys if _exists(store, k[0], k[1])]
        _check_tier_empty(store, keys)
        if keys:
            store.delete_all(keys)
    _success("deleted", [k[0] for k in keys])


def _check_tier_empty(store: Datastore, keys: Sequence[tuple[str, str, str | None]]) -> None:
    doomed = {(k[0], k[1]) for k in keys}
    tiers = {name for kind, name in doomed if kind == "Tier"}
    if not tiers:
        return
    for policy in store.list("GlobalNetworkPolicy").items:
        tier = policy.get("spec", {}).get("tier") or "default"
        if tier in tiers and ("GlobalNetworkPolicy", policy["metadata"]["name"]) not in doomed:
            raise FelisError(f"Cannot delete a non-empty tier: Tier({tier})")


def get(
    kind: Annotated[str, typer.Argument(help="Resource kind, e.g. gnp, hep, gns, tier")],
    names: Annotated[list[str] | None, typer.Argument(help="Names (all when omitted)")] = None,
    output: Annotated[
        str, typer.Option("--output", "-o", help="ps, wide, yaml, json or name")
    ] = "ps",
    datastore: DatastoreOption = None,
) -> None:
    """Show resources."""
    if output not in OUTPUT_FORMATS:
        raise FelisError(f"unrecognized output format '{output}'")
    info = resolve_kind(kind)
    missing: list[str] = []
    with closing(open_datastore(datastore)) as store:
        if names:
            objects = []
            for name in names:
                try:
                    objects.append(store.get(info.kind, name))
                except FelisError as err:
                    missing.append(str(err))
            revision = None
        else:
            listing = store.list(info.kind)
            objects, revision = listing.items, listing.revision
    if objects or not names:
        typer.echo(
            render(info.kind, objects, output, revision=revision, listing=not names), nl=False
        )
    if missing:
        _echo_errors(missing)
        raise CommandFailed("some resources were not found")
