"""`felis plan -f FILE --node N`: what applying FILE would change on node N, before applying it.

Exit codes, for CI: 0 nothing would change on the node, 2 something would, 1 an error.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import closing
from typing import Annotated

import typer

from felis.cli.dataplane import (
    Backend,
    BackendOption,
    FailsafeInOption,
    FailsafeOutOption,
    NodeOption,
    calc_config,
)
from felis.cli.resources import (
    DatastoreOption,
    FilenameOption,
    RecursiveOption,
    load_resources,
)
from felis.datastore import open_datastore
from felis.errors import FelisError
from felis.model import Resource, from_dict
from felis.model.resources import GlobalNetworkPolicy

CHANGES_EXIT = 2

OutputOption = Annotated[str, typer.Option("--output", "-o", help="text or json")]


def check_like_apply(stored: Sequence[Resource], incoming: Sequence[Resource]) -> None:
    """The checks `felis apply` makes against the datastore, so a plan never promises what
    apply would refuse: the policy's tier must exist, and a resourceVersion given in the input
    must be the stored one."""
    tiers = {"default", "kube-admin", "kube-baseline"}
    tiers |= {r.metadata.name for r in (*stored, *incoming) if r.kind == "Tier"}
    for resource in incoming:
        if isinstance(resource, GlobalNetworkPolicy):
            tier = resource.spec.tier or "default"
            if tier not in tiers:
                raise FelisError(
                    f"GlobalNetworkPolicy {resource.metadata.name}: spec.tier: "
                    f"resource does not exist: Tier({tier})"
                )
    versions = {(r.kind, r.metadata.name): r.metadata.resource_version for r in stored}
    for resource in incoming:
        wanted = resource.metadata.resource_version
        have = versions.get((resource.kind, resource.metadata.name))
        if wanted and have is not None and wanted != have:
            raise FelisError(
                f"update conflict: {resource.kind}({resource.metadata.name}): resource version "
                f"'{wanted}' is out of date (latest: {have})"
            )


def read_datastore(url: str | None) -> list[Resource]:
    with closing(open_datastore(url)) as store:
        objects = store.list().items
    return [from_dict(obj, source="datastore") for obj in objects]


def plan(
    filename: FilenameOption,
    node: NodeOption,
    recursive: RecursiveOption = False,
    datastore: DatastoreOption = None,
    backend: BackendOption = Backend.nftables,
    output: OutputOption = "text",
    failsafe_inbound: FailsafeInOption = None,
    failsafe_outbound: FailsafeOutOption = None,
) -> None:
    """Show what applying FILE would change on NODE: in words and as the exact kernel delta.

    Exit code 0 when nothing would change on the node, 2 when something would, 1 on error.
    Interfaces are not read (as in `felis render`).
    """
    from felis.plan import make_plan, overlay, render_text

    if output not in ("text", "json"):
        raise FelisError(f"unrecognized output format '{output}' (text or json)")
    incoming = load_resources(filename, recursive)
    config = calc_config(failsafe_inbound, failsafe_outbound)
    current = read_datastore(datastore)
    check_like_apply(current, incoming)
    result = make_plan(
        current, overlay(current, incoming), node, backend=backend.value, config=config
    )
    if output == "json":
        typer.echo(json.dumps(result.to_json(), indent=2))
    else:
        typer.echo(render_text(result), nl=False)
    if result.changes_node:
        raise typer.Exit(CHANGES_EXIT)


def register(app: typer.Typer) -> None:
    app.command()(plan)
