"""`felis plan -f FILE --node N`: what applying FILE would change on node N, before applying it.

Exit codes, for CI: 0 nothing would change on the node, 3 something would (2 stays the usage
error it is everywhere), 1 an error.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from felis.cli.dataplane import (
    Backend,
    BackendOption,
    FailsafeInOption,
    FailsafeOutOption,
    NodeOption,
    node_config,
    node_warning,
)
from felis.cli.exits import FOUND
from felis.cli.output import ReportFormat
from felis.cli.resources import (
    DatastoreOption,
    FilenameOption,
    RecursiveOption,
    read_datastore,
    read_manifests,
    reported,
)
from felis.resources import check_write, stored_view

OutputOption = Annotated[ReportFormat, typer.Option("--output", "-o", help="Output format")]


def plan(
    filename: FilenameOption,
    node: NodeOption,
    recursive: RecursiveOption = False,
    datastore: DatastoreOption = None,
    backend: BackendOption = Backend.nftables,
    output: OutputOption = ReportFormat.text,
    failsafe_inbound: FailsafeInOption = None,
    failsafe_outbound: FailsafeOutOption = None,
) -> None:
    """Show what applying FILE would change on NODE.

    In words and as the exact kernel delta.

    Exit code 0 when nothing would change on the node, 3 when something would, 1 on error.
    Interfaces are not read (as in `felis render`).
    """
    from felis.plan import make_plan, overlay, render_text

    incoming = read_manifests(filename, recursive)
    current = read_datastore(datastore)
    # The checks apply makes, so a plan never promises what apply would refuse.
    reported(lambda: check_write(incoming, stored_view(current)))
    proposed = overlay(current, [item.resource for item in incoming])
    empty = node_warning(proposed, node, allow_empty=True)
    if empty:
        typer.echo(f"warning: {empty}", err=True)
    # A FelixConfiguration in FILE changes the node's settings: each side gets its own.
    before, after = (
        node_config(side, node, backend, failsafe_inbound, failsafe_outbound)
        for side in (current, proposed)
    )
    for warning in after.warnings:
        typer.echo(f"warning: {warning}", err=True)
    for skipped in after.skipped:
        typer.echo(f"error: {skipped}", err=True)
    result = make_plan(
        current,
        proposed,
        node,
        backend=backend.value,
        config=before.calc,
        config_after=after.calc,
    )
    if output is ReportFormat.json:
        typer.echo(json.dumps(result.to_json(), indent=2))
    else:
        typer.echo(render_text(result), nl=False)
    if result.changes_node:
        raise typer.Exit(FOUND)


def register(app: typer.Typer) -> None:
    app.command()(plan)
