"""The `felis` command line.

Every failure a user can cause ends here as one line on stderr and exit code 1; an unexpected
exception is reported on one line too (with FELIS_DEBUG=1 for the traceback), because a
traceback is never an answer to bad input.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import typer

from felis import __version__
from felis.cli import resources
from felis.errors import FelisError

app = typer.Typer(
    name="felis",
    help="Calico-compatible host firewall that takes high-connection traffic out of conntrack.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

for command in (
    resources.validate,
    resources.apply,
    resources.create,
    resources.replace,
    resources.delete,
    resources.get,
):
    app.command()(command)


def _mount(module: str, name: str, help_text: str) -> None:
    app.add_typer(importlib.import_module(module).app, name=name, help=help_text)


def _register(module: str) -> None:
    """Command modules register themselves; one that is not part of this build is skipped (a
    module that exists but fails to import is a bug and must say so)."""
    if importlib.util.find_spec(module) is None:
        return
    importlib.import_module(module).register(app)


for _module in ("felis.cli.dataplane", "felis.cli.trace", "felis.cli.plan", "felis.cli.lint"):
    _register(_module)
_mount("felis.lab.cli", "lab", "Network-namespace lab: real memcached, real load.")
_mount("felis.conntrack.cli", "conntrack", "Conntrack pressure: status, top, advise.")


@app.command()
def version() -> None:
    """Print the felis version."""
    typer.echo(__version__)


def main(argv: list[str] | None = None) -> None:
    try:
        code = app(args=argv, prog_name="felis", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except resources.CommandFailed:
        sys.exit(1)
    except FelisError as err:
        typer.echo(str(err), err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except typer.TyperException as err:
        # Usage errors: click's own message and usage line, exit code 2 as click does.
        show = getattr(err, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(str(err), err=True)
        sys.exit(int(getattr(err, "exit_code", 2) or 2))
    except Exception as err:
        if os.environ.get("FELIS_DEBUG"):
            raise
        typer.echo(
            f"internal error: {type(err).__name__}: {err} (FELIS_DEBUG=1 shows more)", err=True
        )
        sys.exit(1)
