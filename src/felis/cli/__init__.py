"""The `felis` command line.

Every failure a user can cause ends here as one line on stderr and exit code 1 (2 for a
mistake in the command line itself, see felis.cli.exits); an unexpected exception is reported
on one line too (with FELIS_DEBUG=1 for the traceback), because a traceback is never an
answer to bad input.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from typing import Annotated

import typer

from felis import __version__
from felis.cli.exits import FAILURE, USAGE, BadUsage, CommandFailed
from felis.errors import FelisError

app = typer.Typer(
    name="felis",
    help="Calico-compatible host firewall that takes high-connection traffic out of conntrack.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's plain help: rich's help panels cut long words (a default URL, an environment
    # variable) with an ellipsis to fit their columns, and the help must be read in full.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def package_version() -> str:
    """The installed distribution's version; the source tree's when run uninstalled."""
    try:
        return importlib.metadata.version("felis")
    except importlib.metadata.PackageNotFoundError:
        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(package_version())
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the felis version and exit",
        ),
    ] = False,
) -> None:
    # Only here to hold --version; the group's help is the Typer's `help`.
    pass


# Which module defines each command, in the order `felis -h` lists them. Only the module of
# the command being run is imported: the agent starts without the lab, conntrack, trace, plan
# and lint code (and their dependencies) ever being loaded.
COMMAND_MODULES: dict[str, str] = {
    "validate": "felis.cli.resources",
    "apply": "felis.cli.resources",
    "create": "felis.cli.resources",
    "replace": "felis.cli.resources",
    "delete": "felis.cli.resources",
    "get": "felis.cli.resources",
    "confirm": "felis.cli.confirm",
    "render": "felis.cli.dataplane",
    "agent": "felis.cli.dataplane",
    "status": "felis.cli.dataplane",
    "trace": "felis.cli.trace",
    "plan": "felis.cli.plan",
    "lint": "felis.cli.lint",
    "lab": "felis.cli.lab",
    "conntrack": "felis.cli.conntrack",
}
_loaded: set[str] = set()


def load_commands(command: str | None = None) -> typer.Typer:
    """Register the module of `command`, or of every command (for help, or a name that is
    not a command, which click then reports with the full list)."""
    wanted = COMMAND_MODULES.get(command or "")
    for module in dict.fromkeys(COMMAND_MODULES.values()):
        if module in _loaded or (wanted is not None and module != wanted):
            continue
        importlib.import_module(module).register(app)
        _loaded.add(module)
    if wanted is None and "version" not in _loaded:
        app.command()(version)
        _loaded.add("version")
    return app


def version() -> None:
    """Print the felis version."""
    typer.echo(package_version())


def _command(argv: list[str] | None) -> str | None:
    """The command being run: the first word that is not an option (options come after it;
    the only options before it, -h and --version, take no value)."""
    args = sys.argv[1:] if argv is None else argv
    return next((arg for arg in args if not arg.startswith("-")), None)


def _help_command(argv: list[str] | None) -> str:
    """`felis COMMAND -h` for the command that was run."""
    command = _command(argv)
    return f"felis {command} -h" if command else "felis -h"


def main(argv: list[str] | None = None) -> None:
    try:
        load_commands(_command(argv))
        code = app(args=argv, prog_name="felis", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except CommandFailed:
        sys.exit(FAILURE)
    except BadUsage as err:
        typer.echo(f"{err} (see '{_help_command(argv)}')", err=True)
        sys.exit(USAGE)
    except FelisError as err:
        typer.echo(str(err), err=True)
        sys.exit(FAILURE)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(FAILURE)
    except typer.TyperException as err:
        # Usage errors: click's own message and usage line, exit code 2 as click does.
        show = getattr(err, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(str(err), err=True)
        sys.exit(int(getattr(err, "exit_code", USAGE) or USAGE))
    except Exception as err:
        if os.environ.get("FELIS_DEBUG"):
            raise
        typer.echo(
            f"internal error: {type(err).__name__}: {err} (FELIS_DEBUG=1 shows more)", err=True
        )
        sys.exit(FAILURE)
