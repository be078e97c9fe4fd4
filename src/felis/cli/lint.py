"""`felis lint`: doNotTrack pitfalls in manifests, the datastore, or both.

Exit codes: 0 clean (notes allowed), 3 at least one warning, 1 an error (2: usage, as everywhere).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from felis.cli.dataplane import FailsafeInOption, FailsafeOutOption, calc_config
from felis.cli.exits import FOUND
from felis.cli.output import ReportFormat
from felis.cli.resources import (
    DatastoreOption,
    RecursiveOption,
    load_resources,
    read_datastore,
    read_manifests,
    reported,
)
from felis.model import Resource
from felis.resources import check_write, stored_view


def lint(
    filename: Annotated[
        str | None,
        typer.Option(
            "--filename", "-f", help="Manifest file, directory, or - (default: the datastore)"
        ),
    ] = None,
    recursive: RecursiveOption = False,
    datastore: DatastoreOption = None,
    output: Annotated[ReportFormat, typer.Option("--output", "-o", help="Output format")] = (
        ReportFormat.text
    ),
    failsafe_inbound: FailsafeInOption = None,
    failsafe_outbound: FailsafeOutOption = None,
) -> None:
    """Warn about doNotTrack pitfalls, with suggested fixes.

    Each finding has a stable code (docs/lint.md).

    -f alone lints the manifest by itself; --datastore alone (or neither) lints the datastore;
    both lint the manifest as `felis apply` would leave the datastore. Exit code 0 when there
    is no warning (notes are advice), 3 with warnings, 1 on error.
    """
    from felis.lint import WARNING
    from felis.lint import lint as run_lint
    from felis.plan import overlay

    config = calc_config(failsafe_inbound, failsafe_outbound)
    resources: list[Resource]
    if filename is not None and datastore is None:
        resources = load_resources(filename, recursive)
        complete = False
        scope = filename
    elif filename is not None:
        incoming = read_manifests(filename, recursive)
        current = read_datastore(datastore)
        reported(lambda: check_write(incoming, stored_view(current)))
        resources = overlay(current, [item.resource for item in incoming])
        complete = True
        scope = f"{filename} applied on the datastore"
    else:
        resources = read_datastore(datastore)
        complete = True
        scope = "the datastore"
    findings = run_lint(resources, config, complete=complete)
    warnings = sum(1 for f in findings if f.severity == WARNING)
    notes = len(findings) - warnings
    if output is ReportFormat.json:
        typer.echo(
            json.dumps(
                {
                    "scope": scope,
                    "warnings": warnings,
                    "notes": notes,
                    "findings": [f.to_json() for f in findings],
                },
                indent=2,
            )
        )
    else:
        for finding in findings:
            typer.echo(finding.text())
        typer.echo(f"{scope}: {warnings} warning(s), {notes} note(s)")
    if warnings:
        raise typer.Exit(FOUND)


def register(app: typer.Typer) -> None:
    app.command()(lint)
