"""The exit codes of every `felis` command (docs/cli.md), in one place.

A script must be able to tell "you called me wrongly" from "I ran and found something", so
usage errors (2, click's own code) never share a code with a finding.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from felis.errors import FelisError

P = ParamSpec("P")
R = TypeVar("R")

FAILURE = 1
"""Bad input, conflict, missing resource or datastore, anything that stopped the command."""
USAGE = 2
"""The command line itself is wrong: unknown kind or option value, missing arguments."""
FOUND = 3
"""The command ran and found something to act on: `lint` warnings, `plan` changes."""


class BadUsage(FelisError):
    """A command-line mistake only the command body can see (an unknown kind, a malformed
    address, arguments that exclude each other); one line, exit code USAGE."""


class CommandFailed(FelisError):
    """Errors were already printed line by line; only the exit code is left to set."""


def one_line_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """A user error ends the command with one line on stderr and exit status FAILURE.

    `felis.cli.main` does this for every command; sub-apps wear it too because they are also
    run on their own (typer's standalone mode, the test runner), where `main` is not around."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except FelisError as exc:
            Console(stderr=True).print(f"error: {exc}", markup=False, highlight=False)
            raise typer.Exit(FAILURE) from None

    return wrapper
